// Package safety decides when the agent's relay must open: a pure state
// machine fed with meter readings and the time, with no I/O, so that the
// sampling loop can run it on every read and never wait on the network.
//
// A limit (power, current, over- or under-voltage, the meter's own alarm
// flag) trips the relay when it has been exceeded continuously for at least
// Hold. A trip either latches (open until a manual reset) or, with Recovery
// set, closes again after Recovery once every limit is back within bounds,
// at most MaxRetries times before it latches. Readings lacking a field say
// nothing about its limit: they neither start nor end an excursion.
//
// The relay is only as fast as the meter: see docs/AGENT.md for the
// latency budget (meter refresh and averaging, read time, Hold).
//
// The package imports only the standard library and loadwatch/internal/power.
package safety

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"loadwatch/internal/power"
)

// Cause names the limit behind a trip.
type Cause string

// The limits.
const (
	CausePower        Cause = "power"
	CauseCurrent      Cause = "current"
	CauseOvervoltage  Cause = "overvoltage"
	CauseUndervoltage Cause = "undervoltage"
	CauseAlarm        Cause = "alarm" // the meter's power alarm flag
)

var causes = [...]Cause{CausePower, CauseCurrent, CauseOvervoltage, CauseUndervoltage, CauseAlarm}

// Config holds the limits and the trip policy. A zero limit is disabled.
type Config struct {
	MaxPower    power.Watts
	MaxCurrent  power.Amperes
	MaxVoltage  power.Volts // overvoltage limit
	MinVoltage  power.Volts // undervoltage limit
	TripOnAlarm bool        // trip on the meter's alarm flag (its threshold is set on the meter)

	// Hold is how long a limit must be exceeded continuously before the
	// relay opens; 0 trips on the first reading over a limit.
	Hold time.Duration
	// Recovery, when > 0, closes a tripped relay again this long after the
	// trip, once no limit is exceeded. 0 latches every trip.
	Recovery time.Duration
	// MaxRetries is how many automatic recoveries are allowed before a
	// trip latches. The count restarts after RetryReset (default 10 min)
	// closed without a trip, and on a manual reset.
	MaxRetries int
	RetryReset time.Duration
}

// State is the relay's state.
type State int

