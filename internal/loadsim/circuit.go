// Package loadsim simulates the load and the grid behind a PZEM-004T meter:
// a laptop charger, a soldering station, a laser printer and a 3D printer
// (each a stateful model with its power, power factor and current draw), a
// standby base load, and a mains source with impedance, slow drift, noise,
// surges, sags and frequency excursions. Everything is a deterministic
// function of the seed, the schedule and the interactive changes, so the
// same inputs always give the same trace.
//
// The package gives the TRUE electrical state at the meter; the meter's own
// averaging, quantisation and energy counter belong to the virtual meter
// (internal/pzem/pzemtest), except for the dataset generator here, which
// applies the meter's resolution itself. See docs/LOADSIM.md.
package loadsim

import (
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"loadwatch/internal/power"
)

// Grid describes the mains source. Zero fields take the documented
// defaults.
type Grid struct {
	Nominal   power.Volts // open-circuit voltage; default 230 V
	Frequency power.Hertz // default 50 Hz
	// Impedance is the source (loop) impedance in ohms: the voltage at the
	// meter is the source voltage minus I x Impedance. Default 0.47 ohm,
	// the magnitude of the IEC 60725 reference impedance 0.4 + j0.25 ohm.
	Impedance float64
	// Drift is the standard deviation of the slow voltage wander (periods
	// of minutes); default 1 V, as measured on the OMPM PZEM trace.
	Drift power.Volts
	// FreqDrift is the standard deviation of the slow frequency wander;
	// default 0.02 Hz.
	FreqDrift power.Hertz
	// Noise is the standard deviation of fast voltage noise (new value
	// every 100 ms); default 0.1 V.
	Noise power.Volts
	// Still removes drift and noise (for tests): the voltage then changes
	// only with the load and with grid events.
	Still bool
}

// Config configures a Circuit. Zero fields take the documented defaults.
type Config struct {
	Seed int64
	// Start is the time schedule offsets count from; default
	// 2026-01-01T00:00:00Z.
	Start    time.Time
	Grid     Grid
	Schedule Schedule
	// Standby is the always-on draw of chargers and idle electronics
	// (labelled nothing); default 1.5 W at PF 0.25. Negative means none.
	Standby power.Watts
}

// DefaultStart is the Start of a Config that leaves it zero.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type switchEv struct {
	t  time.Time
	on bool
}

type relayEv struct {
	t      time.Time
	closed bool
}

type gridEv struct {
	t time.Time
	e GridEvent
}

type sessionKey struct {
	name string
	on   int64
}

// Circuit is the simulated circuit behind one meter. It is safe for
// concurrent use.
type Circuit struct {
	cfg   Config
	sched map[string]applianceSchedule
	gridS []Event // grid events of the schedule

	mu       sync.Mutex
	manual   map[string][]switchEv // interactive switches, in time order
	relay    []relayEv
	injected []gridEv
	sessions map[sessionKey]*session
}

// NewCircuit builds a circuit. The schedule is assumed valid (see
// Schedule.Validate); events that are not are ignored.
func NewCircuit(cfg Config) *Circuit {
	g := &cfg.Grid
	if g.Nominal == 0 {
		g.Nominal = 230
	}
	if g.Frequency == 0 {
		g.Frequency = 50
	}
	if g.Impedance == 0 {
		g.Impedance = 0.47
	}
	if g.Drift == 0 {
		g.Drift = 1
	}
	if g.FreqDrift == 0 {
		g.FreqDrift = 0.02
	}
	if g.Noise == 0 {
		g.Noise = 0.1
	}
	if g.Still {
		g.Drift, g.FreqDrift, g.Noise = 0, 0, 0
	}
	if cfg.Start.IsZero() {
		cfg.Start = DefaultStart
	}
	if cfg.Standby == 0 {
		cfg.Standby = 1.5
	}
	if cfg.Standby < 0 {
		cfg.Standby = 0
	}
	c := &Circuit{
		cfg:      cfg,
		sched:    map[string]applianceSchedule{},
		manual:   map[string][]switchEv{},
		sessions: map[sessionKey]*session{},
	}
	if cfg.Schedule.Validate() == nil {
		raw := map[string][]Event{}
		for _, e := range cfg.Schedule.Events {
			if e.Kind == KindSwitch {
				raw[e.Appliance] = append(raw[e.Appliance], e)
			} else {
				c.gridS = append(c.gridS, e)
			}
		}
		for name, evs := range raw {
			end := evs[len(evs)-1].On
			c.sched[name] = applianceSchedule{raw: evs, first: changes(evs, false), steady: changes(evs, end)}
		}
	}
	return c
}

