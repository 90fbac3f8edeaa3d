package loadsim

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/power"
)

// alone returns a still circuit (no drift, no noise, no standby) with one
// appliance switched on at Start.
func alone(name string, seed int64) *Circuit {
	c := NewCircuit(Config{Seed: seed, Grid: Grid{Still: true}, Standby: -1})
	c.Switch(name, true, c.Start())
	return c
}

type trace struct {
	p, pf  []float64
	active []bool
}

func sample(c *Circuit, from, to, step time.Duration) trace {
	var tr trace
	for d := from; d < to; d += step {
		t := c.Start().Add(d)
		r := c.At(t)
		tr.p = append(tr.p, float64(r.Power))
		tr.pf = append(tr.pf, float64(r.PF))
		tr.active = append(tr.active, c.Label(t) != Nothing)
	}
	return tr
}

// edges counts switches from not drawing to drawing.
func (tr trace) edges() int {
	n := 0
	for i := 1; i < len(tr.active); i++ {
		if tr.active[i] && !tr.active[i-1] {
			n++
		}
	}
	return n
}

func (tr trace) activeFraction() float64 {
	n := 0
	for _, a := range tr.active {
		if a {
			n++
		}
	}
	return float64(n) / float64(len(tr.active))
}

// rng returns min and max of xs where keep is true.
func rng(xs []float64, keep func(i int) bool) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for i, x := range xs {
		if keep(i) {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	return lo, hi
}

func TestAppliances(t *testing.T) {
	const span = 30 * time.Minute
	step := 100 * time.Millisecond
	tests := []struct {
		name string
		// while drawing (label set) and while on but not drawing
		activeP, idleP   [2]float64
		activePF, idlePF [2]float64
		fraction         [2]float64 // share of time drawing after warm-up
		minEdges         int        // switches to drawing after warm-up
	}{
		{name: Laptop, activeP: [2]float64{9, 64}, activePF: [2]float64{0.38, 0.67}, fraction: [2]float64{1, 1}},
		{name: Solder, activeP: [2]float64{55, 66}, idleP: [2]float64{2, 3}, activePF: [2]float64{0.9, 0.96}, idlePF: [2]float64{0.25, 0.35}, fraction: [2]float64{0.15, 0.45}, minEdges: 100},
		{name: Printer, activeP: [2]float64{35, 940}, idleP: [2]float64{9, 19}, activePF: [2]float64{0.55, 0.99}, idlePF: [2]float64{0.4, 0.5}, fraction: [2]float64{0.05, 0.4}, minEdges: 20},
		{name: Printer3D, activeP: [2]float64{10, 320}, activePF: [2]float64{0.5, 0.63}, fraction: [2]float64{1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, seed := range []int64{1, 2, 3} {
				tr := sample(alone(tc.name, seed), 3*time.Minute, span, step)
				lo, hi := rng(tr.p, func(i int) bool { return tr.active[i] })
				if lo < tc.activeP[0] || hi > tc.activeP[1] {
					t.Errorf("seed %d: power while drawing %.1f..%.1f W, want within %v", seed, lo, hi, tc.activeP)
				}
				lo, hi = rng(tr.pf, func(i int) bool { return tr.active[i] })
				if lo < tc.activePF[0] || hi > tc.activePF[1] {
					t.Errorf("seed %d: PF while drawing %.2f..%.2f, want within %v", seed, lo, hi, tc.activePF)
				}
				if f := tr.activeFraction(); f < tc.fraction[0] || f > tc.fraction[1] {
					t.Errorf("seed %d: drawing %.0f%% of the time, want %v", seed, 100*f, tc.fraction)
				}
				if tc.fraction[0] < 1 {
					lo, hi = rng(tr.p, func(i int) bool { return !tr.active[i] })
					if lo < tc.idleP[0] || hi > tc.idleP[1] {
						t.Errorf("seed %d: power while idle %.1f..%.1f W, want within %v", seed, lo, hi, tc.idleP)
					}
					lo, hi = rng(tr.pf, func(i int) bool { return !tr.active[i] })
					if lo < tc.idlePF[0] || hi > tc.idlePF[1] {
						t.Errorf("seed %d: PF while idle %.2f..%.2f, want within %v", seed, lo, hi, tc.idlePF)
					}
				}
				if e := tr.edges(); e < tc.minEdges {
					t.Errorf("seed %d: %d cycles, want at least %d", seed, e, tc.minEdges)
				}
			}
		})
	}
}

func TestLaptopMatchesTracebase(t *testing.T) {
	// tracebase laptops in use: median 28 W, quartiles 21 and 32 W.
	var all []float64
	for seed := int64(1); seed <= 10; seed++ {
		all = append(all, sample(alone(Laptop, seed), 0, time.Hour, time.Second).p...)
	}
	slices.Sort(all)
	q := func(f float64) float64 { return all[int(f*float64(len(all)-1))] }
	if m := q(0.5); m < 24 || m > 32 {
		t.Errorf("median laptop power %.1f W, want 24..32 (tracebase 28)", m)
	}
	if q(0.25) < 17 || q(0.75) > 37 {
		t.Errorf("laptop quartiles %.1f, %.1f W, want about 21 and 32", q(0.25), q(0.75))
	}
}

func TestSolderHeatsUpThenCycles(t *testing.T) {
	c := alone(Solder, 1)
	tr := sample(c, 0, 15*time.Second, 100*time.Millisecond)
	if f := tr.activeFraction(); f != 1 {
		t.Errorf("soldering station heating %.0f%% of its first 15 s, want 100%% (heat-up from cold)", 100*f)
	}
}

func TestPrinterBursts(t *testing.T) {
	tr := sample(alone(Printer, 4), 0, time.Hour, 100*time.Millisecond)
	hi := 0.0
	var bursts []int
	run := 0
	for i, a := range tr.active {
		hi = math.Max(hi, tr.p[i])
		if a {
			run++
		} else if run > 0 {
			bursts = append(bursts, run)
			run = 0
		}
	}
	if hi < 700 {
		t.Errorf("highest printer power %.0f W, want fuser bursts of 700 W or more", hi)
	}
	for _, b := range bursts {
		if d := time.Duration(b) * 100 * time.Millisecond; d > 16*time.Second {
			t.Errorf("print burst of %v, want at most 15 s", d)
		}
	}
}

func TestPrinter3DHeatUpThenBedCycling(t *testing.T) {
	tr := sample(alone(Printer3D, 1), 0, 50*time.Second, time.Second)
	if lo, _ := rng(tr.p, func(int) bool { return true }); lo < 295 {
		t.Errorf("3D printer heat-up dipped to %.0f W, want bed and hot end at full power (about 303 W) for the first 50 s", lo)
	}
	tr = sample(alone(Printer3D, 1), 5*time.Minute, 20*time.Minute, 500*time.Millisecond)
	high, low := 0, 0
	for _, p := range tr.p {
		if p > 200 {
			high++
		} else if p < 60 {
			low++
		}
	}
	if high == 0 || low == 0 || tr.edges() != 0 {
		t.Errorf("3D printer after heat-up: %d samples with bed on, %d with bed off, want both; label must stay on", high, low)
	}
}

// TestPrinter3DHotEndHeld checks that the hot end is held by its PID loop
// after heat-up: seen through 1 s averages, the level between bed pulses
// moves by well under a watt from one bed-off phase to the next (the bed's
// steps aside, the printer's power only wanders), and it rises once by a
// few watts when the part cooling fan ramps up after the first layers.
func TestPrinter3DHotEndHeld(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		c := alone(Printer3D, seed)
		// 1 s means (as the meter averages) of the bed-off phases, whole
		// seconds only.
		var offMeans []float64
		var sum float64
		n := 0
		for d := 3 * time.Minute; d < 30*time.Minute; d += time.Second {
			var s float64
			off := true
			for k := 0; k < 10; k++ {
				p := float64(c.At(c.Start().Add(d + time.Duration(k)*100*time.Millisecond)).Power)
				off = off && p < 100
				s += p / 10
			}
			switch {
			case off:
				sum += s
				n++
			case n > 0:
				offMeans = append(offMeans, sum/float64(n))
				sum, n = 0, 0
			}
		}
		if len(offMeans) < 50 {
			t.Fatalf("seed %d: %d bed-off phases in 27 min, want the bed cycling", seed, len(offMeans))
		}
		worst := 0.0
		for i := 1; i < len(offMeans); i++ {
			worst = math.Max(worst, math.Abs(offMeans[i]-offMeans[i-1]))
		}
		if worst > 2 {
			t.Errorf("seed %d: the level between bed pulses moved by %.1f W from one phase to the next, want a held hot end (under 2 W)", seed, worst)
		}
		lo, hi := rng(offMeans, func(int) bool { return true })
		if lo < 20 || hi > 45 {
			t.Errorf("seed %d: level between bed pulses %.1f..%.1f W, want 12 W plus a hot end at 30-57 %% of 45 W", seed, lo, hi)
		}
		early := offMeans[0]
		late := offMeans[len(offMeans)-1]
		if rise := late - early; rise < 3 || rise > 10 {
			t.Errorf("seed %d: the part cooling fan raised the level by %.1f W (%.1f -> %.1f W), want 3-10 W", seed, rise, early, late)
		}
	}
}

