package anomaly

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"loadwatch/internal/power"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type vp struct{ v, p float64 }

// meter turns a sequence of true (V, P) values, one per second, into what a
// PZEM-004T reports: the mean of the last three true values (the meter
// averages: a step shows a third after 1 s and is settled after about
// 2.5 s), quantised to 0.1 V and 0.1 W, with seeded noise of +/-0.2 V and
// +/-0.3 W (plus 0.2 % of P).
func meter(seed uint64, truth []vp) []power.Reading {
	rng := rand.New(rand.NewPCG(seed, 99))
	out := make([]power.Reading, len(truth))
	for i := range truth {
		var v, p float64
		for k := i - 2; k <= i; k++ {
			tr := truth[max(k, 0)]
			v += tr.v / 3
			p += tr.p / 3
		}
		nv := v + (rng.Float64()-0.5)*0.4
		np := math.Max(0, p+(rng.Float64()-0.5)*(0.6+0.004*p))
		out[i] = power.Reading{
			Time:    t0.Add(time.Duration(i) * time.Second),
			Voltage: power.Volts(math.Round(nv*10) / 10), Power: power.Watts(math.Round(np*10) / 10),
			Frequency: 50, Has: power.FieldVoltage | power.FieldPower | power.FieldFrequency,
		}
	}
	return out
}

// hold repeats one true value n times.
func hold(v, p float64, n int) []vp {
	s := make([]vp, n)
	for i := range s {
		s[i] = vp{v, p}
	}
	return s
}

func cat(parts ...[]vp) []vp {
	var s []vp
	for _, p := range parts {
		s = append(s, p...)
	}
	return s
}

func run(d *Detector, rs []power.Reading) []Event {
	var evs []Event
	for _, r := range rs {
		evs = append(evs, d.Observe(r)...)
	}
	return evs
}

func TestSteps(t *testing.T) {
	cases := []struct {
		name  string
		truth []vp
		want  []Kind
	}{
		// A 2 kW kettle on a 0.4 ohm source: V sags by about 3.6 V.
		{"kettle on and off", cat(hold(231, 0, 10), hold(227.4, 2000, 20), hold(231, 0, 10)), []Kind{LoadOn, LoadOff}},
		// A 60 W laptop: V barely moves.
		{"laptop on", cat(hold(230, 1.5, 10), hold(229.9, 61.5, 10)), []Kind{LoadOn}},
		// Grid surge with a resistive load: P rises with V squared.
		{"surge resistive", cat(hold(229, 60, 10), hold(236, 60*236*236/(229*229), 10)), []Kind{GridSurge}},
		// Grid surge with a switch-mode supply: P flat.
		{"surge constant power", cat(hold(229, 45, 10), hold(235.5, 45, 10)), []Kind{GridSurge}},
		// A load on during a small V rise (3 V, under the surge threshold).
		{"load on with V rising a little", cat(hold(229, 20, 10), hold(232, 400, 10)), []Kind{LoadOn}},
		// A load off makes V rise by more than 5 V, but P falls: load off.
		{"big load off", cat(hold(224, 3000, 10), hold(230, 10, 10)), []Kind{LoadOff}},
		// Noise and the 0.4 W floor: nothing.
		{"idle noise", hold(230.2, 0.4, 60), nil},
		{"small change under threshold", cat(hold(230, 100, 10), hold(230, 103, 10)), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := New(Config{})
			evs := run(d, meter(1, c.truth))
			if len(evs) != len(c.want) {
				t.Fatalf("events %v, want %v", evs, c.want)
			}
			for i, e := range evs {
				if e.Kind != c.want[i] {
					t.Fatalf("event %d: %v, want %v", i, e, c.want[i])
				}
				if !e.Before.Is(power.FieldVoltage|power.FieldPower) || !e.After.Time.Equal(e.Time) || !e.Before.Time.Before(e.Time) {
					t.Fatalf("evidence missing: %+v", e)
				}
			}
		})
	}
}

func TestLoadOnEvidence(t *testing.T) {
	d := New(Config{})
	evs := run(d, meter(2, cat(hold(231, 0, 10), hold(227.4, 2000, 10))))
	if len(evs) != 1 {
		t.Fatalf("%v", evs)
	}
	e := evs[0]
	if math.Abs(float64(e.Before.Power)) > 1 || math.Abs(float64(e.Before.Voltage)-231) > 0.5 ||
		math.Abs(float64(e.After.Power)-2000) > 100 || e.After.Voltage > 228.5 {
		t.Fatalf("evidence %+v -> %+v", e.Before, e.After)
	}
	// Judged only once settled: not before 2 s after the step began.
	if e.Time.Sub(t0.Add(10*time.Second)) < 2*time.Second {
		t.Fatalf("judged at %v, before the meter settled", e.Time)
	}
}

// A one-reading spike (a bad read, an inrush the meter barely caught) that
// is gone by the next reading is no event.
func TestTransientIgnored(t *testing.T) {
	d := New(Config{})
	rs := make([]power.Reading, 20)
	for i := range rs {
		rs[i] = power.Reading{Time: t0.Add(time.Duration(i) * time.Second), Voltage: 230, Power: 50, Has: power.FieldVoltage | power.FieldPower}
	}
	rs[10].Power = 900
	if evs := run(d, rs); len(evs) != 0 {
		t.Fatalf("%v", evs)
	}
}

