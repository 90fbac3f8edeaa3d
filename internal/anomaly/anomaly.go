// Package anomaly detects events in one device's stream of readings: a load
// switched on (P up, V sags), a load switched off, a grid surge (V up by
// more than 5 V with P up or flat: the grid, not a load), sustained over- or
// under-voltage against EN 50160's 230 V +/- 10 %, and mains frequency out
// of range. Each event carries its evidence: the readings before and after.
//
// It is shared by the agent (edge detection) and the server (for sources
// that send no events). It is pure: feed readings in time order to one
// Detector per device stream; it does no I/O and reads no clock.
//
// Steps are judged between settled readings, because the PZEM-004T averages
// internally and needs about 2.5 s to settle after a change: a step that is
// still moving is not compared yet, and a spike that is gone by the next
// reading is no event. See docs/AGENT.md.
//
// The package imports only the standard library and loadwatch/internal/power.
package anomaly

import (
	"fmt"
	"math"
	"time"

	"loadwatch/internal/power"
)

// Kind names an event; the values are the telemetry event kinds.
type Kind string

// The event kinds.
const (
	LoadOn       Kind = "load_on"
	LoadOff      Kind = "load_off"
	GridSurge    Kind = "grid_surge"
	Overvoltage  Kind = "overvoltage"
	Undervoltage Kind = "undervoltage"
	Frequency    Kind = "frequency"
)

// Event is one detected anomaly. Before is the last settled reading before
// the change (for a sustained excursion: the last reading within limits),
// After the reading that confirmed it.
type Event struct {
	Kind   Kind
	Time   time.Time
	Before power.Reading
	After  power.Reading
	Detail string
}

func (e Event) String() string {
	return fmt.Sprintf("%s at %s: %s", e.Kind, e.Time.Format(time.RFC3339), e.Detail)
}

// Config sets the thresholds. Zero fields mean the defaults in brackets.
type Config struct {
	// StepW and StepPct: a power step counts when |dP| >= max(StepW,
	// StepPct % of the larger of the two powers) [5 W, 5 %].
	StepW   power.Watts
	StepPct float64
	// SurgeV: a voltage rise of at least this with P up or flat (not down
	// by a step) is a grid surge [5 V].
	SurgeV power.Volts
	// SettleW and SettleV: two consecutive readings within these of each
	// other are settled [max(2 W, 2 % of P)] and [1 V].
	SettleW power.Watts
	SettleV power.Volts
	// MaxWait: compare anyway after this many unsettled readings [5].
	MaxWait int

	// Nominal voltage and band for sustained over/under-voltage [230 V,
	// 10 %]: EN 50160 allows 230 V +/- 10 %.
	NominalV power.Volts
	BandPct  float64
	// Sustain: how long V or f must stay out of band before the event
	// [10 s]. (EN 50160 judges 10-minute means; this is a quicker alarm.)
	Sustain time.Duration
	// Hysteresis: V must come back this far inside the band before the
	// next excursion counts [2 V]; f likewise by HysteresisHz [0.05 Hz].
	Hysteresis   power.Volts
	HysteresisHz power.Hertz
	// Frequency band [49.5, 50.5] Hz (EN 50160: 50 Hz +/- 1 %).
	MinHz, MaxHz power.Hertz
}

func (c Config) withDefaults() Config {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	f := func(p *power.Watts, d float64) { x := float64(*p); def(&x, d); *p = power.Watts(x) }
	fv := func(p *power.Volts, d float64) { x := float64(*p); def(&x, d); *p = power.Volts(x) }
	fh := func(p *power.Hertz, d float64) { x := float64(*p); def(&x, d); *p = power.Hertz(x) }
	f(&c.StepW, 5)
	def(&c.StepPct, 5)
	fv(&c.SurgeV, 5)
	f(&c.SettleW, 2)
	fv(&c.SettleV, 1)
	if c.MaxWait == 0 {
		c.MaxWait = 5
	}
	fv(&c.NominalV, 230)
	def(&c.BandPct, 10)
	if c.Sustain == 0 {
		c.Sustain = 10 * time.Second
	}
	fv(&c.Hysteresis, 2)
	fh(&c.HysteresisHz, 0.05)
	fh(&c.MinHz, 49.5)
	fh(&c.MaxHz, 50.5)
	return c
}

// excursion tracks one sustained out-of-band condition.
type excursion struct {
	since  time.Time // first reading out of band; zero when in band
	fired  bool      // event sent for this excursion; re-armed by hysteresis
	before power.Reading
	last   power.Reading // last reading within band
	inited bool
}

// Detector finds events in one device's stream. Not safe for concurrent use.
type Detector struct {
	cfg      Config
	base     power.Reading // last settled reading (the "before")
	hasBase  bool
	prev     power.Reading // previous reading with V and P
	hasPrev  bool
	pending  bool // a step from base is in progress
	waited   int
	over     excursion
	under    excursion
	freq     excursion
	lastTime time.Time
}

// New returns a Detector.
func New(cfg Config) *Detector { return &Detector{cfg: cfg.withDefaults()} }

// Config returns the configuration in use (with defaults filled in).
func (d *Detector) Config() Config { return d.cfg }