func TestLabel(t *testing.T) {
	c := NewCircuit(Config{Seed: 1})
	t0 := c.Start()
	if l := c.Label(t0); l != Nothing {
		t.Errorf("empty circuit label %q, want nothing (standby counts as nothing)", l)
	}
	if r := c.At(t0); r.Power < 1 || r.Power > 2 {
		t.Errorf("standby power %v, want about 1.5 W", r.Power)
	}
	for _, n := range []string{Solder, Printer3D, Laptop, Printer} {
		c.Switch(n, true, t0)
	}
	// All four draw right after switch-on (heat-up, warm-up).
	if l := c.Label(t0.Add(2 * time.Second)); l != "3d_printer+laptop+printer+solder" {
		t.Errorf("label %q, want all four in alphabetical order", l)
	}
	c.Switch("kettle", true, t0)
	if l := c.Label(t0.Add(2 * time.Second)); l != "3d_printer+laptop+printer+solder" {
		t.Errorf("an unknown appliance changed the label to %q", l)
	}
	if IsAppliance("kettle") || !IsAppliance(Printer3D) {
		t.Error("IsAppliance is wrong")
	}
}

func TestRelay(t *testing.T) {
	c := NewCircuit(Config{Seed: 1})
	t0 := c.Start()
	c.Switch(Laptop, true, t0)
	if !c.Relay() {
		t.Fatal("relay starts open, want closed")
	}
	c.SetRelay(false, t0.Add(time.Minute))
	if c.Relay() {
		t.Fatal("Relay() closed after opening it")
	}
	before, after := c.At(t0.Add(30*time.Second)), c.At(t0.Add(90*time.Second))
	if before.Current < 0.05 {
		t.Errorf("current before the trip %v, want the laptop's", before.Current)
	}
	if after.Current != 0 || after.Power != 0 || after.PF != 0 {
		t.Errorf("open relay: %v %v PF %v, want no load", after.Current, after.Power, after.PF)
	}
	if after.Voltage < 200 || !after.Is(power.FieldVoltage) {
		t.Errorf("open relay: voltage %v, want the mains still there", after.Voltage)
	}
	if l := c.Label(t0.Add(90 * time.Second)); l != Nothing {
		t.Errorf("open relay label %q, want nothing", l)
	}
	c.SetRelay(true, t0.Add(2*time.Minute))
	if r := c.At(t0.Add(150 * time.Second)); r.Current < 0.05 {
		t.Errorf("closed again: current %v, want the laptop back", r.Current)
	}
}

