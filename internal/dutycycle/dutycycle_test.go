package dutycycle

import (
	"math"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/power"
)

// settling is a meter that shows a change of the true load from 1.2 s
// after it happens and settles linearly by 2.5 s (PZEM-004T.md).
type settling struct {
	at    []time.Time // change times, ascending
	level []power.Watts
	base  power.Watts
}

func (s *settling) read(t time.Time) power.Reading {
	prev := s.base
	p := s.base
	for i, at := range s.at {
		if t.Before(at) {
			break
		}
		frac := (t.Sub(at) - 1200*time.Millisecond).Seconds() / 1.3
		frac = math.Max(0, math.Min(1, frac))
		p = prev + power.Watts(frac)*(s.level[i]-prev)
		prev = s.level[i]
		if frac < 1 {
			// later changes cannot be visible before this one settled
			// in this simple model; schedules keep changes apart.
			break
		}
	}
	return power.Reading{Time: t, Voltage: 230, Power: p, Has: power.FieldVoltage | power.FieldPower}
}

type step struct {
	at time.Duration
	d  Decision
	p  power.Watts
}

// drive runs the machine the way the agent does, in a synctest bubble:
// sleep until Next, read, observe.
func drive(t *testing.T, cfg Config, dur time.Duration, meter func(time.Time) power.Reading) ([]step, *Machine) {
	t.Helper()
	start := time.Now()
	m := New(cfg, start)
	var steps []step
	for {
		time.Sleep(time.Until(m.Next()))
		if time.Since(start) >= dur {
			return steps, m
		}
		r := meter(time.Now())
		d := m.Observe(r)
		steps = append(steps, step{at: time.Since(start), d: d, p: r.Power})
	}
}

func reports(steps []step) []step {
	var out []step
	for _, s := range steps {
		if s.d.Action == Report {
			out = append(out, s)
		}
	}
	return out
}

func TestSteadyLoadHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &settling{base: 60}
		steps, m := drive(t, Config{}, 11*time.Minute, s.read)
		rs := reports(steps)
		want := []time.Duration{0, 300 * time.Second, 600 * time.Second}
		if len(rs) != len(want) {
			t.Fatalf("%d reports: %+v", len(rs), rs)
		}
		for i, r := range rs {
			wantWhy := ReasonHeartbeat
			if i == 0 {
				wantWhy = ReasonChange
			}
			if r.at != want[i] || r.d.Reason != wantWhy || !r.d.Radio {
				t.Errorf("report %d: %+v", i, r)
			}
		}
		c := m.Counts()
		if c.Checks != 132 || c.Reports != 3 || c.Confirms != 0 {
			t.Errorf("counts %+v", c)
		}
		for _, st := range steps {
			if st.d.Action == Sleep && st.d.Radio {
				t.Fatal("radio on while asleep without AlwaysOn")
			}
		}
	})
}

func TestChangeConfirmedAfterSettling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		// 60 W -> 75 W at 43.5 s: the 45 s check catches the meter
		// mid-settling (1.5 s after the change) and the confirming read
		// 2.5 s later sees the settled value.
		s := &settling{base: 60, at: []time.Time{start.Add(43500 * time.Millisecond)}, level: []power.Watts{75}}
		steps, _ := drive(t, Config{}, 60*time.Second, s.read)
		var confirm, report *step
		for i := range steps {
			if steps[i].d.Action == Confirm && confirm == nil {
				confirm = &steps[i]
			}
			if steps[i].d.Action == Report && steps[i].at > 0 {
				report = &steps[i]
			}
		}
		if confirm == nil || report == nil {
			t.Fatalf("steps %+v", steps)
		}
		if confirm.at != 45*time.Second || confirm.p >= 75 {
			t.Fatalf("confirm %+v: expected a mid-settling read at 45 s", *confirm)
		}
		if report.at != 47500*time.Millisecond || report.p != 75 || report.d.Reason != ReasonChange {
			t.Fatalf("report %+v: expected the settled 75 W at 47.5 s", *report)
		}
	})
}

func TestSpikeNotReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		meter := func(now time.Time) power.Reading {
			p := power.Watts(40)
			if now.Sub(start) == 20*time.Second {
				p = 400 // seen by one check only
			}
			return power.Reading{Time: now, Power: p, Has: power.FieldPower}
		}
		steps, m := drive(t, Config{}, 60*time.Second, meter)
		if n := len(reports(steps)); n != 1 {
			t.Fatalf("%d reports: %+v", n, steps)
		}
		if c := m.Counts(); c.Confirms != 1 {
			t.Fatalf("counts %+v", c)
		}
	})
}

func TestThresholdAndNoise(t *testing.T) {
	m := New(Config{}, time.Unix(0, 0))
	if m.Threshold(60) != 1 || m.Threshold(2000) != 10 {
		t.Fatalf("threshold %v %v", m.Threshold(60), m.Threshold(2000))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	noisy := func(now time.Time) power.Reading {
		return power.Reading{Time: now, Power: power.Watts(2000 + (rng.Float64()-0.5)*10), Has: power.FieldPower}
	}
	start := time.Unix(1e9, 0)
	c, _ := Simulate(Config{}, start, time.Hour, noisy)
	if c.Changes != 1 || c.Heartbeats != 11 { // 300 s .. 3300 s
		t.Fatalf("relative threshold: %+v", c)
	}
	c, _ = Simulate(Config{ChangePct: -1, Envelope: -1}, start, time.Hour, noisy)
	if c.Changes < 100 {
		t.Fatalf("a pure 1 W threshold against the last report should chase the meter's noise: %+v", c)
	}
	// The envelope absorbs part of the noise (a read near any power
	// reported in the last 5 min), not all of it.
	c, _ = Simulate(Config{ChangePct: -1}, start, time.Hour, noisy)
	if c.Changes < 30 {
		t.Fatalf("a pure 1 W threshold should still chase the meter's noise: %+v", c)
	}
}

func TestEventAndAlwaysOn(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	m := New(Config{AlwaysOn: true, Heartbeat: 3}, t0)
	r := func(s int, p power.Watts) power.Reading {
		return power.Reading{Time: t0.Add(time.Duration(s) * time.Second), Power: p, Has: power.FieldPower}
	}
	m.Observe(r(0, 10))
	if d := m.Observe(r(5, 10)); d.Action != Sleep || !d.Radio {
		t.Fatalf("%+v", d)
	}
	if d := m.Event(r(7, 10)); d.Action != Report || d.Reason != ReasonEvent || !d.Next.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("event: %+v", d)
	}
	// The event reset the heartbeat count: heartbeat after 3 more wakes.
	m.Observe(r(10, 10))
	m.Observe(r(15, 10))
	if d := m.Observe(r(20, 10)); d.Reason != ReasonHeartbeat {
		t.Fatalf("%+v", d)
	}
	// Missing power: no change can be seen.
	if d := m.Observe(power.Reading{Time: t0.Add(25 * time.Second), Has: power.FieldVoltage}); d.Action != Sleep {
		t.Fatalf("%+v", d)
	}
	// A late read skips missed slots instead of catching up.
	if d := m.Observe(r(47, 10)); !d.Next.Equal(t0.Add(50 * time.Second)) {
		t.Fatalf("next %v", d.Next.Sub(t0))
	}
}

