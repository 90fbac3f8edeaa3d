// Package pzemtest is a virtual PZEM-004T v3: a stateful register model
// with the meter's physics (about 1 s refresh with averaging and a
// processing delay, resolution, starting thresholds, an energy counter
// that integrates power and wraps, an alarm against a threshold, silence
// without AC), served on a Modbus RTU bus in-process or on a
// pseudo-terminal, with seeded fault injection.
//
// The meter measures a Source: the true electrical state at an instant.
package pzemtest

import (
	"fmt"
	"math"
	"sync"
	"time"

	"loadwatch/internal/modbus"
	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
)

// Source gives the true instantaneous electrical state at the meter's
// input. A Reading without FieldVoltage means there is no AC: the meter
// is unpowered and stays silent. Power is taken from FieldPower, else
// V x I x PF when FieldPF is set, else V x I. Frequency defaults to 50 Hz
// when FieldFrequency is missing.
type Source interface {
	At(t time.Time) power.Reading
}

// SourceFunc adapts a function to a Source.
type SourceFunc func(t time.Time) power.Reading

// At calls f.
func (f SourceFunc) At(t time.Time) power.Reading { return f(t) }

// Clock tells the meter what time it is. Under testing/synctest the
// default (the system clock) is the bubble's fake clock.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Meter physics and register defaults.
const (
	DefaultRefresh   = time.Second             // one averaging window
	DefaultDelay     = 1200 * time.Millisecond // window end to registers
	DefaultSample    = 50 * time.Millisecond   // internal sampling step
	DefaultThreshold = power.Watts(23000)      // alarm threshold (our choice)
	// EnergyWrap is where the energy counter returns to 0: it counts
	// 0..9 999 999 Wh (the datasheet's "0..9999.99 kWh").
	EnergyWrap = 10_000_000
	// Starting thresholds: below these the meter reads 0.
	MinCurrent = power.Amperes(0.01)
	MinPower   = power.Watts(0.4)
)

// MeterOpts configures a Meter. Zero fields take the defaults above.
type MeterOpts struct {
	Addr      uint8 // Modbus address, default 1
	Source    Source
	Refresh   time.Duration
	Delay     time.Duration
	Sample    time.Duration
	Threshold power.Watts     // initial alarm threshold
	Energy    power.WattHours // initial energy counter
}

// window is one averaged, thresholded measurement.
type window struct {
	pubAt time.Time // when it reaches the registers
	ac    bool      // the meter had AC during the window
	v, i  float64
	p, f  float64
	pf    float64
	dE    float64 // Wh integrated over the window
}

// Meter is one virtual PZEM-004T. It is safe for concurrent use.
type Meter struct {
	mu        sync.Mutex
	src       Source
	refresh   time.Duration
	delay     time.Duration
	sample    time.Duration
	addr      uint8
	threshold uint16
	energy    float64 // Wh, internal accumulator (register = floor)
	nextEnd   time.Time
	pending   []window
	visible   window
	calibrate int
}

// NewMeter returns a meter switched on at start, its registers already
// settled on the source's state just before start.
func NewMeter(o MeterOpts, start time.Time) (*Meter, error) {
	if o.Source == nil {
		return nil, fmt.Errorf("pzemtest: meter needs a Source")
	}
	if o.Addr == 0 {
		o.Addr = 1
	}
	if err := pzem.CheckAddress(int(o.Addr)); err != nil {
		return nil, err
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.Delay <= 0 {
		o.Delay = DefaultDelay
	}
	if o.Sample <= 0 || o.Sample > o.Refresh {
		o.Sample = DefaultSample
		if o.Sample > o.Refresh {
			o.Sample = o.Refresh
		}
	}
	if o.Threshold == 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Threshold < 0 || o.Threshold > 65535 {
		return nil, fmt.Errorf("pzemtest: threshold %v out of range", o.Threshold)
	}
	m := &Meter{
		src: o.Source, refresh: o.Refresh, delay: o.Delay, sample: o.Sample,
		addr: o.Addr, threshold: uint16(o.Threshold), energy: math.Mod(float64(o.Energy), EnergyWrap),
		nextEnd: start.Add(o.Refresh),
	}
	m.visible = m.measure(start.Add(-o.Refresh), start)
	m.visible.dE = 0
	return m, nil
}

// Addr returns the meter's current slave address.
func (m *Meter) Addr() uint8 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

// SetEnergy sets the energy counter (for tests near the wrap).
func (m *Meter) SetEnergy(e power.WattHours) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.energy = math.Mod(float64(e), EnergyWrap)
}

// Calibrations counts accepted calibration commands.
func (m *Meter) Calibrations() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calibrate
}

// measure averages the source over [from, to).
func (m *Meter) measure(from, to time.Time) window {
	var w window
	var n, acN int
	var sv, si, sp, sf float64
	for t := from.Add(m.sample / 2); t.Before(to); t = t.Add(m.sample) {
		n++
		r := m.src.At(t)
		if !r.Is(power.FieldVoltage) {
			continue
		}
		acN++
		v, i := float64(r.Voltage), 0.0
		if r.Is(power.FieldCurrent) {
			i = float64(r.Current)
		}
		var p float64
		switch {
		case r.Is(power.FieldPower):
			p = float64(r.Power)
		case r.Is(power.FieldPF):
			p = v * i * float64(r.PF)
		default:
			p = v * i
		}
		f := 50.0
		if r.Is(power.FieldFrequency) {
			f = float64(r.Frequency)
		}
		sv, si, sp, sf = sv+v, si+i, sp+p, sf+f
	}
	// The meter runs from the measured line: without AC for most of the
	// window it has nothing to show.
	if n == 0 || 2*acN < n {
		return w
	}
	k := float64(acN)
	w.ac = true
	w.v, w.i, w.p, w.f = sv/k, si/k, sp/k, sf/k
	if w.i < float64(MinCurrent) {
		w.i, w.p = 0, 0
	}
	if math.Abs(w.p) < float64(MinPower) {
		w.p = 0
	}
	if w.p < 0 {
		w.p = -w.p // the meter shows magnitude only
	}
	if w.p > 0 && w.v > 0 && w.i > 0 {
		w.pf = math.Min(1, w.p/(w.v*w.i))
	}
	w.dE = w.p * to.Sub(from).Hours() * float64(acN) / float64(n)
	return w
}