// applianceSchedule holds one appliance's scheduled switches: all of them
// (raw: each one ends an interactive override), and those that change its
// state, in the first period (which starts with the appliance off) and in
// every later period (which starts in the state the schedule ends in).
// The changes tell when an on-run began, so that an "on" for an appliance
// already on does not restart it (a soldering iron does not heat up from
// cold again).
type applianceSchedule struct {
	raw, first, steady []Event
}

func changes(evs []Event, on bool) []Event {
	var out []Event
	for _, e := range evs {
		if e.On != on {
			out = append(out, e)
			on = e.On
		}
	}
	return out
}

// maxRunSteps bounds the walk back over interactive switches when looking
// for the start of an appliance's on-run.
const maxRunSteps = 64

// runStart returns when the appliance's current on-run began (an "on"
// while already on does not restart it), and whether it is on at t.
func (c *Circuit) runStart(name string, t time.Time) (time.Time, bool) {
	at, on, ok, manual := c.lastSwitch(name, t)
	if !ok || !on {
		return at, false
	}
	for i := 0; i < maxRunSteps; i++ {
		if !manual {
			// at is a scheduled "on"; the scheduled run began at the
			// last scheduled change to on.
			as := c.sched[name]
			e, eAt, eok := c.lookup(as.first, as.steady, at)
			if !eok || !e.On {
				break // cannot happen: the schedule has it on at `at`
			}
			mt, mon, mok := c.lastManual(name, at.Add(-time.Nanosecond))
			if mok && !mt.Before(eAt) {
				// an interactive switch inside the scheduled run
				if !mon {
					return c.nextScheduled(name, mt), true
				}
				at, manual = mt, true
				continue
			}
			at = eAt
		}
		pat, pon, pok, pman := c.lastSwitch(name, at.Add(-time.Nanosecond))
		if !pok || !pon {
			break
		}
		at, manual = pat, pman
	}
	return at, true
}

// lookup finds the last event at or before t in a schedule whose first
// period holds first and whose later periods hold later.
func (c *Circuit) lookup(first, later []Event, t time.Time) (Event, time.Time, bool) {
	if t.Before(c.cfg.Start) {
		return Event{}, time.Time{}, false
	}
	off := t.Sub(c.cfg.Start)
	r := c.cfg.Schedule.Repeat
	n := time.Duration(0) // period index
	if r > 0 {
		n = off / r
		off -= n * r
	}
	list := first
	if n > 0 {
		list = later
	}
	if i := sort.Search(len(list), func(i int) bool { return list[i].At > off }) - 1; i >= 0 {
		return list[i], c.cfg.Start.Add(n*r + list[i].At), true
	}
	switch {
	case n > 1 && len(later) > 0: // carried over from the previous period
		e := later[len(later)-1]
		return e, c.cfg.Start.Add((n-1)*r + e.At), true
	case n > 0 && len(first) > 0: // unchanged since the first period
		e := first[len(first)-1]
		return e, c.cfg.Start.Add(e.At), true
	}
	return Event{}, time.Time{}, false
}

// nextScheduled returns the time of the first scheduled switch of name
// after t (there is one whenever runStart asks).
func (c *Circuit) nextScheduled(name string, t time.Time) time.Time {
	raw := c.sched[name].raw
	off := t.Sub(c.cfg.Start)
	r := c.cfg.Schedule.Repeat
	n := time.Duration(0)
	if r > 0 && off >= 0 {
		n = off / r
		off -= n * r
	}
	if i := sort.Search(len(raw), func(i int) bool { return raw[i].At > off }); i < len(raw) {
		return c.cfg.Start.Add(n*r + raw[i].At)
	}
	return c.cfg.Start.Add((n+1)*r + raw[0].At)
}

