package safety

import (
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/power"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func rd(at time.Duration, v power.Volts, a power.Amperes, p power.Watts, alarm bool) power.Reading {
	return power.Reading{Time: t0.Add(at), Voltage: v, Current: a, Power: p, Alarm: alarm,
		Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldAlarm}
}

// TestPerLimit: each limit trips after exactly Hold of continuous
// excursion, and an interruption restarts the hold.
func TestPerLimit(t *testing.T) {
	normal := func(at time.Duration) power.Reading { return rd(at, 230, 1, 200, false) }
	cases := []struct {
		name  string
		cfg   Config
		over  func(at time.Duration) power.Reading
		cause Cause
	}{
		{"power", Config{MaxPower: 2000}, func(at time.Duration) power.Reading { return rd(at, 229, 9, 2100, false) }, CausePower},
		{"current", Config{MaxCurrent: 8}, func(at time.Duration) power.Reading { return rd(at, 229, 8.5, 1900, false) }, CauseCurrent},
		{"overvoltage", Config{MaxVoltage: 253}, func(at time.Duration) power.Reading { return rd(at, 254, 1, 200, false) }, CauseOvervoltage},
		{"undervoltage", Config{MinVoltage: 207}, func(at time.Duration) power.Reading { return rd(at, 200, 1, 200, false) }, CauseUndervoltage},
		{"alarm", Config{TripOnAlarm: true}, func(at time.Duration) power.Reading { return rd(at, 230, 1, 200, true) }, CauseAlarm},
	}
	s := time.Second
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Hold = 2 * s
			m := New(c.cfg)
			seq := []struct {
				r      power.Reading
				closed bool
			}{
				{normal(0), true},
				{c.over(1 * s), true},   // excursion starts
				{c.over(2 * s), true},   // 1 s
				{normal(3 * s), true},   // interrupted
				{c.over(4 * s), true},   // restarts
				{c.over(5 * s), true},   // 1 s
				{c.over(6 * s), false},  // 2 s >= Hold: trip
				{normal(7 * s), false},  // latched (no Recovery)
				{normal(99 * s), false}, // still latched
			}
			for i, st := range seq {
				d := m.Observe(st.r)
				if d.Closed != st.closed {
					t.Fatalf("step %d: closed=%v want %v", i, d.Closed, st.closed)
				}
				if i == 6 {
					if len(d.Events) != 1 || d.Events[0].Kind != EventTrip || d.Events[0].Cause != c.cause ||
						!d.Events[0].Since.Equal(t0.Add(4*s)) || !d.Changed {
						t.Fatalf("trip event: %+v", d)
					}
				} else if len(d.Events) != 0 {
					t.Fatalf("step %d: unexpected events %v", i, d.Events)
				}
			}
			if m.State() != Latched {
				t.Fatalf("state %v", m.State())
			}
			d, err := m.Reset(t0.Add(100 * s))
			if err != nil || !d.Closed || len(d.Events) != 1 || d.Events[0].Kind != EventReset {
				t.Fatalf("reset: %+v %v", d, err)
			}
		})
	}
}

func TestZeroHoldAndMissingFields(t *testing.T) {
	m := New(Config{MaxPower: 100})
	// A reading without power says nothing about the power limit.
	if d := m.Observe(power.Reading{Time: t0, Voltage: 230, Has: power.FieldVoltage}); !d.Closed {
		t.Fatal("tripped on a reading without power")
	}
	if d := m.Observe(rd(time.Second, 230, 1, 101, false)); d.Closed {
		t.Fatal("zero hold must trip on the first reading over")
	}
	// Missing fields do not end an excursion.
	m = New(Config{MaxPower: 100, Hold: 2 * time.Second})
	m.Observe(rd(0, 230, 1, 150, false))
	m.Observe(power.Reading{Time: t0.Add(time.Second), Voltage: 230, Has: power.FieldVoltage})
	if d := m.Observe(rd(2*time.Second, 230, 1, 150, false)); d.Closed {
		t.Fatal("excursion interrupted by a reading lacking power")
	}
}