// The relay states.
const (
	Closed  State = iota // relay closed, load powered
	Tripped              // opened by a limit, waiting for recovery
	Latched              // opened by a limit, closed only by a manual reset
	Off                  // opened by command (relay_off)
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Tripped:
		return "tripped"
	case Latched:
		return "latched"
	case Off:
		return "open"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// EventKind is what happened to the relay; the values are the telemetry
// event kinds.
type EventKind string

// The relay events.
const (
	EventTrip    EventKind = "relay_trip"
	EventLatch   EventKind = "relay_latch"
	EventRecover EventKind = "relay_recover"
	EventReset   EventKind = "relay_reset"
)

// Event records a relay change with its evidence.
type Event struct {
	Kind    EventKind
	Time    time.Time
	Cause   Cause         // for trip and latch
	Value   float64       // the offending value, in the cause's unit (1 for alarm)
	Limit   float64       // the limit it crossed
	Since   time.Time     // when the excursion began
	Reading power.Reading // the reading that tripped (trip) or the latest one
	Retries int           // automatic recoveries used so far
}

func (e Event) String() string {
	s := string(e.Kind) + " at " + e.Time.Format(time.RFC3339Nano)
	if e.Cause != "" {
		s += fmt.Sprintf(" (%s %g, limit %g, for %v)", e.Cause, e.Value, e.Limit, e.Time.Sub(e.Since))
	}
	return s
}

// Decision is the outcome of one step: whether the relay must be closed,
// whether that changed, and the events to record.
type Decision struct {
	Closed  bool
	Changed bool
	Events  []Event
}

// ErrLimitExceeded is returned by Reset and Close when a limit is still
// exceeded past its hold time; the relay stays open.
var ErrLimitExceeded = errors.New("safety: a limit is still exceeded")

// Machine is the trip state machine of one relay. It is not safe for
// concurrent use; the sampling loop owns it.
type Machine struct {
	cfg     Config
	state   State
	since   [len(causes)]time.Time // start of the current excursion per cause; zero when within limits
	value   [len(causes)]float64
	last    power.Reading
	now     time.Time
	tripAt  time.Time
	closeAt time.Time // when the relay last closed
	retries int
}

// New returns a Machine with the relay closed.
func New(cfg Config) *Machine {
	if cfg.RetryReset <= 0 {
		cfg.RetryReset = 10 * time.Minute
	}
	return &Machine{cfg: cfg}
}

// State returns the relay's state.
func (m *Machine) State() State { return m.state }

// Config returns the configuration in use.
func (m *Machine) Config() Config { return m.cfg }

// SetConfig changes limits and policy (set_thresholds); excursions in
// progress keep their start time.
func (m *Machine) SetConfig(cfg Config) {
	if cfg.RetryReset <= 0 {
		cfg.RetryReset = 10 * time.Minute
	}
	m.cfg = cfg
}

// Retries returns how many automatic recoveries have been used.
func (m *Machine) Retries() int { return m.retries }

// check returns whether the reading exceeds cause i's limit, the value and
// the limit, and whether the reading says anything about it.
func (m *Machine) check(i int, r *power.Reading) (over bool, v, lim float64, known bool) {
	c := &m.cfg
	switch causes[i] {
	case CausePower:
		if c.MaxPower > 0 && r.Is(power.FieldPower) {
			return r.Power > c.MaxPower, float64(r.Power), float64(c.MaxPower), true
		}
	case CauseCurrent:
		if c.MaxCurrent > 0 && r.Is(power.FieldCurrent) {
			return r.Current > c.MaxCurrent, float64(r.Current), float64(c.MaxCurrent), true
		}
	case CauseOvervoltage:
		if c.MaxVoltage > 0 && r.Is(power.FieldVoltage) {
			return r.Voltage > c.MaxVoltage, float64(r.Voltage), float64(c.MaxVoltage), true
		}
	case CauseUndervoltage:
		if c.MinVoltage > 0 && r.Is(power.FieldVoltage) {
			return r.Voltage < c.MinVoltage, float64(r.Voltage), float64(c.MinVoltage), true
		}
	case CauseAlarm:
		if c.TripOnAlarm && r.Is(power.FieldAlarm) {
			return r.Alarm, 1, 1, true
		}
	}
	return false, 0, 0, false
}

// limitOf returns cause i's limit in its unit (1 for the alarm flag).
func (m *Machine) limitOf(i int) float64 {
	switch causes[i] {
	case CausePower:
		return float64(m.cfg.MaxPower)
	case CauseCurrent:
		return float64(m.cfg.MaxCurrent)
	case CauseOvervoltage:
		return float64(m.cfg.MaxVoltage)
	case CauseUndervoltage:
		return float64(m.cfg.MinVoltage)
	}
	return 1
}

// clock advances the machine's time; time never runs backwards inside it.
func (m *Machine) clock(now time.Time) {
	if now.After(m.now) {
		m.now = now
	}
}

// overPastHold returns the first cause exceeded for at least Hold, or -1.
func (m *Machine) overPastHold() int {
	for i := range causes {
		if !m.since[i].IsZero() && m.now.Sub(m.since[i]) >= m.cfg.Hold {
			return i
		}
	}
	return -1
}

func (m *Machine) anyOver() bool {
	for i := range causes {
		if !m.since[i].IsZero() {
			return true
		}
	}
	return false
}

// Observe takes one reading, stamped r.Time, and returns the decision.
func (m *Machine) Observe(r power.Reading) Decision {
	m.clock(r.Time)
	m.last = r
	for i := range causes {
		over, v, _, known := m.check(i, &r)
		if !known {
			continue
		}
		switch {
		case over && m.since[i].IsZero():
			m.since[i] = m.now
			m.value[i] = v
		case over:
			m.value[i] = v
		default:
			m.since[i] = time.Time{}
		}
	}
	// Limits that were disabled by SetConfig no longer count.
	for i := range causes {
		if _, _, _, known := m.check(i, &power.Reading{Has: power.AllMeterFields}); !known {
			m.since[i] = time.Time{}
		}
	}
	return m.step()
}

// Tick advances time without a reading (for recovery and the retry count
// when no reading arrives) and returns the decision.
func (m *Machine) Tick(now time.Time) Decision {
	m.clock(now)
	return m.step()
}

func (m *Machine) step() Decision {
	d := Decision{}
	switch m.state {
	case Closed:
		if m.retries > 0 && m.now.Sub(m.closeAt) >= m.cfg.RetryReset {
			m.retries = 0
		}
		if i := m.overPastHold(); i >= 0 {
			ev := Event{Kind: EventTrip, Time: m.now, Cause: causes[i], Value: m.value[i], Limit: m.limitOf(i),
				Since: m.since[i], Reading: m.last, Retries: m.retries}
			d.Events = append(d.Events, ev)
			d.Changed = true
			m.tripAt = m.now
			if m.cfg.Recovery > 0 && m.retries < m.cfg.MaxRetries {
				m.state = Tripped
			} else {
				m.state = Latched
				if m.cfg.Recovery > 0 {
					ev.Kind = EventLatch
					d.Events = append(d.Events, ev)
				}
			}
		}
	case Tripped:
		if m.now.Sub(m.tripAt) >= m.cfg.Recovery && !m.anyOver() {
			m.retries++
			m.state = Closed
			m.closeAt = m.now
			d.Changed = true
			d.Events = append(d.Events, Event{Kind: EventRecover, Time: m.now, Reading: m.last, Retries: m.retries})
		}
	}
	d.Closed = m.state == Closed
	return d
}

// Reset is the manual reset (relay_reset): it clears a trip or latch and
// the retry count and closes the relay, unless a limit is still exceeded
// past its hold time (then ErrLimitExceeded and the relay stays open).
// Resetting a closed relay only clears the retry count. A relay opened by
// command stays open (use Close).
func (m *Machine) Reset(now time.Time) (Decision, error) {
	m.clock(now)
	switch m.state {
	case Tripped, Latched:
		if m.overPastHold() >= 0 {
			return Decision{Closed: false}, ErrLimitExceeded
		}
		m.state = Closed
		m.closeAt = m.now
		m.retries = 0
		return Decision{Closed: true, Changed: true, Events: []Event{{Kind: EventReset, Time: m.now, Reading: m.last}}}, nil
	case Closed:
		m.retries = 0
	}
	return Decision{Closed: m.state == Closed}, nil
}

// Open opens the relay by command (relay_off). It produces no event: the
// command's ack records it.
func (m *Machine) Open(now time.Time) Decision {
	m.clock(now)
	changed := m.state == Closed
	m.state = Off
	return Decision{Closed: false, Changed: changed}
}

// Close closes the relay by command (relay_on). From a trip or latch it is
// a manual reset (with its event); it fails with ErrLimitExceeded while a
// limit is exceeded past its hold time.
func (m *Machine) Close(now time.Time) (Decision, error) {
	m.clock(now)
	switch m.state {
	case Tripped, Latched:
		return m.Reset(now)
	case Off:
		if m.overPastHold() >= 0 {
			return Decision{Closed: false}, ErrLimitExceeded
		}
		m.state = Closed
		m.closeAt = m.now
		return Decision{Closed: true, Changed: true}, nil
	}
	return Decision{Closed: true}, nil
}