// advance brings the model up to t. Call with mu held.
func (m *Meter) advance(t time.Time) {
	for !m.nextEnd.After(t) {
		w := m.measure(m.nextEnd.Add(-m.refresh), m.nextEnd)
		w.pubAt = m.nextEnd.Add(m.delay)
		m.pending = append(m.pending, w)
		m.nextEnd = m.nextEnd.Add(m.refresh)
	}
	k := 0
	for ; k < len(m.pending) && !m.pending[k].pubAt.After(t); k++ {
		w := m.pending[k]
		m.energy = math.Mod(m.energy+w.dE, EnergyWrap)
		m.visible = w
	}
	m.pending = append(m.pending[:0], m.pending[k:]...)
}

func quant(x, lsb float64, max uint64) uint64 {
	q := math.Round(x / lsb)
	if q < 0 {
		return 0
	}
	if q > float64(max) {
		return max
	}
	return uint64(q)
}

// Measurements returns the input registers at time t, and false when the
// meter is unpowered (no AC now, or not yet booted after AC returned).
func (m *Meter) Measurements(t time.Time) (pzem.Measurements, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.measurementsLocked(t)
}

func (m *Meter) measurementsLocked(t time.Time) (pzem.Measurements, bool) {
	m.advance(t)
	if !m.src.At(t).Is(power.FieldVoltage) || !m.visible.ac {
		return pzem.Measurements{}, false
	}
	w := m.visible
	ms := pzem.Measurements{
		Voltage:   uint16(quant(w.v, 0.1, math.MaxUint16)),
		Current:   uint32(quant(w.i, 0.001, math.MaxUint32)),
		Power:     uint32(quant(w.p, 0.1, math.MaxUint32)),
		Energy:    uint32(m.energy),
		Frequency: uint16(quant(w.f, 0.1, math.MaxUint16)),
		PF:        uint16(quant(w.pf, 0.01, 100)),
	}
	ms.Alarm = float64(ms.Power)/10 > float64(m.threshold)
	return ms, true
}

// Handle applies one request at time t and returns the reply, or false
// when the meter stays silent (no AC, broadcast, or not addressed to it).
func (m *Meter) Handle(req modbus.Frame, t time.Time) (modbus.Frame, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if req.Addr != m.addr && req.Addr != modbus.AddrGeneral && req.Addr != modbus.AddrBroadcast {
		return modbus.Frame{}, false
	}
	if _, on := m.measurementsLocked(t); !on {
		return modbus.Frame{}, false
	}
	reply := m.apply(req, t)
	// Replies carry the address the request used (0xF8 echoes as 0xF8);
	// a broadcast is acted on but never answered.
	reply.Addr = req.Addr
	return reply, req.Addr != modbus.AddrBroadcast
}

func (m *Meter) apply(req modbus.Frame, t time.Time) modbus.Frame {
	exc := func(c modbus.ExceptionCode) modbus.Frame { return modbus.Exception(req.Addr, req.Func, c) }
	switch req.Func {
	case modbus.FuncReadInput, modbus.FuncReadHolding:
		start, count, err := modbus.ParseReadRequest(req)
		if err != nil {
			return exc(modbus.IllegalData)
		}
		var regs []uint16
		if req.Func == modbus.FuncReadInput {
			ms, _ := m.measurementsLocked(t)
			regs = ms.Registers()
		} else {
			regs = []uint16{0, m.threshold, uint16(m.addr)} // index = register
			if start == 0 {
				return exc(modbus.IllegalAddress)
			}
		}
		if count == 0 || count > 125 {
			return exc(modbus.IllegalData)
		}
		if int(start)+int(count) > len(regs) {
			return exc(modbus.IllegalAddress)
		}
		return modbus.ReadReply(req.Addr, req.Func, regs[start:start+count])
	case modbus.FuncWriteSingle:
		reg, val, err := modbus.ParseWriteSingle(req)
		if err != nil {
			return exc(modbus.IllegalData)
		}
		switch reg {
		case pzem.RegAlarmThreshold:
			m.threshold = val
		case pzem.RegSlaveAddress:
			if pzem.CheckAddress(int(val)) != nil {
				return exc(modbus.IllegalData)
			}
			m.addr = uint8(val)
		default:
			return exc(modbus.IllegalAddress)
		}
		return req
	case modbus.FuncResetEnergy:
		if len(req.Data) != 0 {
			return exc(modbus.IllegalData)
		}
		m.energy = 0
		return req
	case modbus.FuncCalibrate:
		if req.Addr != modbus.AddrGeneral || string(req.Data) != string(pzem.CalibrationKey) {
			return exc(modbus.IllegalData)
		}
		m.calibrate++
		return req
	}
	return exc(modbus.IllegalFunction)
}