func TestSagOnLoad(t *testing.T) {
	// The same seed with and without the printer: noise and drift are the
	// same function of time, so the difference is the sag alone.
	for _, g := range []Grid{{Still: true}, {}, {Impedance: 1.2}} {
		quiet := NewCircuit(Config{Seed: 3, Grid: g})
		loaded := NewCircuit(Config{Seed: 3, Grid: g})
		t0 := quiet.Start()
		loaded.Switch(Printer3D, true, t0) // heat-up: bed and hot end, about 2.3 A
		z := loaded.cfg.Grid.Impedance
		for _, d := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 3 * time.Second} {
			q, l := quiet.At(t0.Add(d)), loaded.At(t0.Add(d))
			sag := float64(q.Voltage - l.Voltage)
			want := float64(l.Current-q.Current) * z
			if sag < 0.2 || math.Abs(sag-want) > 0.05*want+0.02 {
				t.Errorf("grid %+v at %v: sag %.3f V with %.3f A more, want about I x Z = %.3f V", g, d, sag, l.Current-q.Current, want)
			}
		}
	}
}

func TestSurgeIndependentOfLoad(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		// A constant-power load (the 3D printer's SMPS during heat-up):
		// the voltage jumps, the power stays, the current falls.
		s, err := ParseSchedule("1m50s:+3d_printer; 2m:surge+8V/5s")
		if err != nil {
			t.Fatal(err)
		}
		c := NewCircuit(Config{Seed: seed, Schedule: s})
		t0 := c.Start()
		before := c.At(t0.Add(2*time.Minute - 200*time.Millisecond))
		during := c.At(t0.Add(2*time.Minute + 200*time.Millisecond))
		if dv := during.Voltage - before.Voltage; dv < 5 {
			t.Errorf("seed %d: surge raised the voltage by %.2f V, want more than 5", seed, dv)
		}
		if dp := math.Abs(float64(during.Power - before.Power)); dp > 8 {
			t.Errorf("seed %d: power moved by %.2f W of %v during a surge, want it flat", seed, dp, before.Power)
		}
		if during.Current >= before.Current {
			t.Errorf("seed %d: constant-power load drew %v then %v during the surge, want less current", seed, before.Current, during.Current)
		}
		if l1, l2 := c.Label(t0.Add(2*time.Minute-200*time.Millisecond)), c.Label(t0.Add(2*time.Minute+200*time.Millisecond)); l1 != l2 {
			t.Errorf("seed %d: label %q -> %q across a surge", seed, l1, l2)
		}
		after := c.At(t0.Add(2*time.Minute + 5200*time.Millisecond))
		if dv := after.Voltage - before.Voltage; math.Abs(float64(dv)) > 1.5 {
			t.Errorf("seed %d: voltage %.2f V off after the surge ended", seed, dv)
		}
	}
	// A resistive load (the soldering iron heating up) draws more with
	// the voltage: P scales with V^2, and nothing switches.
	s, _ := ParseSchedule("1m55s:+solder; 2m:surge+10V/5s")
	c := NewCircuit(Config{Seed: 1, Schedule: s, Grid: Grid{Still: true}, Standby: -1})
	t0 := c.Start()
	before, during := c.At(t0.Add(2*time.Minute-time.Second)), c.At(t0.Add(2*time.Minute+time.Second))
	ratio := float64(during.Power / before.Power)
	vr := float64(during.Voltage / before.Voltage)
	if during.Voltage-before.Voltage < 9.5 || math.Abs(ratio-vr*vr) > 0.01 {
		t.Errorf("resistive load in a 10 V surge: V %v -> %v, P %v -> %v; want P ratio = V ratio squared", before.Voltage, during.Voltage, before.Power, during.Power)
	}

	// A surge from Inject and a flat standby-only load, still grid: exact.
	c = NewCircuit(Config{Seed: 1, Grid: Grid{Still: true}})
	t0 = c.Start()
	c.Inject(GridEvent{Kind: KindSurge, Volts: 7, For: time.Second}, t0.Add(time.Second))
	a, b := c.At(t0), c.At(t0.Add(1500*time.Millisecond))
	if dv := b.Voltage - a.Voltage; math.Abs(float64(dv)-7) > 0.01 || b.Power != a.Power {
		t.Errorf("injected 7 V surge: dV %.3f, P %v -> %v; want 7 V with P unchanged", dv, a.Power, b.Power)
	}
	c.Inject(GridEvent{Kind: KindSag, Volts: 20, For: time.Second}, t0.Add(3*time.Second))
	c.Inject(GridEvent{Kind: KindFrequency, Hertz: -0.3, For: time.Second}, t0.Add(3*time.Second))
	sg := c.At(t0.Add(3500 * time.Millisecond))
	if dv := sg.Voltage - a.Voltage; math.Abs(float64(dv)+20) > 0.01 {
		t.Errorf("sag of 20 V gave %.2f V", dv)
	}
	if df := sg.Frequency - a.Frequency; math.Abs(float64(df)+0.3) > 1e-9 {
		t.Errorf("frequency excursion of -0.3 Hz gave %.3f Hz", df)
	}
}