// TestScheduleSavesAndMissesNothing: a seeded schedule of load changes of 1
// W and more; every change is reported within one wake period plus the
// meter's settling and the confirmation delay, and the duty cycle sends at
// least 90 % fewer messages than always-on.
func TestScheduleSavesAndMissesNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	start := time.Unix(1e9, 0)
	s := &settling{base: 5}
	p := power.Watts(5)
	for at := 20 * time.Second; at < 6*time.Hour; at += time.Duration(60+rng.IntN(900)) * time.Second {
		d := power.Watts(1 + rng.IntN(200))
		if rng.IntN(2) == 0 && p-d > 0 {
			d = -d
		}
		p += d
		s.at = append(s.at, start.Add(at))
		s.level = append(s.level, p)
	}
	cfg := Config{}
	c, sent := Simulate(cfg, start, 6*time.Hour, s.read)
	cfg = New(cfg, start).Config()
	budget := cfg.Wake + 2500*time.Millisecond + cfg.ConfirmDelay
	for i, at := range s.at {
		deadline := at.Add(budget)
		if deadline.After(start.Add(6 * time.Hour)) {
			break
		}
		ok := false
		for _, r := range sent {
			if !r.Reading.Time.Before(at) && !r.Reading.Time.After(deadline) && r.Reading.Power == s.level[i] {
				ok = true
				break
			}
		}
		if !ok {
			t.Fatalf("change %d at %v to %v not reported within %v", i, at.Sub(start), s.level[i], budget)
		}
	}
	est := ESP32Profile().Estimate(c, cfg.Wake)
	if est.MessagesSavedPct < 90 {
		t.Fatalf("saved only %.1f %%: %v", est.MessagesSavedPct, est)
	}
	if !(est.AvgMA > 0.01 && est.AvgMA < est.AlwaysOnMA/5) {
		t.Fatalf("estimate %v", est)
	}
	t.Logf("%d changes over 6 h: %v", len(s.at), est)
}

// TestEnergyWorkedExample checks the model against the hand computation in
// docs/AGENT.md: one hour, 720 checks, 12 reports.
func TestEnergyWorkedExample(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := Counts{Start: t0, End: t0.Add(time.Hour), Checks: 720, Reports: 12}
	e := ESP32Profile().Estimate(c, 5*time.Second)
	// 720*25 mA*0.15 s = 2700 mAs; 12*(40*0.3+120*1.5+130*0.4) = 2928 mAs;
	// awake 108+26.4 s, sleep (3600-134.4)*0.01 = 34.656 mAs.
	want := (2700 + 2928 + 34.656) / 3600
	if math.Abs(e.AvgMA-want) > 1e-9 || e.AlwaysOnMessages != 720 || e.Messages != 12 {
		t.Fatalf("%+v, want %.4f mA", e, want)
	}
	if life := e.BatteryLife.Hours(); math.Abs(life-2500/want) > 0.01 {
		t.Fatalf("life %v", life)
	}
	if e.MessagesSavedPct < 98.3 || e.MessagesSavedPct > 98.4 {
		t.Fatalf("saved %v", e.MessagesSavedPct)
	}
}

func BenchmarkSimulateHour(b *testing.B) {
	s := &settling{base: 60}
	start := time.Unix(1e9, 0)
	for b.Loop() {
		Simulate(Config{}, start, time.Hour, s.read)
	}
}