func TestResetRefusedWhileExceeded(t *testing.T) {
	m := New(Config{MaxVoltage: 253, Hold: time.Second})
	m.Observe(rd(0, 260, 1, 100, false))
	m.Observe(rd(time.Second, 260, 1, 100, false))
	if m.State() != Latched {
		t.Fatalf("state %v", m.State())
	}
	if d, err := m.Reset(t0.Add(2 * time.Second)); !errors.Is(err, ErrLimitExceeded) || d.Closed {
		t.Fatalf("reset while over: %+v %v", d, err)
	}
	if _, err := m.Close(t0.Add(2 * time.Second)); !errors.Is(err, ErrLimitExceeded) {
		t.Fatal("close while over")
	}
	m.Observe(rd(3*time.Second, 231, 1, 100, false))
	if d, err := m.Close(t0.Add(3 * time.Second)); err != nil || !d.Closed || d.Events[0].Kind != EventReset {
		t.Fatalf("close after recovery of V: %+v %v", d, err)
	}
	// relay_off then relay_on: no events.
	if d := m.Open(t0.Add(4 * time.Second)); d.Closed || !d.Changed || len(d.Events) != 0 || m.State() != Off {
		t.Fatalf("open: %+v", d)
	}
	if d := m.Observe(rd(5*time.Second, 231, 1, 100, false)); d.Closed {
		t.Fatal("Off must stay open")
	}
	if d, err := m.Close(t0.Add(6 * time.Second)); err != nil || !d.Closed || len(d.Events) != 0 {
		t.Fatalf("close: %+v %v", d, err)
	}
}

// TestRecoveryRetriesLatch runs in a synctest bubble: the loop reads the
// (fake) clock and sleeps like the agent's sampling loop does. The load is
// a heater that draws 3 kW whenever the relay is closed.
func TestRecoveryRetriesLatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := New(Config{MaxPower: 2500, Hold: 2 * time.Second, Recovery: 30 * time.Second, MaxRetries: 2})
		closed := true
		start := time.Now()
		var log []Event
		for time.Since(start) < 5*time.Minute {
			p := power.Watts(0)
			if closed {
				p = 3000
			}
			d := m.Observe(power.Reading{Time: time.Now(), Power: p, Has: power.FieldPower})
			closed = d.Closed
			log = append(log, d.Events...)
			time.Sleep(time.Second)
		}
		kinds := []EventKind{EventTrip, EventRecover, EventTrip, EventRecover, EventTrip, EventLatch}
		if len(log) != len(kinds) {
			t.Fatalf("events %v", log)
		}
		for i, k := range kinds {
			if log[i].Kind != k {
				t.Fatalf("event %d = %v, want %v (%v)", i, log[i].Kind, k, log)
			}
		}
		// Recover 30 s after the trip; the first reading over comes 1 s
		// after closing and the trip 2 s (Hold) after that.
		if d := log[1].Time.Sub(log[0].Time); d != 30*time.Second {
			t.Errorf("recovery after %v", d)
		}
		if d := log[2].Time.Sub(log[1].Time); d != 3*time.Second {
			t.Errorf("re-trip after %v", d)
		}
		if m.State() != Latched || closed {
			t.Fatalf("state %v", m.State())
		}
	})
}

// TestRetryCountRestarts: a clean RetryReset period gives the retries back.
func TestRetryCountRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := New(Config{MaxCurrent: 10, Recovery: 5 * time.Second, MaxRetries: 1, RetryReset: time.Minute})
		over := func() Decision {
			return m.Observe(power.Reading{Time: time.Now(), Current: 12, Has: power.FieldCurrent})
		}
		ok := func() Decision {
			return m.Observe(power.Reading{Time: time.Now(), Current: 1, Has: power.FieldCurrent})
		}
		over() // trip
		time.Sleep(5 * time.Second)
		if d := ok(); !d.Closed || m.Retries() != 1 {
			t.Fatalf("recovery: %+v retries %d", d, m.Retries())
		}
		time.Sleep(61 * time.Second)
		ok()
		if m.Retries() != 0 {
			t.Fatalf("retries %d after a clean minute", m.Retries())
		}
		over() // trips again, and may recover again
		if m.State() != Tripped {
			t.Fatalf("state %v, want tripped", m.State())
		}
		ok() // the load is gone
		time.Sleep(4 * time.Second)
		if d := m.Tick(time.Now()); d.Closed {
			t.Fatal("Tick recovered early")
		}
		time.Sleep(time.Second)
		if d := m.Tick(time.Now()); !d.Closed {
			t.Fatal("Tick did not recover")
		}
	})
}

