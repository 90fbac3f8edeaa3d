package loadsim

import (
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// The appliance names, as they appear in labels.
const (
	Laptop    = "laptop"
	Solder    = "solder"
	Printer   = "printer"
	Printer3D = "3d_printer"
)

// Nothing is the label of a moment when no appliance draws power (standby
// draw counts as nothing, as in the real datasets).
const Nothing = "nothing"

// Appliances returns the names of the appliances a Circuit models, in
// alphabetical (label) order.
func Appliances() []string { return []string{Printer3D, Laptop, Printer, Solder} }

// load is what one appliance draws at one moment.
type load struct {
	p         float64 // active power in W at nominal voltage
	pf        float64 // power factor of this appliance alone
	resistive bool    // P scales with (V/Vnominal)^2; otherwise constant power (SMPS)
	active    bool    // counts in the label (above its standby level)
}

// segment is one stretch of an appliance's behaviour: a thermostat phase,
// a print job, a laptop activity level.
type segment struct {
	start, end time.Duration // since the appliance was switched on
	state      uint8
	level      float64 // model specific, usually a power in W
	phase      float64 // model specific, 0..1
}

// model is one kind of appliance. next draws the i-th segment of a session
// (i = 0 is the one starting at switch-on); draw gives the load inside it.
// d is the time since switch-on and noise a standard normal value that
// changes every 100 ms.
type model interface {
	next(r *rand.Rand, i int, prev segment) segment
	draw(s segment, d time.Duration, noise float64) load
}

func uni(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

func dur(r *rand.Rand, lo, hi float64) time.Duration {
	return time.Duration(uni(r, lo, hi) * float64(time.Second))
}

// maxSegments bounds a session's memory; a session older than that many
// segments repeats its own history.
const maxSegments = 1 << 18

// session is one switch-on of one appliance. Its segments are drawn
// lazily from a generator seeded by (circuit seed, appliance, switch-on
// time), so the same schedule always gives the same behaviour.
type session struct {
	m    model
	rng  *rand.Rand
	segs []segment
}

func newSession(m model, seed int64, name string, on time.Time) *session {
	s1 := hash3(seed, fnv(name), on.UnixNano())
	return &session{m: m, rng: rand.New(rand.NewPCG(s1, mix(s1^0x2545f4914f6cdd1d)))}
}

func (s *session) at(d time.Duration) segment {
	if d < 0 {
		d = 0
	}
	for len(s.segs) == 0 || s.segs[len(s.segs)-1].end <= d {
		if len(s.segs) >= maxSegments {
			d %= s.segs[len(s.segs)-1].end
			break
		}
		var prev segment
		if n := len(s.segs); n > 0 {
			prev = s.segs[n-1]
		}
		sg := s.m.next(s.rng, len(s.segs), prev)
		if sg.end <= prev.end { // a model must make progress
			sg.end = prev.end + time.Second
		}
		sg.start = prev.end
		s.segs = append(s.segs, sg)
	}
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].end > d })
	return s.segs[i]
}

// laptopModel is a laptop on its charger (SMPS, no PFC). Activity levels
// follow the tracebase laptop statistics: 9-64 W in use, median 28 W.
type laptopModel struct{}

func (laptopModel) next(r *rand.Rand, _ int, prev segment) segment {
	var lvl float64
	var d time.Duration
	switch x := r.Float64(); {
	case x < 0.25: // light use, idle screen
		lvl, d = uni(r, 15, 23), dur(r, 10, 90)
	case x < 0.90: // normal use and charging
		lvl, d = 29+4*r.NormFloat64(), dur(r, 10, 120)
	default: // CPU bursts, fast charging
		lvl, d = uni(r, 35, 64), dur(r, 3, 20)
	}
	return segment{end: prev.end + d, level: clamp(lvl, 9, 64)}
}

func (laptopModel) draw(s segment, _ time.Duration, noise float64) load {
	p := clamp(s.level+0.4*noise, 9, 64)
	return load{p: p, pf: 0.40 + 0.25*(p-9)/55, active: true}
}