// TestCyclingConfirmInOtherPhase: a thermostat starts cycling in step with
// the wakes, so that every check sees the heater on and every confirming
// read, 2.5 s later, sees it off. The original rule (confirm against the
// last report) never reports it; the envelope rule reports it at the
// second wake that saw it, and then stays quiet: both plateaus are known.
func TestCyclingConfirmInOtherPhase(t *testing.T) {
	start := time.Unix(1e9, 0)
	meter := func(now time.Time) power.Reading {
		p := power.Watts(30)
		if d := now.Sub(start); d >= time.Minute && (d-time.Minute)%(5*time.Second) < time.Second {
			p = 90
		}
		return power.Reading{Time: now, Power: p, Has: power.FieldPower}
	}
	c, sent := Simulate(Config{}, start, 4*time.Minute, meter)
	if len(sent) != 2 || !sent[1].Reading.Time.Equal(start.Add(65*time.Second)) || sent[1].Reading.Power != 90 || sent[1].Reason != ReasonChange {
		t.Fatalf("reports %+v, want the baseline and 90 W at 65 s", sent)
	}
	if c.Persisted != 1 || c.Confirms != 1 {
		t.Fatalf("counts %+v", c)
	}
	m := New(Config{}, start)
	m.Observe(meter(start))
	m.Observe(power.Reading{Time: start.Add(5 * time.Second), Power: 90, Has: power.FieldPower})
	m.Observe(power.Reading{Time: start.Add(7500 * time.Millisecond), Power: 90, Has: power.FieldPower})
	if env := m.Envelope(start.Add(10 * time.Second)); len(env) != 2 || env[0] != 90 || env[1] != 30 {
		t.Fatalf("envelope %v, want [90 30]", env)
	}
	if env := m.Envelope(start.Add(6 * time.Minute)); len(env) != 1 || env[0] != 90 {
		t.Fatalf("envelope after 6 min %v, want the last report only", env)
	}

	// The two-wake rule does not depend on the envelope.
	_, sent = Simulate(Config{Envelope: -1}, start, 4*time.Minute, meter)
	if len(sent) != 2 || !sent[1].Reading.Time.Equal(start.Add(65*time.Second)) {
		t.Fatalf("last report only: %+v", sent)
	}
}

// TestReturnToOlderLevel: 30 W, 50 W, then back to 30 W for good. 30 W is
// in the envelope (reported 2 min earlier), so the return looks like a
// phase of a cycling load until the load has sat there for Stay wakes.
func TestReturnToOlderLevel(t *testing.T) {
	start := time.Unix(1e9, 0)
	meter := func(now time.Time) power.Reading {
		p := power.Watts(30)
		if d := now.Sub(start); d >= time.Minute && d < 2*time.Minute {
			p = 50
		}
		return power.Reading{Time: now, Power: p, Has: power.FieldPower}
	}
	for _, c := range []struct {
		cfg  Config
		back time.Duration // when the return to 30 W is reported
	}{
		{Config{}, 125 * time.Second},                     // Stay 2: at the second wake
		{Config{Stay: 4}, 135 * time.Second},              // at the fourth
		{Config{Envelope: -1}, 122500 * time.Millisecond}, // last report only: confirmed at once
	} {
		counts, sent := Simulate(c.cfg, start, 4*time.Minute, meter)
		want := []time.Duration{0, 62500 * time.Millisecond, c.back}
		if len(sent) != len(want) {
			t.Fatalf("%+v: reports %+v", c.cfg, sent)
		}
		for i, s := range sent {
			if s.Reading.Time.Sub(start) != want[i] {
				t.Errorf("%+v: report %d at %v, want %v", c.cfg, i, s.Reading.Time.Sub(start), want[i])
			}
		}
		if wantRet := c.cfg.Envelope >= 0; (counts.Returned == 1) != wantRet {
			t.Errorf("%+v: counts %+v", c.cfg, counts)
		}
	}
}