func (c *Circuit) lastManual(name string, t time.Time) (time.Time, bool, bool) {
	m := c.manual[name]
	if i := sort.Search(len(m), func(i int) bool { return m[i].t.After(t) }) - 1; i >= 0 {
		return m[i].t, m[i].on, true
	}
	return time.Time{}, false, false
}

// lastSwitch finds the switch of an appliance in effect at t: from the
// schedule or from Switch, whichever is later (Switch wins a tie), and
// whether it came from Switch.
func (c *Circuit) lastSwitch(name string, t time.Time) (at time.Time, on, ok, manual bool) {
	if as, has := c.sched[name]; has {
		var e Event
		e, at, ok = c.lookup(as.raw, as.raw, t)
		on = e.On
	}
	if mt, mon, mok := c.lastManual(name, t); mok && (!ok || !mt.Before(at)) {
		return mt, mon, true, true
	}
	return at, on, ok, false
}

// Start returns the time the schedule counts from.
func (c *Circuit) Start() time.Time { return c.cfg.Start }

// Switch turns an appliance on or off at t, overriding the schedule from t
// until the schedule's next switch of that appliance. An unknown name is
// ignored (check it first with IsAppliance).
func (c *Circuit) Switch(name string, on bool, t time.Time) {
	if !IsAppliance(name) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.manual[name] = insertSorted(c.manual[name], switchEv{t, on}, func(e switchEv) time.Time { return e.t })
}

// SetRelay opens or closes the relay at t. An open relay removes all load
// (the voltage is still there, the current is 0). The relay starts closed.
func (c *Circuit) SetRelay(closed bool, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.relay = insertSorted(c.relay, relayEv{t, closed}, func(e relayEv) time.Time { return e.t })
}

// Relay reports the relay state after the latest relay change.
func (c *Circuit) Relay() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.relay) == 0 {
		return true
	}
	return c.relay[len(c.relay)-1].closed
}

// Inject starts a grid event (surge, sag, frequency excursion) at t. An
// event longer than 24 h is cut to 24 h.
func (c *Circuit) Inject(e GridEvent, t time.Time) {
	e.For = min(e.For, maxEventFor)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.injected = insertSorted(c.injected, gridEv{t, e}, func(e gridEv) time.Time { return e.t })
}

func insertSorted[E any](s []E, e E, key func(E) time.Time) []E {
	i := len(s)
	for i > 0 && key(s[i-1]).After(key(e)) {
		i--
	}
	return slices.Insert(s, i, e)
}

func (c *Circuit) relayClosed(t time.Time) bool {
	i := sort.Search(len(c.relay), func(i int) bool { return c.relay[i].t.After(t) })
	if i == 0 {
		return true
	}
	return c.relay[i-1].closed
}

// gridOffset sums the grid events active at t.
func (c *Circuit) gridOffset(t time.Time) (dv, df float64) {
	add := func(e GridEvent, from time.Time) {
		if t.Before(from) || !t.Before(from.Add(e.For)) {
			return
		}
		switch e.Kind {
		case KindSurge:
			dv += float64(e.Volts)
		case KindSag:
			dv -= float64(e.Volts)
		case KindFrequency:
			df += float64(e.Hertz)
		}
	}
	if len(c.gridS) > 0 && !t.Before(c.cfg.Start) {
		off := t.Sub(c.cfg.Start)
		base := time.Duration(0)
		r := c.cfg.Schedule.Repeat
		if r > 0 {
			base = off / r * r
		}
		for _, e := range c.gridS {
			ge := GridEvent{Kind: e.Kind, Volts: e.Volts, Hertz: e.Hertz, For: e.For}
			add(ge, c.cfg.Start.Add(base+e.At))
			if r > 0 && base > 0 {
				add(ge, c.cfg.Start.Add(base-r+e.At))
			}
		}
	}
	// Injected events last at most maxEventFor: look back that far only.
	i := sort.Search(len(c.injected), func(i int) bool { return c.injected[i].t.After(t) })
	for i--; i >= 0 && t.Sub(c.injected[i].t) < maxEventFor; i-- {
		add(c.injected[i].e, c.injected[i].t)
	}
	return dv, df
}

// Noise streams.
const (
	streamVDrift = iota + 1
	streamVDrift2
	streamVNoise
	streamFDrift
	streamFNoise
	streamOffset
)

