package power

import (
	"math"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{Volts(230.04).String(), "230.0 V"},
		{Amperes(0.0125).String(), "0.013 A"},
		{Watts(1499.96).String(), "1500.0 W"},
		{WattHours(12.4).String(), "12 Wh"},
		{Hertz(49.95).String(), "50.0 Hz"},
		{PowerFactor(0.987).String(), "0.99"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestJoules(t *testing.T) {
	if got := WattHours(2).Joules(); got != 7200 {
		t.Fatalf("2 Wh = %v J, want 7200", got)
	}
}

func TestApparentReactive(t *testing.T) {
	r := Reading{Voltage: 230, Current: 1, Power: 184, Has: FieldVoltage | FieldCurrent | FieldPower}
	s, ok := r.Apparent()
	if !ok || s != 230 {
		t.Fatalf("Apparent = %v, %v; want 230, true", s, ok)
	}
	q, ok := r.Reactive()
	if !ok || math.Abs(q-138) > 1e-9 {
		t.Fatalf("Reactive = %v, %v; want 138, true", q, ok)
	}
	// P > S from rounding: Q is clamped to 0, never NaN.
	r.Power = 231
	if q, ok := r.Reactive(); !ok || q != 0 {
		t.Fatalf("Reactive with P > S = %v, %v; want 0, true", q, ok)
	}
	// Missing voltage: no apparent power, no stand-in value.
	r.Has &^= FieldVoltage
	if _, ok := r.Apparent(); ok {
		t.Fatal("Apparent without voltage must report false")
	}
	if _, ok := r.Reactive(); ok {
		t.Fatal("Reactive without voltage must report false")
	}
}
