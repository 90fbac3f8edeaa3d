// Package dutycycle is the wake-stub state machine of a battery-powered
// meter node, faithful to the original firmware: wake every 5 s for a quick
// check, go back to sleep when the load changed by less than the threshold,
// wake fully and report when it changed, and send a heartbeat every 60
// cycles (about 5 min) to pick up commands and updates. Events (an anomaly,
// a relay trip) always wake fully. Between reports the radio is off unless
// AlwaysOn.
//
// Unlike the original it is honest about the PZEM-004T, which averages and
// needs about 2.5 s to settle after a change: a change seen by the quick
// check is confirmed by a follow-up read ConfirmDelay later before it
// counts, so a reading caught mid-settling is never reported as the new
// level, and a spike that is gone by then costs no report.
//
// The Machine is pure: the agent feeds it readings stamped with the time and
// asks when to read next; it does no I/O and reads no clock. The package
// also holds an energy model of an ESP32-class node (energy.go).
//
// It imports only the standard library and loadwatch/internal/power.
package dutycycle

import (
	"math"
	"strconv"
	"time"

	"loadwatch/internal/power"
)

// Config sets the duty cycle. Zero fields mean the defaults in brackets.
type Config struct {
	Wake time.Duration // wake period [5 s]
	// The change threshold is max(ChangeW, ChangePct % of the last reported
	// P) [1 W, 0.5 %]: 1 W is the original's; the relative part keeps the
	// meter's own noise (0.5 % accuracy) from counting as change at high
	// load. A negative ChangePct disables the relative part.
	ChangeW   power.Watts
	ChangePct float64
	Heartbeat int // full wake after this many cycles without one [60]
	// ConfirmDelay is how long after a quick check that saw a change the
	// follow-up read is taken [2.5 s: the meter's settling time].
	ConfirmDelay time.Duration
	AlwaysOn     bool // keep the radio on between reports
}

func (c Config) withDefaults() Config {
	if c.Wake <= 0 {
		c.Wake = 5 * time.Second
	}
	if c.ChangeW <= 0 {
		c.ChangeW = 1
	}
	if c.ChangePct == 0 {
		c.ChangePct = 0.5
	}
	if c.ChangePct < 0 {
		c.ChangePct = 0
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 60
	}
	if c.ConfirmDelay <= 0 {
		c.ConfirmDelay = 2500 * time.Millisecond
	}
	return c
}

// Action is what the agent does after a step.
type Action int

// The actions.
const (
	Sleep   Action = iota // nothing to send: back to sleep until Next
	Confirm               // a change was seen: read again at Next to confirm it
	Report                // wake fully and send the reading
)