func volts(start time.Duration, vs ...float64) []power.Reading {
	rs := make([]power.Reading, len(vs))
	for i, v := range vs {
		rs[i] = power.Reading{Time: t0.Add(start + time.Duration(i)*time.Second), Voltage: power.Volts(v), Power: 10,
			Has: power.FieldVoltage | power.FieldPower}
	}
	return rs
}

func repeat(v float64, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestSustainedVoltage(t *testing.T) {
	seq := append(repeat(240, 5), repeat(254, 12)...) // over 253 V for 11 s
	seq = append(seq, repeat(252, 5)...)              // inside, but within hysteresis: not re-armed
	seq = append(seq, repeat(254, 12)...)             // no second event
	seq = append(seq, repeat(245, 3)...)              // re-armed
	seq = append(seq, repeat(255, 11)...)             // second event
	seq = append(seq, repeat(254, 5)...)              // short: nothing
	d := New(Config{})
	evs := only(run(d, volts(0, seq...)), Overvoltage, Undervoltage)
	if len(evs) != 2 || evs[0].Kind != Overvoltage || evs[1].Kind != Overvoltage {
		t.Fatalf("%v", evs)
	}
	if got := evs[0].Time.Sub(t0); got != 15*time.Second { // first over at 5 s, +10 s
		t.Errorf("first event at %v", got)
	}
	if evs[0].Before.Voltage != 240 || evs[0].After.Voltage != 254 {
		t.Errorf("evidence %+v -> %+v", evs[0].Before, evs[0].After)
	}
	// Undervoltage: a dip shorter than Sustain is nothing, a long one fires.
	d = New(Config{Sustain: 5 * time.Second})
	evs = only(run(d, volts(0, append(append(repeat(230, 3), repeat(200, 4)...), append(repeat(230, 3), repeat(205, 8)...)...)...)), Overvoltage, Undervoltage)
	if len(evs) != 1 || evs[0].Kind != Undervoltage || evs[0].Before.Voltage != 230 {
		t.Fatalf("%v", evs)
	}
}

// only keeps the events of the given kinds (a jump of 14 V is also, and
// rightly, a grid surge).
func only(evs []Event, kinds ...Kind) []Event {
	var out []Event
	for _, e := range evs {
		for _, k := range kinds {
			if e.Kind == k {
				out = append(out, e)
			}
		}
	}
	return out
}

func TestFrequency(t *testing.T) {
	d := New(Config{Sustain: 3 * time.Second})
	var evs []Event
	for i, f := range []float64{50, 50.1, 50.6, 50.6, 50.7, 50.6, 50.5, 50.6, 50, 49.4, 49.4, 49.3, 49.4} {
		r := power.Reading{Time: t0.Add(time.Duration(i) * time.Second), Frequency: power.Hertz(f), Has: power.FieldFrequency}
		evs = append(evs, d.Observe(r)...)
	}
	if len(evs) != 2 || evs[0].Kind != Frequency || evs[0].After.Frequency != 50.6 || evs[1].After.Frequency != 49.4 {
		t.Fatalf("%v", evs)
	}
}

func TestMissingFieldsAndOrder(t *testing.T) {
	d := New(Config{})
	// Readings lacking V or P never produce step events.
	for i := range 30 {
		p := 0.0
		if i > 10 {
			p = 2000
		}
		d.Observe(power.Reading{Time: t0.Add(time.Duration(i) * time.Second), Power: power.Watts(p), Has: power.FieldPower})
	}
	// Out-of-order readings are ignored.
	if evs := d.Observe(power.Reading{Time: t0, Voltage: 300, Has: power.FieldVoltage}); evs != nil {
		t.Fatal(evs)
	}
}

func BenchmarkObserve(b *testing.B) {
	rs := meter(3, cat(hold(231, 0, 50), hold(227.4, 2000, 50)))
	d := New(Config{})
	i := 0
	for b.Loop() {
		r := rs[i%len(rs)]
		r.Time = t0.Add(time.Duration(i) * time.Second)
		d.Observe(r)
		i++
	}
}

// At the duty cycle's 5 s cadence every reading is already settled; a step
// is judged at the reading after it.
func TestFiveSecondCadence(t *testing.T) {
	all := meter(4, cat(hold(231, 2, 30), hold(227.4, 2000, 30), hold(236.5, 2000*236.5*236.5/(227.4*227.4), 30), hold(236.5, 0, 30)))
	var rs []power.Reading
	for i := 0; i < len(all); i += 5 {
		rs = append(rs, all[i])
	}
	evs := run(New(Config{}), rs)
	want := []Kind{LoadOn, GridSurge, LoadOff}
	if len(evs) != len(want) {
		t.Fatalf("%v", evs)
	}
	for i := range want {
		if evs[i].Kind != want[i] {
			t.Fatalf("%v", evs)
		}
	}
}

func TestJumpIsAlsoSurge(t *testing.T) {
	evs := only(run(New(Config{}), volts(0, append(repeat(240, 5), repeat(254, 5)...)...)), GridSurge)
	if len(evs) != 1 || evs[0].Before.Voltage != 240 || evs[0].After.Voltage != 254 {
		t.Fatalf("%v", evs)
	}
}
