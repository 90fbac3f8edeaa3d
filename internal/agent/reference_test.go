package agent

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/dutycycle"
	"loadwatch/internal/power"
)

// hour is what one agent did over loadsim's reference hour.
type hour struct {
	messages, readings int // telemetry messages and the readings in them
	events             int // event messages (load on/off, surge, trips...)
	states             map[string]int
	reads              int
	counts             dutycycle.Counts
	missedRuns         int           // deviations >= threshold seen at two or more consecutive wakes without a report
	longestMiss        time.Duration // longest such deviation, first to last wake that saw it
	ledger, meter      power.WattHours
	lastTotal, lastCtr power.WattHours // in the last report
}

// referenceHour runs the agent (inside a synctest bubble) for one hour of
// the reference schedule against the virtual meter's physics.
func referenceHour(t *testing.T, alwaysOn bool, changeW power.Watts, changePct float64) hour {
	m := newSimMeter(t, "reference")
	b := &fakeBroker{}
	cfg := testConfig(t, m, b)
	cfg.Duty.ChangeW, cfg.Duty.ChangePct = changeW, changePct
	if alwaysOn {
		cfg.Duty.AlwaysOn, cfg.Duty.Heartbeat = true, 1 // a report every wake
	}
	start := time.Now()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, a, time.Hour)
	h := hour{states: map[string]int{}}
	msgs := b.telemetry(t)
	h.messages = len(msgs)
	h.events = len(b.on("event"))
	type rep struct {
		at time.Time
		p  power.Watts
	}
	var reps []rep
	for _, msg := range msgs {
		for _, r := range msg.Readings {
			h.readings++
			h.states[string(r.State)]++
			reps = append(reps, rep{r.Reading.Time, r.Reading.Power})
			h.lastTotal, h.lastCtr = r.EnergyTotal, r.Reading.Energy
		}
	}
	h.counts, _ = a.DutyCounts("pi1")
	h.ledger, _ = a.LedgerTotal("pi1")
	reads := m.allReads()
	h.reads = len(reads)
	h.meter = reads[len(reads)-1].Energy
	wake := 5 * time.Second
	pct := changePct
	if pct == 0 {
		pct = 0.5
	}
	thr := func(p power.Watts) float64 { return math.Max(float64(changeW), pct/100*math.Abs(float64(p))) }
	ri := 0
	var runStart time.Time
	runLen := 0
	for _, r := range reads {
		if r.Time.Sub(start)%wake != 0 {
			continue // a confirming read, not a wake
		}
		for ri+1 < len(reps) && !reps[ri+1].at.After(r.Time) {
			ri++
		}
		if len(reps) == 0 || reps[ri].at.After(r.Time) {
			continue
		}
		if math.Abs(float64(r.Power-reps[ri].p)) >= thr(reps[ri].p) {
			if runLen == 0 {
				runStart = r.Time
			}
			runLen++
			if runLen == 2 {
				h.missedRuns++
			}
			if d := r.Time.Sub(runStart); runLen >= 2 && d > h.longestMiss {
				h.longestMiss = d
			}
		} else {
			runLen = 0
		}
	}
	return h
}

// TestReferenceHour measures the duty cycle over loadsim's reference hour
// against an always-on agent that reports every wake: messages, the
// estimated ESP32 average current, changes left unreported, and energy
// totals, for several change thresholds. The figures go to docs/AGENT.md:
//
//	go test ./internal/agent -run TestReferenceHour -v
func TestReferenceHour(t *testing.T) {
	var always hour
	synctest.Test(t, func(t *testing.T) { always = referenceHour(t, true, 1, 0.5) })
	if always.messages < 700 || always.ledger != always.meter {
		t.Fatalf("always-on: %d messages, ledger %v, meter %v", always.messages, always.ledger, always.meter)
	}
	alwaysMsgs := always.messages + always.events
	t.Logf("always-on (a report every 5 s wake): %d telemetry + %d event messages/h, %.1f mA (ESP32 model)",
		always.messages, always.events, dutycycle.ESP32Profile().AlwaysOnMA)
	prev := alwaysMsgs + 1
	thresholds := []struct {
		w   power.Watts
		pct float64
	}{{1, 0.5}, {5, 2}, {10, 5}, {25, 10}}
	if testing.Short() {
		thresholds = thresholds[:1]
	}
	for _, c := range thresholds {
		var duty hour
		synctest.Test(t, func(t *testing.T) { duty = referenceHour(t, false, c.w, c.pct) })
		est := dutycycle.ESP32Profile().Estimate(duty.counts, 5*time.Second)
		msgs := duty.messages + duty.events
		saved := 100 * (1 - float64(msgs)/float64(alwaysMsgs))
		savedTele := 100 * (1 - float64(duty.messages)/float64(always.messages))
		t.Logf("threshold max(%v, %g %%): %d telemetry (%v; %.1f %% fewer) + %d event messages/h = %.1f %% fewer in all; %d checks, %d confirms; est. %.2f mA avg, battery %v; deviations unreported at 2+ consecutive wakes: %d (longest %v)",
			c.w, c.pct, duty.messages, duty.states, savedTele, duty.events, saved, duty.counts.Checks, duty.counts.Confirms,
			est.AvgMA, est.BatteryLife.Round(time.Hour), duty.missedRuns, duty.longestMiss)
		if duty.ledger != duty.meter || duty.lastTotal != duty.lastCtr {
			t.Errorf("energy totals not exact: ledger %v meter %v, last report total %v counter %v", duty.ledger, duty.meter, duty.lastTotal, duty.lastCtr)
		}
		if msgs >= prev {
			t.Errorf("a larger threshold sent more messages (%d >= %d)", msgs, prev)
		}
		prev = msgs
	}
}

// BenchmarkProcessReading is the sampling path's CPU cost per reading
// (safety, ledger, features, anomaly, duty cycle; the steady state is a
// quick check that is not reported).
func BenchmarkProcessReading(b *testing.B) {
	m := &simMeter{}
	a, err := New(testConfig(b, m, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer a.closeAll()
	d := a.devs[0]
	r := power.Reading{Time: time.Now(), Voltage: 230, Current: 0.2, Power: 30, Energy: 10, Frequency: 50, PF: 0.6, Has: power.AllMeterFields}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Time = r.Time.Add(5 * time.Second)
		r.Power = 30 + power.Watts(i%3)*0.1
		a.process(ctx, d, r, true)
	}
}
