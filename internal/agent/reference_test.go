package agent

import (
	"context"
	"fmt"
	"math"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/dutycycle"
	"loadwatch/internal/loadsim"
	"loadwatch/internal/power"
	"loadwatch/internal/telemetry"
)

// measured is what one agent did over a reference schedule.
type measured struct {
	messages, readings int // telemetry messages and the readings in them
	events             int // event messages (load on/off, surge, trips...)
	eventKinds         map[string]int
	states             map[string]int
	perHour            []int // telemetry readings by hour since the start
	reads              int
	counts             dutycycle.Counts
	duty               dutycycle.Config // the settings in use, defaults filled in
	// Off the envelope: a wake read further than the threshold from every
	// power the server received in the last Envelope (5 min) and from the
	// last report; runs of such wakes with no report in between. A run of
	// two consecutive wakes lasts one wake period.
	envRuns    int           // runs of 2+ wakes
	envLongest time.Duration // longest run, first to last wake
	// Settled elsewhere: consecutive wake reads within the threshold of
	// each other (the load sat on one level) and off the last report,
	// with no report in between. Cycling loads show their phases here.
	setRuns    int
	setLongest time.Duration
	ledger     power.WattHours // the agent's ledger total at the end
	meter      power.WattHours // the meter's counter at the last read
	lastTotal  power.WattHours // energy_total of the last report
	lastCtr    power.WattHours // energy of the last report
}

// memDir is a directory for the outboxes in memory (/dev/shm) when there
// is one: the outbox fsyncs its state at every report, which makes a
// simulated day wait on the disk for most of its wall time; what is
// measured here is the duty cycle, not the disk.
func memDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "loadwatch-agent-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// measure runs the agent (inside a synctest bubble) for dur of a schedule
// ("reference" or schedule text) against the virtual meter's physics and
// measures what it sent.
func measure(t *testing.T, sched string, dur time.Duration, alwaysOn bool, changeW power.Watts, changePct float64) measured {
	return measureDuty(t, sched, dur, alwaysOn, dutycycle.Config{ChangeW: changeW, ChangePct: changePct})
}

// measureDuty is measure with any duty-cycle settings (Wake stays 5 s).
func measureDuty(t *testing.T, sched string, dur time.Duration, alwaysOn bool, dc dutycycle.Config) measured {
	m := newSimMeter(t, sched)
	b := &fakeBroker{}
	cfg := testConfig(t, m, b)
	cfg.OutboxDir = memDir(t)
	cfg.Duty = dc
	if alwaysOn {
		cfg.Duty.AlwaysOn, cfg.Duty.Heartbeat = true, 1 // a report every wake
	}
	start := time.Now()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	duty := dutycycle.New(cfg.Duty, start).Config() // the defaults in use
	run(t, a, dur)
	h := measured{states: map[string]int{}, duty: duty}
	msgs := b.telemetry(t)
	h.messages = len(msgs)
	h.eventKinds = map[string]int{}
	for _, e := range b.on("event") {
		ev, err := telemetry.DecodeEvent(e.payload, time.Time{}, telemetry.Limits{})
		if err != nil {
			t.Fatalf("invalid event: %v", err)
		}
		h.events++
		h.eventKinds[string(ev.Kind)]++
	}
	type rep struct {
		at time.Time
		p  power.Watts
	}
	var reps []rep
	for _, msg := range msgs {
		for _, r := range msg.Readings {
			h.readings++
			h.states[string(r.State)]++
			hr := int(r.Reading.Time.Sub(start) / time.Hour)
			for len(h.perHour) <= hr {
				h.perHour = append(h.perHour, 0)
			}
			h.perHour[hr]++
			if r.Reading.Is(power.FieldPower) {
				reps = append(reps, rep{r.Reading.Time, r.Reading.Power})
			}
			h.lastTotal, h.lastCtr = r.EnergyTotal, r.Reading.Energy
		}
	}
	h.counts, _ = a.DutyCounts("pi1")
	h.ledger, _ = a.LedgerTotal("pi1")
	reads := m.allReads()
	h.reads = len(reads)
	h.meter = reads[len(reads)-1].Energy
	near := func(p, ref power.Watts) bool {
		return math.Abs(float64(p-ref)) < math.Max(float64(duty.ChangeW), duty.ChangePct/100*math.Abs(float64(ref)))
	}
	// The server's view at a wake: the reports made strictly before it.
	var env, set struct {
		n     int
		first time.Time
		level power.Watts
	}
	ri := 0 // reps[:ri] were made before the current wake
	var prevWake time.Time
	for _, r := range reads {
		if r.Time.Sub(start)%duty.Wake != 0 {
			continue // a confirming read, not a wake
		}
		reported := false // a report since the previous wake
		for ri < len(reps) && reps[ri].at.Before(r.Time) {
			if !reps[ri].at.Before(prevWake) {
				reported = true
			}
			ri++
		}
		prevWake = r.Time
		if ri == 0 {
			continue
		}
		if reported {
			env.n, set.n = 0, 0
		}
		last := reps[ri-1].p
		onEnv := near(r.Power, last)
		for j := ri - 1; j >= 0 && !onEnv && r.Time.Sub(reps[j].at) <= duty.Envelope; j-- {
			onEnv = near(r.Power, reps[j].p)
		}
		if onEnv {
			env.n = 0
		} else {
			if env.n == 0 {
				env.first = r.Time
			}
			env.n++
			if env.n == 2 {
				h.envRuns++
			}
			h.envLongest = max(h.envLongest, r.Time.Sub(env.first))
		}
		switch {
		case near(r.Power, last):
			set.n = 0
		case set.n > 0 && near(r.Power, set.level):
			set.n++
			if set.n == 2 {
				h.setRuns++
			}
			h.setLongest = max(h.setLongest, r.Time.Sub(set.first))
		default:
			set.n, set.first, set.level = 1, r.Time, r.Power
		}
	}
	return h
}