func (a Action) String() string {
	switch a {
	case Sleep:
		return "sleep"
	case Confirm:
		return "confirm"
	case Report:
		return "report"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Reason says why a reading is reported; the values are the telemetry
// states.
type Reason string

// The report reasons.
const (
	ReasonChange    Reason = "active"
	ReasonHeartbeat Reason = "heartbeat"
	ReasonEvent     Reason = "event"
)

// Decision is the outcome of one step.
type Decision struct {
	Action Action
	Reason Reason    // for Report
	Next   time.Time // when to read next
	Radio  bool      // the radio must be on after this step (Report or AlwaysOn)
}

// Counts are what the machine did, for the energy model.
type Counts struct {
	Start, End time.Time
	Checks     int // quick checks (wake-stub reads)
	Confirms   int // follow-up reads
	Reports    int // full wakes with a report
	Changes    int // of which for a change
	Heartbeats int // of which heartbeats
	Events     int // of which events
}

// Duration is the time the counts cover.
func (c Counts) Duration() time.Duration { return c.End.Sub(c.Start) }

// Machine is the duty-cycle state of one node. Not safe for concurrent use.
type Machine struct {
	cfg        Config
	reported   power.Reading // last reported reading
	hasRep     bool
	confirming bool
	cycles     int       // wakes since the last full wake
	wakeAt     time.Time // the current slot on the wake grid
	counts     Counts
}

// New returns a Machine whose first wake is at start.
func New(cfg Config, start time.Time) *Machine {
	return &Machine{cfg: cfg.withDefaults(), wakeAt: start, counts: Counts{Start: start, End: start}}
}

// Config returns the configuration in use (defaults filled in).
func (m *Machine) Config() Config { return m.cfg }

// SetConfig applies new intervals or thresholds (set_intervals,
// set_thresholds); they take effect from the next wake.
func (m *Machine) SetConfig(cfg Config) { m.cfg = cfg.withDefaults() }

// Next returns when the agent should take its next reading.
func (m *Machine) Next() time.Time {
	if m.confirming {
		return m.counts.End.Add(m.cfg.ConfirmDelay)
	}
	return m.wakeAt
}

// Counts returns what the machine has done so far.
func (m *Machine) Counts() Counts { return m.counts }

// Threshold returns the change threshold around a reported power.
func (m *Machine) Threshold(p power.Watts) power.Watts {
	return power.Watts(math.Max(float64(m.cfg.ChangeW), m.cfg.ChangePct/100*math.Abs(float64(p))))
}

func (m *Machine) changed(r power.Reading) bool {
	if !r.Is(power.FieldPower) || !m.reported.Is(power.FieldPower) {
		return false // nothing to compare: only heartbeats report
	}
	return math.Abs(float64(r.Power-m.reported.Power)) >= float64(m.Threshold(m.reported.Power))
}

// advance moves the wake slot past now, keeping the grid (no drift; slots
// missed because a read ran late are skipped, not caught up).
func (m *Machine) advance(now time.Time) {
	m.wakeAt = m.wakeAt.Add(m.cfg.Wake)
	if !m.wakeAt.After(now) {
		missed := now.Sub(m.wakeAt)/m.cfg.Wake + 1
		m.wakeAt = m.wakeAt.Add(missed * m.cfg.Wake)
	}
}

func (m *Machine) report(r power.Reading, why Reason) Decision {
	m.reported, m.hasRep = r, true
	m.cycles = 0
	m.counts.Reports++
	switch why {
	case ReasonChange:
		m.counts.Changes++
	case ReasonHeartbeat:
		m.counts.Heartbeats++
	case ReasonEvent:
		m.counts.Events++
	}
	return Decision{Action: Report, Reason: why, Next: m.Next(), Radio: true}
}

// Observe takes the reading the agent made at r.Time (a quick check at the
// wake slot, or the confirming read) and decides.
func (m *Machine) Observe(r power.Reading) Decision {
	if r.Time.After(m.counts.End) {
		m.counts.End = r.Time
	}
	if m.confirming {
		m.confirming = false
		m.counts.Confirms++
		if m.changed(r) {
			return m.report(r, ReasonChange)
		}
		if m.cycles >= m.cfg.Heartbeat {
			return m.report(r, ReasonHeartbeat)
		}
		return Decision{Action: Sleep, Next: m.Next(), Radio: m.cfg.AlwaysOn}
	}
	m.counts.Checks++
	m.cycles++
	m.advance(r.Time)
	switch {
	case !m.hasRep:
		return m.report(r, ReasonChange) // the first reading sets the baseline
	case m.changed(r):
		m.confirming = true
		return Decision{Action: Confirm, Next: m.Next(), Radio: m.cfg.AlwaysOn}
	case m.cycles >= m.cfg.Heartbeat:
		return m.report(r, ReasonHeartbeat)
	}
	return Decision{Action: Sleep, Next: m.Next(), Radio: m.cfg.AlwaysOn}
}

// Event forces a full wake for an anomaly or a relay trip: the agent
// reports r (its latest reading) with state "event". A pending
// confirmation is dropped (the report carries the newer reading).
func (m *Machine) Event(r power.Reading) Decision {
	if r.Time.After(m.counts.End) {
		m.counts.End = r.Time
	}
	m.confirming = false
	if !m.wakeAt.After(r.Time) {
		m.advance(r.Time)
	}
	return m.report(r, ReasonEvent)
}