// TestEnvelopeInvariants runs seeded mixes of steady steps, thermostat
// cycling (phases of 1-12 s, levels drifting) and spikes through a meter
// that averages over 1 s and shows it 1.2 s late, and checks what
// docs/AGENT.md promises against what a server receiving the reports can
// see: (1) no three consecutive wakes are off the envelope (every power
// reported in the last Envelope, and the last report) without a report in
// between, so no such deviation lasts longer than one wake period; (2) no
// Stay consecutive wakes sit within the threshold of each other and off
// the last report without a report at the last of them (Stay 2, 3 and 4).
func TestEnvelopeInvariants(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		start := time.Unix(1e9, 0)
		// A piecewise-constant true load on a 100 ms grid.
		const n = 2 * 3600 * 10
		truth := make([]float64, n)
		base, heat, on := 20.0, 0.0, false
		left := 0
		for i := range truth {
			if left <= 0 {
				switch x := rng.Float64(); {
				case x < 0.02:
					base = 5 + 200*rng.Float64() // a step of the steady part
				case x < 0.04:
					if heat == 0 {
						heat = 40 + 200*rng.Float64() // a thermostat starts
					} else {
						heat = 0
					}
				}
				on = !on
				left = 10 + rng.IntN(110) // a phase of 1-12 s
			}
			left--
			p := base
			if on {
				p += heat
			}
			if rng.IntN(2000) == 0 {
				p += 500 // a spike of 100 ms
			}
			truth[i] = p
		}
		var reads []power.Reading
		meter := func(now time.Time) power.Reading {
			end := int(now.Sub(start)/(100*time.Millisecond)) - 12 // shown 1.2 s late
			var sum float64
			for k := end - 10; k < end; k++ {
				sum += truth[max(0, min(n-1, k))]
			}
			r := power.Reading{Time: now, Power: power.Watts(math.Round(sum)), Has: power.FieldPower} // 1 s mean, 0.1 W
			r.Power = power.Watts(math.Round(float64(r.Power)*10) / 100)
			reads = append(reads, r)
			return r
		}
		cfg := Config{Stay: 2 + int(seed%3)}
		c, sent := Simulate(cfg, start, 2*time.Hour, meter)
		cfg = New(cfg, start).Config()
		m := New(cfg, start)
		near := func(p, ref power.Watts) bool { return math.Abs(float64(p-ref)) < float64(m.Threshold(ref)) }
		si := 0
		offN, stayN := 0, 0
		var stayP power.Watts
		var prev time.Time
		for _, r := range reads {
			if r.Time.Sub(start)%cfg.Wake != 0 {
				continue
			}
			reported := false
			for si < len(sent) && sent[si].Reading.Time.Before(r.Time) {
				reported = reported || !sent[si].Reading.Time.Before(prev)
				si++
			}
			prev = r.Time
			if si == 0 {
				continue
			}
			if reported {
				offN, stayN = 0, 0
			}
			last := sent[si-1].Reading.Power
			on := near(r.Power, last)
			for j := si - 1; j >= 0 && !on && r.Time.Sub(sent[j].Reading.Time) <= cfg.Envelope; j-- {
				on = near(r.Power, sent[j].Reading.Power)
			}
			if on {
				offN = 0
			} else if offN++; offN >= 3 {
				t.Fatalf("seed %d: off the envelope at 3 consecutive wakes up to %v without a report", seed, r.Time.Sub(start))
			}
			switch {
			case near(r.Power, last):
				stayN = 0
			case stayN > 0 && near(r.Power, stayP):
				atNow := si < len(sent) && sent[si].Reading.Time.Equal(r.Time)
				if stayN++; stayN >= cfg.Stay && !atNow {
					t.Fatalf("seed %d: settled off the last report for %d wakes up to %v", seed, stayN, r.Time.Sub(start))
				}
			default:
				stayP, stayN = r.Power, 1
			}
		}
		if c.Reports < 10 || c.Reports > c.Checks/2 {
			t.Fatalf("seed %d: counts %+v", seed, c)
		}
	}
}

// TestSetConfigEnvelope: the default envelope follows set_intervals (read,
// modify, write through Config as the agent does); an explicit one stays.
func TestSetConfigEnvelope(t *testing.T) {
	m := New(Config{}, time.Unix(0, 0))
	if m.Config().Envelope != 5*time.Minute || m.Config().Stay != 2 {
		t.Fatalf("defaults %+v", m.Config())
	}
	c := m.Config()
	c.Wake = 10 * time.Second
	m.SetConfig(c)
	if m.Config().Envelope != 10*time.Minute {
		t.Fatalf("default envelope after set_intervals: %v", m.Config().Envelope)
	}
	m = New(Config{Envelope: 2 * time.Minute}, time.Unix(0, 0))
	c = m.Config()
	c.Heartbeat = 10
	m.SetConfig(c)
	if m.Config().Envelope != 2*time.Minute {
		t.Fatalf("explicit envelope after set_intervals: %v", m.Config().Envelope)
	}
}