func (h measured) log(t *testing.T, what string, always float64, dur time.Duration) dutycycle.Estimate {
	t.Helper()
	est := dutycycle.ESP32Profile().Estimate(h.counts, 5*time.Second)
	hours := dur.Hours()
	saved := 100 * (1 - float64(h.messages)/(always*hours))
	t.Logf("%s: %.1f telemetry msg/h (%v) vs %.0f always-on = %.1f %% fewer; + %.1f event msg/h; %d checks, %d confirms, changes %d (%d at a 2nd wake off the envelope, %d back on an older plateau), %d heartbeats; est. %.2f mA avg, battery %.1f days (always-on %.1f mA, %.1f days); off the envelope at 2+ wakes: %d runs, longest %v; settled off the last report at 2+ wakes: %d runs, longest %v; energy: ledger %v, meter %v",
		what, float64(h.messages)/hours, h.states, always, saved, float64(h.events)/hours, h.counts.Checks, h.counts.Confirms,
		h.counts.Changes, h.counts.Persisted, h.counts.Returned, h.counts.Heartbeats,
		est.AvgMA, est.BatteryLife.Hours()/24, est.AlwaysOnMA, est.AlwaysOnLife.Hours()/24,
		h.envRuns, h.envLongest, h.setRuns, h.setLongest, h.ledger, h.meter)
	if h.ledger != h.meter || h.lastTotal != h.lastCtr {
		t.Errorf("%s: energy totals not exact: ledger %v meter %v, last report total %v counter %v", what, h.ledger, h.meter, h.lastTotal, h.lastCtr)
	}
	if h.envLongest > h.duty.Wake {
		t.Errorf("%s: the load was off the reported envelope for %v without a report (more than one wake period)", what, h.envLongest)
	}
	if limit := time.Duration(h.duty.Stay-1) * h.duty.Wake; h.setLongest > limit {
		t.Errorf("%s: the load sat on a level off the last report for %v without a report (Stay %d allows %v)", what, h.setLongest, h.duty.Stay, limit)
	}
	return est
}