// TestPropertyNeverClosedPastHold: for seeded random configurations and
// reading sequences (random intervals, values around the limits, missing
// fields, random commands, a load that the relay removes), the relay is
// never closed while some limit has been exceeded continuously for at least
// its hold time, and it never trips before that.
func TestPropertyNeverClosedPastHold(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 7))
	for run := range 300 {
		cfg := Config{
			MaxPower:    power.Watts(500 + rng.IntN(2000)),
			MaxCurrent:  power.Amperes(2 + rng.IntN(10)),
			MaxVoltage:  253,
			MinVoltage:  207,
			TripOnAlarm: rng.IntN(2) == 0,
			Hold:        time.Duration(rng.IntN(4000)) * time.Millisecond,
			Recovery:    time.Duration(rng.IntN(3)) * 10 * time.Second,
			MaxRetries:  rng.IntN(3),
		}
		m := New(cfg)
		var since [len(causes)]time.Time // the oracle's excursion starts
		now := t0
		closed := true
		for step := range 400 {
			now = now.Add(time.Duration(100+rng.IntN(1500)) * time.Millisecond)
			switch rng.IntN(40) {
			case 0:
				d, err := m.Reset(now)
				if err == nil {
					closed = d.Closed
				}
			case 1:
				closed = m.Open(now).Closed
			case 2:
				d, err := m.Close(now)
				if err == nil {
					closed = d.Closed
				}
			}
			r := power.Reading{Time: now}
			load := rng.Float64() * 1.5 * float64(cfg.MaxPower)
			if !closed {
				load = 0 // the relay removes the load
			}
			if rng.IntN(10) > 0 {
				r.Power, r.Has = power.Watts(load), r.Has|power.FieldPower
			}
			if rng.IntN(10) > 0 {
				r.Current, r.Has = power.Amperes(load/230*float64(1+rng.IntN(3))/2), r.Has|power.FieldCurrent
			}
			if rng.IntN(10) > 0 {
				r.Voltage, r.Has = power.Volts(200+rng.Float64()*60), r.Has|power.FieldVoltage
			}
			if rng.IntN(10) > 0 {
				r.Alarm, r.Has = load > float64(cfg.MaxPower)*0.9, r.Has|power.FieldAlarm
			}
			overs := [len(causes)]struct{ over, known bool }{
				{r.Power > cfg.MaxPower, r.Is(power.FieldPower)},
				{r.Current > cfg.MaxCurrent, r.Is(power.FieldCurrent)},
				{r.Voltage > cfg.MaxVoltage, r.Is(power.FieldVoltage)},
				{r.Voltage < cfg.MinVoltage, r.Is(power.FieldVoltage)},
				{r.Alarm && cfg.TripOnAlarm, r.Is(power.FieldAlarm)},
			}
			for i, o := range overs {
				if !o.known {
					continue
				}
				if !o.over {
					since[i] = time.Time{}
				} else if since[i].IsZero() {
					since[i] = now
				}
			}
			d := m.Observe(r)
			closed = d.Closed
			for i := range causes {
				if closed && !since[i].IsZero() && now.Sub(since[i]) >= cfg.Hold {
					t.Fatalf("run %d step %d: closed while %s exceeded for %v (hold %v)", run, step, causes[i], now.Sub(since[i]), cfg.Hold)
				}
			}
			for _, e := range d.Events {
				if e.Kind == EventTrip {
					i := indexOf(e.Cause)
					if since[i].IsZero() || now.Sub(since[i]) < cfg.Hold {
						t.Fatalf("run %d step %d: early trip %v", run, step, e)
					}
				}
			}
		}
	}
}

func indexOf(c Cause) int {
	for i, x := range causes {
		if x == c {
			return i
		}
	}
	return -1
}

func BenchmarkObserve(b *testing.B) {
	m := New(Config{MaxPower: 2000, MaxCurrent: 10, MaxVoltage: 253, MinVoltage: 207, TripOnAlarm: true, Hold: time.Second})
	r := rd(0, 230, 1, 200, false)
	for b.Loop() {
		r.Time = r.Time.Add(time.Second)
		m.Observe(r)
	}
}