// solderModel is a 60 W temperature-controlled soldering station: a
// transformer-fed resistive heater switched by a bang-bang thermostat.
type solderModel struct{}

const (
	solderHeater = 60.0 // W at 230 V
	solderIdle   = 2.5  // W, transformer magnetising and controller
)

const (
	stOff uint8 = iota
	stOn
)

func (solderModel) next(r *rand.Rand, i int, prev segment) segment {
	switch {
	case i == 0: // heat-up from cold
		return segment{end: dur(r, 20, 35), state: stOn}
	case prev.state == stOn:
		return segment{end: prev.end + dur(r, 3, 10), state: stOff}
	default:
		return segment{end: prev.end + dur(r, 1, 4), state: stOn}
	}
}

func (solderModel) draw(s segment, _ time.Duration, noise float64) load {
	if s.state == stOn {
		return load{p: solderHeater + solderIdle + 0.2*noise, pf: 0.93, resistive: true, active: true}
	}
	return load{p: solderIdle + 0.05*noise, pf: 0.30}
}

// printerModel is a busy laser printer left on: a ready plateau of 11 or
// 15 W (labelled nothing, like tracebase) for 15-60 s between print jobs of
// 3-15 s in which the fuser lamp pulses at 700-890 W over 40 W of motors
// and electronics.
type printerModel struct{}

const (
	stReady uint8 = iota
	stJob
)

const (
	printerMotors   = 40.0 // W while printing, between fuser pulses
	fuserPeriod     = 2 * time.Second
	fuserDutyCycle  = 0.8
	printerReadyLow = 11.0
	printerReadyHi  = 15.0
)

func (printerModel) next(r *rand.Rand, i int, prev segment) segment {
	switch {
	case i == 0: // warm-up: the fuser heats up right after switch-on
		return segment{end: dur(r, 8, 15), state: stJob, level: uni(r, 700, 890), phase: r.Float64()}
	case prev.state == stJob:
		lvl := printerReadyHi
		if r.Float64() < 0.3 {
			lvl = printerReadyLow
		}
		return segment{end: prev.end + dur(r, 15, 60), state: stReady, level: lvl}
	default:
		return segment{end: prev.end + dur(r, 3, 15), state: stJob, level: uni(r, 700, 890), phase: r.Float64()}
	}
}

func (printerModel) draw(s segment, d time.Duration, noise float64) load {
	if s.state == stReady {
		return load{p: s.level + 0.2*noise, pf: 0.45}
	}
	ph := math.Mod(float64(d)/float64(fuserPeriod)+s.phase, 1)
	if ph < fuserDutyCycle {
		p := s.level + printerMotors + 2*noise
		return load{p: p, pf: 0.97, resistive: true, active: true}
	}
	return load{p: printerMotors + 0.5*noise, pf: 0.60, active: true}
}

// printer3DModel is an FDM 3D printer on a 24 V supply without PFC: a
// 220 W heated bed (250 W at the wall) under bang-bang control, a 40 W
// hot end under PID control, and motors, fans and board.
//
// The hot end heats at full power after switch-on, then its PID loop holds
// it at temperature with a nearly constant duty. Its PWM (8-30 Hz, or about
// 1 Hz slow PWM) is averaged away by the meter's 1 s window, so what the
// meter sees is that duty times 45 W: a per-print level that wanders slowly
// (flow and speed changes, layer changes) and steps up once when the part
// cooling fan ramps up after the first layers. The bed switches between
// full power and off every few seconds, which gives the big steps.
//
// The per-print values live in the segments: level is the held hot-end
// duty before the fan, phase a per-print seed for everything else, so the
// draw stays a pure function of the segment and the time since switch-on.
type printer3DModel struct{}

const (
	stHeatUp uint8 = iota
	stBedOn
	stBedOff
)