func TestGridDrift(t *testing.T) {
	c := NewCircuit(Config{Seed: 5})
	var vs, fs []float64
	for d := time.Duration(0); d < time.Hour; d += time.Second {
		r := c.At(c.Start().Add(d))
		vs = append(vs, float64(r.Voltage))
		fs = append(fs, float64(r.Frequency))
	}
	vlo, vhi := rng(vs, func(int) bool { return true })
	flo, fhi := rng(fs, func(int) bool { return true })
	// OMPM's PZEM hour: 240.3..246.0 V (5.7 V), 49.9..50.0 Hz.
	if vhi-vlo < 1 || vhi-vlo > 10 || vlo < 220 || vhi > 240 {
		t.Errorf("voltage over an hour %.1f..%.1f V, want a few volts of drift around 230", vlo, vhi)
	}
	if fhi-flo < 0.01 || flo < 49.85 || fhi > 50.15 {
		t.Errorf("frequency over an hour %.3f..%.3f Hz, want a slow drift near 50", flo, fhi)
	}
}

func TestDeterminism(t *testing.T) {
	sched := ReferenceSchedule()
	mk := func(seed int64) *Circuit { return NewCircuit(Config{Seed: seed, Schedule: sched}) }
	a, b, other := mk(7), mk(7), mk(8)
	start := a.Start()
	var times []time.Time
	for d := time.Duration(0); d < 2*time.Hour; d += 1700 * time.Millisecond {
		times = append(times, start.Add(d))
	}
	differ := 0
	for _, tm := range times {
		ra, rb, ro := a.At(tm), b.At(tm), other.At(tm)
		if ra != rb || a.Label(tm) != b.Label(tm) {
			t.Fatalf("same seed, different reading at %v: %+v vs %+v", tm, ra, rb)
		}
		if ra != ro {
			differ++
		}
	}
	if differ < len(times)/2 {
		t.Errorf("seeds 7 and 8 differ in only %d of %d readings", differ, len(times))
	}
	// Asking in reverse order on a fresh circuit gives the same trace.
	rev := mk(7)
	for i := len(times) - 1; i >= 0; i-- {
		if got, want := rev.At(times[i]), a.At(times[i]); got != want {
			t.Fatalf("reverse-order query at %v: %+v, want %+v", times[i], got, want)
		}
	}
}

