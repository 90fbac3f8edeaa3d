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
// It is also honest about loads that cycle (a soldering station's or a 3D
// printer bed's thermostat, a laser printer's fuser): their power jumps
// between plateaus every few seconds, so a confirming read can land in the
// other phase. A check is compared with the envelope of the load, the
// powers reported during the last Envelope (5 min) rather than the last
// report alone, so a cycling load that returns to a plateau already
// reported costs nothing; a read off that envelope at two consecutive
// wakes is reported at the second even when the confirming read between
// them fell back onto a known plateau; and a load that settles on an older
// plateau instead of the last reported one is reported after Stay wakes
// (2: at the second).
// docs/AGENT.md gives the definitions and the latency of each case.
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
	// The change threshold is max(ChangeW, ChangePct % of the power
	// compared with) [1 W, 0.5 %]: 1 W is the original's; the relative part keeps the
	// meter's own noise (0.5 % accuracy) from counting as change at high
	// load. A negative ChangePct disables the relative part.
	ChangeW   power.Watts
	ChangePct float64
	Heartbeat int // full wake after this many cycles without one [60]
	// ConfirmDelay is how long after a quick check that saw a change the
	// follow-up read is taken [2.5 s: the meter's settling time].
	ConfirmDelay time.Duration
	// Envelope is how long a reported power keeps explaining later reads
	// [Heartbeat x Wake = 5 min, following set_intervals]: a read within
	// the threshold of any power reported that recently (or of the last
	// report) is no change. This is what the server can see too: the
	// powers it received in that time. A negative Envelope compares with
	// the last report only (the original).
	Envelope time.Duration
	// Stay is how many consecutive wakes a load may sit within the
	// threshold of one level that is not the last reported power before
	// that is reported [2: a level seen at two consecutive wakes has
	// settled and is reported at the second, one wake period after it was
	// first seen]. A larger Stay lets a cycling load's longer phases (a 3D
	// printer bed off for 4-12 s, an iron idle for 3-10 s) pass unreported
	// when they return to a plateau of the envelope, at the cost of
	// (Stay-1) wake periods for a steady load that went back to a level
	// reported within Envelope (docs/AGENT.md measures 2 and 4).
	Stay     int
	AlwaysOn bool // keep the radio on between reports
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
	if c.Envelope == 0 {
		c.Envelope = time.Duration(c.Heartbeat) * c.Wake
	}
	if c.Stay <= 0 {
		c.Stay = 2
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
	// Of the changes: reported at a second consecutive wake off the
	// envelope whose confirming read in between had fallen back onto it
	// (a cycling load with a new plateau, or a change whose confirming
	// read caught a pulse), and reported after Stay wakes on an older
	// plateau of the envelope (a steady load back at an earlier level).
	Persisted, Returned int
}

// Duration is the time the counts cover.
func (c Counts) Duration() time.Duration { return c.End.Sub(c.Start) }

// maxLevels bounds the envelope (about 128 bytes of RTC memory on an
// ESP32); beyond it the oldest reported power is forgotten first.
const maxLevels = 16

// level is a reported power and when it was reported.
type level struct {
	p  power.Watts
	at time.Time
}

// Machine is the duty-cycle state of one node. Not safe for concurrent use.
type Machine struct {
	cfg        Config
	reported   power.Reading // last reported reading
	hasRep     bool
	levels     []level // reported powers inside the envelope, oldest first
	confirming bool
	pending    bool        // the last check was off the envelope, its confirm on it
	stayP      power.Watts // the first of the checks that sat on an older plateau
	stayN      int         // how many consecutive checks sat within the threshold of stayP
	cycles     int         // wakes since the last full wake
	wakeAt     time.Time   // the current slot on the wake grid
	counts     Counts
	envAuto    bool // Envelope is the default, Heartbeat x Wake
}

// New returns a Machine whose first wake is at start.
func New(cfg Config, start time.Time) *Machine {
	m := &Machine{wakeAt: start, counts: Counts{Start: start, End: start}}
	m.setConfig(cfg)
	return m
}

func (m *Machine) setConfig(cfg Config) {
	m.envAuto = cfg.Envelope == 0
	m.cfg = cfg.withDefaults()
}

// Config returns the configuration in use (defaults filled in).
func (m *Machine) Config() Config { return m.cfg }

// SetConfig applies new intervals or thresholds (set_intervals,
// set_thresholds); they take effect from the next wake. An Envelope left
// at its default (zero, or the value Config returned) follows the new
// Wake and Heartbeat.
func (m *Machine) SetConfig(cfg Config) {
	if m.envAuto && cfg.Envelope == m.cfg.Envelope {
		cfg.Envelope = 0
	}
	m.setConfig(cfg)
}

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