const (
	bedWall     = 250.0 // W at the wall, 220 W bed / 0.88 PSU efficiency
	hotEndWall  = 45.0  // W at the wall, 40 W cartridge / 0.88
	electronics = 12.0  // W, board, steppers and fans while printing
	heatUpBoard = 8.0   // W, board and hot-end fan while heating (no moves)
	partFanWall = 2.7   // W at the wall, a 24 V 0.1 A blower at full speed
	// hotEndWander is the amplitude of the held duty's slow wander (as a
	// fraction of full power, times value noise of sd about 0.8), with
	// knots every hotEndKnot.
	hotEndWander = 0.02
	hotEndKnot   = 45.0 // s
)

// Streams of the per-print hash (printer3DModel).
const (
	p3HotEndHeat uint64 = iota + 1
	p3FanStart
	p3FanRamp
	p3FanDuty
	p3Wander
)

// printSeed turns a print's phase into a seed for the per-print hash.
func printSeed(s segment) int64 { return int64(math.Float64bits(s.phase)) }

// hotEndHeat is how long the hot end heats at full power after switch-on.
func hotEndHeat(s segment) time.Duration {
	return time.Duration((50 + 40*uniform(printSeed(s), p3HotEndHeat, 0)) * float64(time.Second))
}

func (printer3DModel) next(r *rand.Rand, i int, prev segment) segment {
	switch {
	case i == 0:
		// The bed takes 60-150 s; the print starts once the hot end is
		// at temperature too. Held duty without the part fan: 30-45 %.
		s := segment{state: stHeatUp, level: uni(r, 0.30, 0.45), phase: r.Float64()}
		s.end = max(dur(r, 60, 150), hotEndHeat(s))
		return s
	case prev.state == stBedOn:
		return segment{end: prev.end + dur(r, 4, 12), state: stBedOff, level: prev.level, phase: prev.phase}
	default:
		return segment{end: prev.end + dur(r, 2, 6), state: stBedOn, level: prev.level, phase: prev.phase}
	}
}

// partFan returns how far (0..1) the part cooling fan has ramped up at d:
// off for the first layers, it ramps up linearly over a few layers.
func partFan(s segment, d time.Duration) float64 {
	seed := printSeed(s)
	from := 180 + 300*uniform(seed, p3FanStart, 0) // s after switch-on
	ramp := 60 + 120*uniform(seed, p3FanRamp, 0)
	return clamp((d.Seconds()-from)/ramp, 0, 1)
}

// hotEnd returns the hot end's power at the wall at d, as the meter's 1 s
// window averages its PWM.
func hotEnd(s segment, d time.Duration) float64 {
	if s.state == stHeatUp && d < hotEndHeat(s) {
		return hotEndWall
	}
	seed := printSeed(s)
	fanExtra := 0.05 + 0.07*uniform(seed, p3FanDuty, 0)
	duty := s.level + fanExtra*partFan(s, d) + hotEndWander*smooth(seed, p3Wander, d.Seconds(), hotEndKnot)
	return clamp(duty, 0.15, 0.8) * hotEndWall
}

func (printer3DModel) draw(s segment, d time.Duration, noise float64) load {
	var p float64
	switch s.state {
	case stHeatUp:
		p = bedWall + heatUpBoard
	case stBedOn:
		p = bedWall + electronics + partFanWall*partFan(s, d)
	default:
		p = electronics + partFanWall*partFan(s, d)
	}
	p += hotEnd(s, d)
	p += 1.5 * noise // stepper load and what the meter's window leaves of the PWM
	return load{p: p, pf: 0.50 + 0.12*math.Min(1, p/300), active: true}
}

// standby is the always-plugged-in draw of chargers and idle electronics.
const standbyPF = 0.25

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

func modelFor(name string) model {
	switch name {
	case Laptop:
		return laptopModel{}
	case Solder:
		return solderModel{}
	case Printer:
		return printerModel{}
	case Printer3D:
		return printer3DModel{}
	}
	return nil
}