// openCircuit returns the source voltage and frequency at t, before the
// load's sag.
func (c *Circuit) openCircuit(t time.Time) (v, f float64) {
	g := c.cfg.Grid
	s := c.cfg.Seed
	sec := float64(t.UnixNano()) / 1e9
	tick := t.UnixNano() / int64(100*time.Millisecond)
	v = float64(g.Nominal)
	v += float64(g.Drift) * (0.8*smooth(s, streamVDrift, sec, 600) + 0.6*smooth(s, streamVDrift2, sec, 97))
	v += float64(g.Noise) * gauss(s, streamVNoise, tick)
	f = float64(g.Frequency)
	f += float64(g.FreqDrift) * smooth(s, streamFDrift, sec, 300)
	f += float64(g.FreqDrift) * 0.2 * gauss(s, streamFNoise, tick)
	dv, df := c.gridOffset(t)
	return v + dv, f + df
}

// drawn is one appliance's load at one moment.
type drawn struct {
	name string
	l    load
}

// loads appends what every appliance draws at t (none when the relay is
// open).
func (c *Circuit) loads(t time.Time, dst []drawn) []drawn {
	if !c.relayClosed(t) {
		return dst
	}
	tick := t.UnixNano() / int64(100*time.Millisecond)
	for _, name := range Appliances() {
		on, isOn := c.runStart(name, t)
		if !isOn {
			continue
		}
		k := sessionKey{name, on.UnixNano()}
		s := c.sessions[k]
		if s == nil {
			s = newSession(modelFor(name), c.cfg.Seed, name, on)
			c.sessions[k] = s
		}
		d := t.Sub(on)
		l := s.m.draw(s.at(d), d, gauss(c.cfg.Seed, fnv(name), tick))
		dst = append(dst, drawn{name, l})
	}
	return dst
}

// At returns the true electrical state at the meter (upstream of the
// relay) at t: voltage, current, active power, power factor and frequency.
// PF is 0 when no current flows, as the meter shows it.
func (c *Circuit) At(t time.Time) power.Reading {
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf [4]drawn
	r, _ := c.state(t, buf[:0])
	return r
}

// state computes the reading at t and the loads behind it; the caller
// holds c.mu.
func (c *Circuit) state(t time.Time, buf []drawn) (power.Reading, []drawn) {
	voc, f := c.openCircuit(t)
	ls := c.loads(t, buf)
	vn := float64(c.cfg.Grid.Nominal)
	z := c.cfg.Grid.Impedance
	closed := c.relayClosed(t)
	// Two passes: loads at the open-circuit voltage give the current and
	// the sag; resistive loads are then evaluated at the sagged voltage.
	v := voc
	var p, s float64
	for pass := 0; pass < 2; pass++ {
		p, s = 0, 0
		var q float64
		if closed && c.cfg.Standby > 0 {
			sp := float64(c.cfg.Standby)
			p += sp
			q += sp * math.Sqrt(1/(standbyPF*standbyPF)-1)
		}
		for _, x := range ls {
			lp := x.l.p
			if x.l.resistive {
				r := v / vn
				lp *= r * r
			}
			p += lp
			q += lp * math.Sqrt(1/(x.l.pf*x.l.pf)-1)
		}
		s = math.Hypot(p, q)
		v = voc - s/voc*z
	}
	i := 0.0
	pf := 0.0
	if s > 0 {
		i = s / v
		pf = p / s
	}
	return power.Reading{
		Time:      t,
		Voltage:   power.Volts(v),
		Current:   power.Amperes(i),
		Power:     power.Watts(p),
		Frequency: power.Hertz(f),
		PF:        power.PowerFactor(pf),
		Has:       power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency | power.FieldPF,
	}, ls
}

// Label names the appliances drawing power at t, joined by '+' in
// alphabetical order, or "nothing". Standby draw (the base load, a printer
// on its ready plateau, a soldering station between thermostat pulses)
// counts as nothing.
func (c *Circuit) Label(t time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf [4]drawn
	return label(c.loads(t, buf[:0]))
}

func label(ls []drawn) string {
	n := 0
	var names [4]string
	for _, x := range ls {
		if x.l.active {
			names[n] = x.name
			n++
		}
	}
	if n == 0 {
		return Nothing
	}
	return strings.Join(names[:n], "+")
}