func (m *Machine) near(p, ref power.Watts) bool {
	return math.Abs(float64(p-ref)) < float64(m.Threshold(ref))
}

// Envelope returns the powers that explain a read at t: the last reported
// power first, then the others reported within Envelope before t, newest
// first. It is what a server that received the reports can compute too.
func (m *Machine) Envelope(t time.Time) []power.Watts {
	var out []power.Watts
	n := len(m.levels)
	if m.hasRep && m.reported.Is(power.FieldPower) {
		out = append(out, m.reported.Power)
		n-- // the newest level is the last report
	}
	for i := n - 1; i >= 0; i-- {
		if m.inWindow(m.levels[i], t) {
			out = append(out, m.levels[i].p)
		}
	}
	return out
}

func (m *Machine) inWindow(l level, t time.Time) bool {
	return m.cfg.Envelope > 0 && t.Sub(l.at) <= m.cfg.Envelope
}

// explain says whether r lies within the threshold of the last reported
// power (latest), or else of another power of the envelope. A reading without power, or nothing reported with power
// yet, is explained: nothing can be compared, so only heartbeats report it.
func (m *Machine) explain(r power.Reading) (ok, latest bool) {
	if !r.Is(power.FieldPower) || !m.reported.Is(power.FieldPower) {
		return true, true
	}
	if m.near(r.Power, m.reported.Power) {
		return true, true
	}
	for i := len(m.levels) - 1; i >= 0; i-- {
		if l := m.levels[i]; m.inWindow(l, r.Time) && m.near(r.Power, l.p) {
			return true, false
		}
	}
	return false, false
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
	if r.Is(power.FieldPower) {
		keep := m.levels[:0]
		for _, l := range m.levels {
			if m.inWindow(l, r.Time) && l.p != r.Power {
				keep = append(keep, l)
			}
		}
		m.levels = append(keep, level{p: r.Power, at: r.Time})
		if n := len(m.levels) - maxLevels; n > 0 {
			m.levels = append(m.levels[:0], m.levels[n:]...)
		}
	}
	m.cycles = 0
	m.pending, m.stayN = false, 0
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

func (m *Machine) sleep() Decision {
	return Decision{Action: Sleep, Next: m.Next(), Radio: m.cfg.AlwaysOn}
}

// Observe takes the reading the agent made at r.Time (a quick check at the
// wake slot, or the confirming read) and decides:
//
//   - a check within the threshold of the envelope sleeps (a heartbeat
//     when due);
//   - a check off the envelope asks for a confirming read; if that read is
//     off the envelope too, it is reported (the settled new level); if it
//     fell back onto the envelope, the check was a spike or a pulse;
//   - a check off the envelope right after such a spike-or-pulse is
//     reported at once: the load has been off its envelope at two
//     consecutive wakes, one wake period apart;
//   - a check that is not on the last reported power but within the
//     threshold of the checks before it for Stay consecutive wakes is
//     reported: the load settled on a level other than the reported one
//     (typically back on an older plateau of the envelope) and stayed.
func (m *Machine) Observe(r power.Reading) Decision {
	if r.Time.After(m.counts.End) {
		m.counts.End = r.Time
	}
	if m.confirming {
		m.confirming = false
		m.counts.Confirms++
		if ok, _ := m.explain(r); !ok {
			return m.report(r, ReasonChange)
		}
		m.pending = true
		if m.cycles >= m.cfg.Heartbeat {
			return m.report(r, ReasonHeartbeat)
		}
		return m.sleep()
	}
	m.counts.Checks++
	m.cycles++
	m.advance(r.Time)
	if !m.hasRep {
		return m.report(r, ReasonChange) // the first reading sets the baseline
	}
	ok, latest := m.explain(r)
	pending := m.pending
	m.pending = false
	switch {
	case latest:
		m.stayN = 0
	case m.stayN > 0 && m.near(r.Power, m.stayP):
		m.stayN++
	default:
		m.stayP, m.stayN = r.Power, 1
	}
	switch {
	case !ok && pending:
		m.counts.Persisted++
		return m.report(r, ReasonChange)
	case m.stayN >= m.cfg.Stay:
		m.counts.Returned++
		return m.report(r, ReasonChange)
	case !ok:
		m.confirming = true
		return Decision{Action: Confirm, Next: m.Next(), Radio: m.cfg.AlwaysOn}
	}
	if m.cycles >= m.cfg.Heartbeat {
		return m.report(r, ReasonHeartbeat)
	}
	return m.sleep()
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