func TestRepeatCarriesState(t *testing.T) {
	s, err := ParseSchedule("10s:+laptop; 40s:-laptop; 55s:+solder; repeat=1m")
	if err != nil {
		t.Fatal(err)
	}
	c := NewCircuit(Config{Seed: 1, Schedule: s})
	at := func(d time.Duration) string { return c.Label(c.Start().Add(d)) }
	if l := at(5 * time.Second); l != Nothing {
		t.Errorf("before the first switch: %q", l)
	}
	if l := at(15 * time.Second); l != Laptop {
		t.Errorf("at 15 s: %q, want laptop", l)
	}
	// In the second period, before 10 s, the solder from 55 s of the first
	// period is still on (and heating up, since it was switched on 10 s ago).
	if l := at(65 * time.Second); l != Solder {
		t.Errorf("at 65 s: %q, want solder carried over", l)
	}
	if l := at(72 * time.Second); l != "laptop+solder" {
		t.Errorf("at 72 s: %q, want laptop+solder", l)
	}
}

func TestManualOverridesUntilNextScheduled(t *testing.T) {
	s, _ := ParseSchedule("0s:+laptop; 1m:+laptop")
	c := NewCircuit(Config{Seed: 1, Schedule: s})
	t0 := c.Start()
	c.Switch(Laptop, false, t0.Add(30*time.Second))
	if l := c.Label(t0.Add(40 * time.Second)); l != Nothing {
		t.Errorf("after manual off: %q", l)
	}
	if l := c.Label(t0.Add(70 * time.Second)); l != Laptop {
		t.Errorf("after the next scheduled on: %q", l)
	}
	if l := c.Label(t0.Add(10 * time.Second)); l != Laptop {
		t.Errorf("before the manual switch (query back in time): %q", l)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := NewCircuit(Config{Seed: 1, Schedule: ReferenceSchedule()})
	t0 := c.Start()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				tm := t0.Add(time.Duration(i*g) * time.Second)
				_ = c.At(tm)
				_ = c.Label(tm)
				if i%50 == 0 {
					c.Switch(Solder, i%100 == 0, tm)
					c.SetRelay(i%100 != 0, tm)
					c.Inject(GridEvent{Kind: KindSurge, Volts: 6, For: time.Second}, tm)
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkAt(b *testing.B) {
	c := NewCircuit(Config{Seed: 1, Schedule: ReferenceSchedule()})
	t0 := c.Start()
	i := 0
	for b.Loop() {
		_ = c.At(t0.Add(time.Duration(i) * 100 * time.Millisecond))
		i++
	}
}

func TestOnWhileOnDoesNotRestart(t *testing.T) {
	mk := func(sched string) *Circuit {
		s, err := ParseSchedule(sched)
		if err != nil {
			t.Fatal(err)
		}
		return NewCircuit(Config{Seed: 9, Schedule: s})
	}
	same := func(what string, a, b *Circuit, from, to time.Duration) {
		t.Helper()
		for d := from; d < to; d += 250 * time.Millisecond {
			tm := a.Start().Add(d)
			if ra, rb := a.At(tm), b.At(tm); ra != rb {
				t.Fatalf("%s: differ at %v: %v vs %v", what, d, ra.Power, rb.Power)
			}
		}
	}
	ref := mk("0s:+solder")
	same("scheduled on while on", ref, mk("0s:+solder; 10s:+solder; 40s:solder"), 0, 5*time.Minute)
	same("repeat of an always-on plan", ref, mk("0s:+solder; repeat=1m"), 0, 5*time.Minute)
	manual := mk("0s:+solder")
	manual.Switch(Solder, true, manual.Start().Add(15*time.Second))
	same("interactive on while on", ref, manual, 0, 5*time.Minute)

	// An interactive off inside a scheduled run, then the schedule's next
	// on: the iron starts again from cold at that switch.
	off := mk("0s:+solder; 1m:+solder")
	off.Switch(Solder, false, off.Start().Add(30*time.Second))
	if l := off.Label(off.Start().Add(40 * time.Second)); l != Nothing {
		t.Fatalf("after the interactive off: %q", l)
	}
	same("restart at the next scheduled on", mk("1m:+solder"), off, time.Minute, 3*time.Minute)
	// An interactive on after an interactive off restarts too.
	again := mk("0s:+solder; 1m:+solder")
	again.Switch(Solder, false, again.Start().Add(30*time.Second))
	again.Switch(Solder, true, again.Start().Add(45*time.Second))
	same("restart at the interactive on", mk("45s:+solder"), again, 45*time.Second, 3*time.Minute)
}
