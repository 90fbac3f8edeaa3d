package pzemtest

import (
	"bytes"
	"math"
	"testing"
	"time"

	"loadwatch/internal/modbus"
	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type fixed power.Reading

func (f fixed) At(time.Time) power.Reading { return power.Reading(f) }

const vif = power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency

func newMeter(t *testing.T, o MeterOpts) *Meter {
	t.Helper()
	m, err := NewMeter(o, t0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestQuantisationAndThresholds(t *testing.T) {
	tests := []struct {
		name string
		src  fixed
		want pzem.Measurements
	}{
		{"resolution", fixed{Voltage: 229.96, Current: 1.23456, Power: 250.04, Frequency: 49.96, Has: vif},
			pzem.Measurements{Voltage: 2300, Current: 1235, Power: 2500, Frequency: 500, PF: 88}},
		{"below starting current", fixed{Voltage: 230, Current: 0.005, Power: 1.1, Frequency: 50, Has: vif},
			pzem.Measurements{Voltage: 2300, Frequency: 500}},
		{"below starting power", fixed{Voltage: 230, Current: 0.02, Power: 0.3, Frequency: 50, Has: vif},
			pzem.Measurements{Voltage: 2300, Current: 20, Frequency: 500}},
		{"power from PF", fixed{Voltage: 200, Current: 1, PF: 0.5, Has: power.FieldVoltage | power.FieldCurrent | power.FieldPF},
			pzem.Measurements{Voltage: 2000, Current: 1000, Power: 1000, Frequency: 500, PF: 50}},
		{"above the alarm threshold", fixed{Voltage: 230, Current: 100, Power: 23000.1, Frequency: 50, Has: vif},
			pzem.Measurements{Voltage: 2300, Current: 100000, Power: 230001, Frequency: 500, PF: 100, Alarm: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMeter(t, MeterOpts{Source: tt.src})
			got, on := m.Measurements(t0.Add(500 * time.Millisecond))
			if !on || got != tt.want {
				t.Fatalf("measurements %+v (on %v), want %+v", got, on, tt.want)
			}
		})
	}
}

// stepLoad switches a load on at on behind a source impedance z, so the
// voltage sags by z x I.
type stepLoad struct {
	on     time.Time
	p, pf  float64 // load power at nominal voltage, power factor
	v0, z  float64
	freqHz float64
}

func (s stepLoad) At(t time.Time) power.Reading {
	r := power.Reading{Time: t, Voltage: power.Volts(s.v0), Frequency: power.Hertz(s.freqHz), Has: vif | power.FieldPF}
	if t.Before(s.on) {
		return r
	}
	i := s.p / (s.v0 * s.pf)
	v := s.v0 - s.z*i
	r.Voltage, r.Current, r.Power, r.PF = power.Volts(v), power.Amperes(i), power.Watts(v*i*s.pf), power.PowerFactor(s.pf)
	return r
}

func TestStepLagSettleSagEnergy(t *testing.T) {
	// The phase of the step within the meter's 1 s window decides the lag.
	for _, phase := range []time.Duration{100, 300, 500, 900} {
		t.Run((phase * time.Millisecond).String(), func(t *testing.T) {
			stepLagSettleSagEnergy(t, t0.Add(5*time.Second+phase*time.Millisecond))
		})
	}
}

func stepLagSettleSagEnergy(t *testing.T, step time.Time) {
	src := stepLoad{on: step, p: 1000, pf: 0.95, v0: 230, z: 0.5, freqHz: 50}
	m := newMeter(t, MeterOpts{Source: src, Energy: 100})
	final := src.At(step)
	wantP := uint32(math.Round(float64(final.Power) * 10))
	wantV := uint16(math.Round(float64(final.Voltage) * 10))

	var first, settled time.Duration = -1, -1
	var partial bool
	for dt := time.Duration(0); dt < 8*time.Second; dt += 50 * time.Millisecond {
		ms, on := m.Measurements(step.Add(dt))
		if !on {
			t.Fatalf("meter silent at +%v", dt)
		}
		if first < 0 && ms.Power != 0 {
			first = dt
		}
		if ms.Power != 0 && ms.Power != wantP {
			partial = true
		}
		if settled < 0 && ms.Power == wantP {
			settled = dt
		}
		if settled >= 0 && ms.Power != wantP {
			t.Fatalf("reading left its settled value at +%v: %+v", dt, ms)
		}
	}
	t.Logf("load on: first visible after %v, settled after %v", first, settled)
	if first <= 1200*time.Millisecond || first > 2300*time.Millisecond {
		t.Fatalf("new load first visible after %v, want more than 1.2 s (and within 2.3 s)", first)
	}
	if settled < 2000*time.Millisecond || settled > 3300*time.Millisecond {
		t.Fatalf("settled after %v, want about 2.5 s (2.0..3.3)", settled)
	}
	if !partial {
		t.Fatal("no averaged in-between reading: a step mid-window must show a partial value")
	}
	ms, _ := m.Measurements(step.Add(5 * time.Second))
	if ms.Voltage != wantV || ms.Voltage >= 2300 {
		t.Fatalf("voltage %d, want the sagged %d (below 2300)", ms.Voltage, wantV)
	}
	if ms.PF != 95 {
		t.Fatalf("pf %d, want 95", ms.PF)
	}
	// One hour on: the counter advances by the integral of P (P Wh), less
	// the 1.2 s still in the pipeline.
	ms, _ = m.Measurements(step.Add(time.Hour))
	want := 100 + float64(final.Power)*(3600-1.2)/3600
	if math.Abs(float64(ms.Energy)-want) > 1.5 {
		t.Fatalf("energy %d Wh after an hour, want about %.1f", ms.Energy, want)
	}
}

func TestEnergyWrapAndReset(t *testing.T) {
	m := newMeter(t, MeterOpts{Source: fixed{Voltage: 230, Current: 10, Power: 2300, Frequency: 50, Has: vif}})
	m.SetEnergy(EnergyWrap - 10)
	ms, _ := m.Measurements(t0.Add(100 * time.Millisecond))
	if ms.Energy != EnergyWrap-10 {
		t.Fatalf("energy %d", ms.Energy)
	}
	// 2300 W for 60 s is 38.3 Wh: past the wrap.
	ms, _ = m.Measurements(t0.Add(61200 * time.Millisecond))
	if ms.Energy > 40 {
		t.Fatalf("energy %d after passing 9 999 999 Wh, want a small number", ms.Energy)
	}
	if ms.Energy < 27 || ms.Energy > 29 {
		t.Fatalf("energy %d after the wrap, want 28 (38.3 - 10)", ms.Energy)
	}
	reply, ok := m.Handle(modbus.Frame{Addr: 1, Func: modbus.FuncResetEnergy}, t0.Add(62*time.Second))
	if !ok || !bytes.Equal(modbus.Encode(reply), []byte{0x01, 0x42, 0x80, 0x11}) {
		t.Fatalf("reset reply % X", modbus.Encode(reply))
	}
	if ms, _ = m.Measurements(t0.Add(62 * time.Second)); ms.Energy != 0 {
		t.Fatalf("energy %d after reset", ms.Energy)
	}
}

func TestNoACSilence(t *testing.T) {
	ac := t0.Add(10 * time.Second)
	src := SourceFunc(func(t time.Time) power.Reading {
		if t.Before(ac) {
			return power.Reading{}
		}
		return power.Reading{Voltage: 230, Frequency: 50, Has: power.FieldVoltage | power.FieldFrequency}
	})
	m := newMeter(t, MeterOpts{Source: src, Addr: 4})
	req := modbus.ReadRequest(4, modbus.FuncReadInput, 0, 10)
	for _, dt := range []time.Duration{0, 5 * time.Second, 10500 * time.Millisecond} {
		if _, ok := m.Handle(req, t0.Add(dt)); ok {
			t.Fatalf("meter answered without AC (or before booting) at +%v", dt)
		}
	}
	r, ok := m.Handle(req, t0.Add(13*time.Second))
	if !ok || r.Err() != nil {
		t.Fatalf("meter silent after AC returned: %v", r)
	}
}

func TestHandleByteExact(t *testing.T) {
	m := newMeter(t, MeterOpts{Source: fixed{Voltage: 230, Current: 2, Power: 414, Frequency: 50, Has: vif}, Addr: 1, Energy: 0x12345})
	at := t0.Add(time.Second)
	exc := func(addr, fn byte, c modbus.ExceptionCode) []byte {
		return modbus.Encode(modbus.Exception(addr, fn, c))
	}
	tests := []struct {
		name string
		req  modbus.Frame
		want []byte // nil: silent
	}{
		{"read all", modbus.ReadRequest(1, 4, 0, 10), modbus.Encode(modbus.ReadReply(1, 4, []uint16{2300, 2000, 0, 4140, 0, 0x2345, 1, 500, 90, 0}))},
		{"read energy only", modbus.ReadRequest(1, 4, 5, 2), modbus.Encode(modbus.ReadReply(1, 4, []uint16{0x2345, 1}))},
		{"holding registers", modbus.ReadRequest(1, 3, 1, 2), modbus.Encode(modbus.ReadReply(1, 3, []uint16{23000, 1}))},
		{"other address", modbus.ReadRequest(2, 4, 0, 10), nil},
		{"broadcast", modbus.WriteSingleRequest(0, 1, 100), nil},
		{"input out of range", modbus.ReadRequest(1, 4, 8, 5), exc(1, 4, modbus.IllegalAddress)},
		{"zero count", modbus.ReadRequest(1, 4, 0, 0), exc(1, 4, modbus.IllegalData)},
		{"holding register 0", modbus.ReadRequest(1, 3, 0, 1), exc(1, 3, modbus.IllegalAddress)},
		{"write unknown register", modbus.WriteSingleRequest(1, 5, 1), exc(1, 6, modbus.IllegalAddress)},
		{"write address 0", modbus.WriteSingleRequest(1, 2, 0), exc(1, 6, modbus.IllegalData)},
		{"write address 248", modbus.WriteSingleRequest(1, 2, 248), exc(1, 6, modbus.IllegalData)},
		{"calibrate at own address", modbus.Frame{Addr: 1, Func: 0x41, Data: []byte{0x37, 0x21}}, exc(1, 0x41, modbus.IllegalData)},
		{"calibrate", modbus.Frame{Addr: 0xF8, Func: 0x41, Data: []byte{0x37, 0x21}}, []byte{0xF8, 0x41, 0x37, 0x21, 0xB7, 0x78}},
		{"unknown function", modbus.Frame{Addr: 1, Func: 0x10}, exc(1, 0x10, modbus.IllegalFunction)},
		{"write threshold", modbus.WriteSingleRequest(1, 1, 400), modbus.Encode(modbus.WriteSingleRequest(1, 1, 400))},
		{"alarm now on", modbus.ReadRequest(1, 4, 9, 1), modbus.Encode(modbus.ReadReply(1, 4, []uint16{0xFFFF}))},
		{"set address via 0xF8", modbus.WriteSingleRequest(0xF8, 2, 9), []byte{0xF8, 0x06, 0x00, 0x02, 0x00, 0x09, 0xFC, 0x65}},
		{"old address silent", modbus.ReadRequest(1, 4, 0, 1), nil},
		{"new address", modbus.ReadRequest(9, 3, 2, 1), modbus.Encode(modbus.ReadReply(9, 3, []uint16{9}))},
	}
	for _, tt := range tests {
		r, ok := m.Handle(tt.req, at)
		var got []byte
		if ok {
			got = modbus.Encode(r)
		}
		if !bytes.Equal(got, tt.want) {
			t.Fatalf("%s: % X -> % X, want % X", tt.name, modbus.Encode(tt.req), got, tt.want)
		}
	}
	// The broadcast was acted on without a reply.
	if r, _ := m.Handle(modbus.ReadRequest(9, 3, 1, 1), at); !bytes.Equal(modbus.Encode(r), modbus.Encode(modbus.ReadReply(9, 3, []uint16{400}))) {
		t.Fatalf("threshold % X", modbus.Encode(r))
	}
}

func TestParseFaults(t *testing.T) {
	f, err := ParseFaults("crc=0.05, silence=0.01,slip=0.02,short=0.03,exception=0.04")
	if err != nil || f != (Faults{0.05, 0.01, 0.02, 0.03, 0.04}) {
		t.Fatalf("%+v %v", f, err)
	}
	if f, err := ParseFaults("all=0.05"); err != nil || f.Short != 0.05 || f.CRC != 0.05 {
		t.Fatalf("all: %+v %v", f, err)
	}
	for _, bad := range []string{"crc", "crc=x", "foo=0.1", "crc=-1", "all=0.3", "crc=NaN"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
}

func FuzzParseFaults(f *testing.F) {
	f.Add("crc=0.05,silence=0.01")
	f.Add("all=0.2")
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFaults(s)
		if err == nil && fl.Validate() != nil {
			t.Fatalf("ParseFaults(%q) returned invalid %+v", s, fl)
		}
	})
}

// Any request frame gets silence or a well-formed reply, never a panic.
func FuzzHandle(f *testing.F) {
	f.Add(byte(1), byte(4), []byte{0, 0, 0, 10})
	f.Add(byte(0xF8), byte(0x41), []byte{0x37, 0x21})
	f.Add(byte(1), byte(6), []byte{0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, addr, fn byte, data []byte) {
		m, _ := NewMeter(MeterOpts{Source: fixed{Voltage: 230, Current: 1, Power: 200, Has: vif}}, t0)
		r, ok := m.Handle(modbus.Frame{Addr: addr, Func: fn, Data: data}, t0.Add(time.Second))
		if !ok {
			return
		}
		wire := modbus.Encode(r)
		if modbus.ReplyLen(wire) != len(wire) {
			t.Fatalf("reply % X: ReplyLen %d", wire, modbus.ReplyLen(wire))
		}
		if _, err := modbus.Decode(wire); err != nil {
			t.Fatal(err)
		}
	})
}