// TestReferenceHour measures the duty cycle over loadsim's reference hour
// (a dense stress test of every behaviour) against an always-on agent that
// reports every wake: messages, the estimated ESP32 average current,
// changes left unreported, and energy totals, for several change
// thresholds. The figures go to docs/AGENT.md:
//
//	go test ./internal/agent -run 'TestReference(Hour|Day)' -v
func TestReferenceHour(t *testing.T) {
	var always measured
	synctest.Test(t, func(t *testing.T) { always = measure(t, "reference", time.Hour, true, 1, 0.5) })
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
		var duty measured
		synctest.Test(t, func(t *testing.T) { duty = measure(t, "reference", time.Hour, false, c.w, c.pct) })
		duty.log(t, fmt.Sprintf("hour, threshold max(%v, %g %%)", c.w, c.pct), float64(always.messages), time.Hour)
		if msgs := duty.messages + duty.events; msgs >= prev {
			t.Errorf("a larger threshold sent more messages (%d >= %d)", msgs, prev)
		} else {
			prev = msgs
		}
	}
}

// TestReferenceDay measures the default duty cycle over loadsim's
// reference day (a maker's workshop: 14 h of standby, a working day with
// the seed appliances) through the same agent path as TestReferenceHour.
// Always-on sends one report per wake (720 an hour, as TestReferenceHour
// shows); it is run over the whole day only with LOADWATCH_LONG set, as is
// the comparison without the envelope. -short skips the Stay 4 day; the
// race detector skips the whole test unless LOADWATCH_LONG is set.
func TestReferenceDay(t *testing.T) {
	long := os.Getenv("LOADWATCH_LONG") != ""
	if raceEnabled && !long {
		t.Skip("a simulated day takes over a minute under the race detector; set LOADWATCH_LONG=1")
	}
	const day = 24 * time.Hour
	var duty measured
	synctest.Test(t, func(t *testing.T) { duty = measure(t, loadsim.ReferenceDayText, day, false, 1, 0.5) })
	always := 720.0
	if long {
		var a measured
		synctest.Test(t, func(t *testing.T) { a = measure(t, loadsim.ReferenceDayText, day, true, 1, 0.5) })
		always = float64(a.messages) / day.Hours()
		t.Logf("always-on over the day: %d telemetry + %d event messages", a.messages, a.events)
	}
	est := duty.log(t, "day, defaults (max(1 W, 0.5 %), Stay 2)", always, day)
	t.Logf("telemetry readings by hour of the day: %v; events by kind: %v", duty.perHour, duty.eventKinds)
	saved := 100 * (1 - float64(duty.messages)/(always*day.Hours()))
	t.Logf("day, defaults: 90 %% target met: %v (%.1f %% fewer)", saved >= 90, saved)
	// A floor against regressions; the target itself is reported above
	// and in docs/AGENT.md (the defaults fall just short of it).
	if saved < 85 {
		t.Errorf("the day saved only %.1f %% of the telemetry messages", saved)
	}
	if est.AvgMA <= 0 || est.AvgMA >= est.AlwaysOnMA/5 {
		t.Errorf("estimate %v", est)
	}
	if testing.Short() {
		return
	}
	// Stay 4 lets thermostat phases of up to 15 s return to a known
	// plateau unreported (a steady load back on a level reported in the
	// last 5 min then waits up to 3 wake periods).
	var stay4 measured
	synctest.Test(t, func(t *testing.T) {
		stay4 = measureDuty(t, loadsim.ReferenceDayText, day, false, dutycycle.Config{Stay: 4})
	})
	stay4.log(t, "day, Stay 4", always, day)
	if saved := 100 * (1 - float64(stay4.messages)/(always*day.Hours())); saved < 90 {
		t.Errorf("the day with Stay 4 saved only %.1f %% of the telemetry messages (target 90 %%)", saved)
	}
	if !long {
		return
	}
	// Against the last report only (no envelope), for comparison.
	var last measured
	synctest.Test(t, func(t *testing.T) {
		last = measureDuty(t, loadsim.ReferenceDayText, day, false, dutycycle.Config{Envelope: -1})
	})
	last.log(t, "day, last report only (Envelope -1)", always, day)
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