func (d *Detector) step(a, b power.Watts) power.Watts {
	m := math.Max(math.Abs(float64(a)), math.Abs(float64(b)))
	return power.Watts(math.Max(float64(d.cfg.StepW), d.cfg.StepPct/100*m))
}

func (d *Detector) settled(a, b power.Reading) bool {
	tolW := math.Max(float64(d.cfg.SettleW), 0.02*math.Abs(float64(b.Power)))
	return math.Abs(float64(b.Power-a.Power)) <= tolW && math.Abs(float64(b.Voltage-a.Voltage)) <= float64(d.cfg.SettleV)
}

// Observe takes the next reading (in time order) and returns the events it
// completes, usually none.
func (d *Detector) Observe(r power.Reading) []Event {
	var evs []Event
	if !d.lastTime.IsZero() && r.Time.Before(d.lastTime) {
		return nil // out of order: ignored
	}
	d.lastTime = r.Time
	if r.Is(power.FieldVoltage | power.FieldPower) {
		evs = d.observeStep(r, evs)
	}
	if r.Is(power.FieldVoltage) {
		hi := d.cfg.NominalV * power.Volts(1+d.cfg.BandPct/100)
		lo := d.cfg.NominalV * power.Volts(1-d.cfg.BandPct/100)
		evs = d.sustained(&d.over, r, r.Voltage > hi, r.Voltage <= hi-d.cfg.Hysteresis, Overvoltage, evs)
		evs = d.sustained(&d.under, r, r.Voltage < lo, r.Voltage >= lo+d.cfg.Hysteresis, Undervoltage, evs)
	}
	if r.Is(power.FieldFrequency) {
		out := r.Frequency < d.cfg.MinHz || r.Frequency > d.cfg.MaxHz
		back := r.Frequency >= d.cfg.MinHz+d.cfg.HysteresisHz && r.Frequency <= d.cfg.MaxHz-d.cfg.HysteresisHz
		evs = d.sustained(&d.freq, r, out, back, Frequency, evs)
	}
	return evs
}

// detail describes a sustained excursion (built only when an event fires).
func (d *Detector) detail(k Kind, r power.Reading) string {
	switch k {
	case Overvoltage:
		return fmt.Sprintf("V %.1f above %.1f V", r.Voltage, d.cfg.NominalV*power.Volts(1+d.cfg.BandPct/100))
	case Undervoltage:
		return fmt.Sprintf("V %.1f below %.1f V", r.Voltage, d.cfg.NominalV*power.Volts(1-d.cfg.BandPct/100))
	}
	return fmt.Sprintf("f %.2f Hz outside %.2f..%.2f Hz", r.Frequency, d.cfg.MinHz, d.cfg.MaxHz)
}

func (d *Detector) sustained(x *excursion, r power.Reading, out, back bool, k Kind, evs []Event) []Event {
	switch {
	case out:
		if x.since.IsZero() {
			x.since = r.Time
			x.before = x.last
			if !x.inited {
				x.before = r // no reading within band seen yet
			}
		}
		if !x.fired && r.Time.Sub(x.since) >= d.cfg.Sustain {
			x.fired = true
			evs = append(evs, Event{Kind: k, Time: r.Time, Before: x.before, After: r,
				Detail: d.detail(k, r) + " for " + r.Time.Sub(x.since).String()})
		}
	default:
		x.since = time.Time{}
		if back {
			x.fired = false
		}
		x.last, x.inited = r, true
	}
	return evs
}

func (d *Detector) observeStep(r power.Reading, evs []Event) []Event {
	defer func() { d.prev, d.hasPrev = r, true }()
	if !d.hasBase {
		if d.hasPrev && d.settled(d.prev, r) {
			d.base, d.hasBase = r, true
		}
		return evs
	}
	dP := r.Power - d.base.Power
	dV := r.Voltage - d.base.Voltage
	moved := math.Abs(float64(dP)) >= float64(d.step(d.base.Power, r.Power)) || dV >= d.cfg.SurgeV
	if !d.pending {
		if !moved {
			// Drift within thresholds: follow it when settled so that the
			// baseline stays current.
			if d.settled(d.prev, r) {
				d.base = r
			}
			return evs
		}
		d.pending, d.waited = true, 0
	}
	d.waited++
	if !d.settled(d.prev, r) && d.waited < d.cfg.MaxWait {
		return evs
	}
	// Settled (or waited long enough): judge the step against the baseline.
	d.pending = false
	before := d.base
	d.base = r
	if !moved {
		return evs // a transient that went away
	}
	stepW := d.step(before.Power, r.Power)
	ev := Event{Time: r.Time, Before: before, After: r}
	switch {
	case dV >= d.cfg.SurgeV && dP > -stepW:
		ev.Kind = GridSurge
		ev.Detail = fmt.Sprintf("V %+.1f V with P %+.1f W", dV, dP)
	case dP >= stepW:
		ev.Kind = LoadOn
		ev.Detail = fmt.Sprintf("P %+.1f W, V %+.1f V", dP, dV)
	case dP <= -stepW:
		ev.Kind = LoadOff
		ev.Detail = fmt.Sprintf("P %+.1f W, V %+.1f V", dP, dV)
	default:
		return evs
	}
	return append(evs, ev)
}
