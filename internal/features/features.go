// Package features turns one device's stream of readings into the feature
// vectors the appliance classifier sees. Every feature is causal: it is
// computed from the current reading and the ones before it, never from later
// ones, so the same code runs in training, in the server and in the agent
// (which sees every read). Pushing a reading allocates nothing.
//
// A feature set has a name and a fixed list of feature names; a model
// records both so that it is only ever fed what it was trained on. Two sets
// exist:
//
//   - "lw1": instantaneous quantities, apparent and reactive power, steps,
//     rolling statistics of P over fixed time windows (mean, min, max and
//     standard deviation over 10 s; standard deviation over 60 s and 300 s),
//     an energy rate from counter differences and a state tracker that
//     counts loads switched on per step-size bin (st_<W>w).
//     It never contains the raw cumulative energy counter.
//   - "legacy": the raw [power, energy] pair of the original Flask service,
//     kept only for models imported from scikit-learn or trained for the
//     legacy /predict form.
//
// A quantity the stream lacks gives NaN (never a stand-in such as 0 or
// 230 V); the forest treats NaN as "not measured".
package features

import (
	"errors"
	"fmt"
	"math"
	"time"

	"loadwatch/internal/power"
)

// Names of the feature sets.
const (
	SetLW1    = "lw1"
	SetLegacy = "legacy"
)

// ErrUnknownSet is returned for a feature set name this package does not know.
var ErrUnknownSet = errors.New("unknown feature set")

var lw1Names = []string{
	"p", "i", "vrms", "pf", "f",
	"p_norm", "s", "q",
	"dp", "dq", "dv",
	"p_mean_10s", "p_min_10s", "p_max_10s", "p_std_10s",
	"p_std_60s", "p_std_300s",
	"e_rate",
}

// The state tracker counts switching edges per step-size bin: bin b holds
// steps of stBase*stRatio^b .. stBase*stRatio^(b+1) watts.
const (
	stBins  = 24
	stBase  = 4.0
	stRatio = 1.3335214321633240 // 10^(1/8): 3 decades in 24 bins
	stMax   = 3                  // a bin counts at most this many loads on
)

// stLow is the lower bound of each state-tracker bin, in watts.
var stLow [stBins]float64

func init() {
	for b := 0; b < stBins; b++ {
		stLow[b] = stBase * math.Pow(stRatio, float64(b))
		lw1Names = append(lw1Names, fmt.Sprintf("st_%dw", int(math.Round(stBase*math.Pow(stRatio, float64(b))))))
	}
}

var legacyNames = []string{"power", "energy"}

// Indexes into an lw1 vector.
const (
	iP = iota
	iI
	iV
	iPF
	iF
	iPNorm
	iS
	iQ
	iDP
	iDQ
	iDV
	iWin   // mean, min, max, std of the shortest window, then std of the others
	iERate = iWin + 4 + nWindows - 1
	iSt    = iERate + 1
)

// windows are the rolling-statistics spans, shortest first.
var windows = [nWindows]time.Duration{10 * time.Second, 60 * time.Second, 300 * time.Second}

const nWindows = 3

// Names returns the feature names of set, in vector order. The slice must
// not be modified.
func Names(set string) ([]string, error) {
	switch set {
	case SetLW1:
		return lw1Names, nil
	case SetLegacy:
		return legacyNames, nil
	}
	return nil, fmt.Errorf("%w: %q (known: %s, %s)", ErrUnknownSet, set, SetLW1, SetLegacy)
}

// Config tunes an Extractor. Zero fields mean the documented defaults.
type Config struct {
	// MaxGap is the longest time between two readings that still counts
	// as one stream; a longer gap (or a timestamp that does not advance)
	// resets the windows, steps and event tracker. Default 30 s.
	MaxGap time.Duration
	// NominalVoltage is the voltage P is normalised to. Default 230 V.
	NominalVoltage power.Volts
	// Capacity is how many readings the rolling windows can hold; when a
	// stream is faster than Capacity readings per 300 s, the longest
	// window covers only the last Capacity readings. Default 1024. The
	// buffers start small and double when a window needs more room, so a
	// stream of one reading every 5 s holds about 64 slots, not Capacity.
	Capacity int
	// EventMinStep is the smallest change of P, between two readings,
	// that counts as a switching event. Default 8 W; a step must also be
	// at least 5 % of the larger of the two powers.
	EventMinStep power.Watts
	// EnergyWrap is the value at which the meter's energy counter wraps
	// to 0. Default 10,000,000 Wh (PZEM-004T: 9999.99 kWh, then 0).
	EnergyWrap power.WattHours
}

func (c Config) withDefaults() Config {
	if c.MaxGap <= 0 {
		c.MaxGap = 30 * time.Second
	}
	if c.NominalVoltage <= 0 {
		c.NominalVoltage = 230
	}
	if c.Capacity <= 0 {
		c.Capacity = 1024
	}
	if c.EventMinStep <= 0 {
		c.EventMinStep = 8
	}
	if c.EnergyWrap <= 0 {
		c.EnergyWrap = 10_000_000
	}
	return c
}

// Extractor computes the features of one device stream. Push the readings
// in time order. It is not safe for concurrent use; use one per device.
type Extractor struct {
	set    string
	legacy bool
	n      int
	cfg    Config

	// ring of recent readings (power only), for the windows; it grows
	// (doubling) up to maxCap when the longest window needs more room
	cap    int
	maxCap int
	times  []int64 // unix nanoseconds
	p      []float64
	seq    int   // number of samples pushed since the last reset
	t0     int64 // time of the first sample since the last reset
	win    [nWindows]window

	// previous reading
	started bool
	prevT   int64
	prevP   float64
	prevQ   float64
	prevV   float64

	// energy counter state
	eHave  bool
	eLastT int64
	eLast  float64   // last counter value
	eAcc   float64   // Wh accumulated since eRefT
	eTimes []int64   // ring of (time, accumulated energy) pairs
	eAccs  []float64 // for the rate over the longest window
	eCap   int       // length of eTimes and eAccs, grows like cap
	eSeq   int
	eStart int

	// state tracker: an edge is a run of same-sign steps
	edge float64 // accumulated step of the edge in progress, 0 = none
	st   [stBins]int8
}

// window holds the running sums and monotonic deques of one time window.
type window struct {
	span       int64
	start      int // oldest sequence number inside the window
	sum, sumSq float64
	minQ, maxQ deque
}

// deque is a ring of sequence numbers that doubles when full. A monotonic
// deque of a window never holds more than the window's readings, so it
// stays as small as the stream allows.
type deque struct {
	buf        []int
	head, size int
}

func (d *deque) reset()      { d.head, d.size = 0, 0 }
func (d *deque) front() int  { return d.buf[d.head] }
func (d *deque) back() int   { return d.buf[(d.head+d.size-1)%len(d.buf)] }
func (d *deque) popFront()   { d.head = (d.head + 1) % len(d.buf); d.size-- }
func (d *deque) popBack()    { d.size-- }
func (d *deque) empty() bool { return d.size == 0 }
func (d *deque) pushBack(s int) {
	if d.size == len(d.buf) {
		nb := make([]int, max(minRing, 2*len(d.buf)))
		for i := range d.size {
			nb[i] = d.buf[(d.head+i)%len(d.buf)]
		}
		d.buf, d.head = nb, 0
	}
	d.buf[(d.head+d.size)%len(d.buf)] = s
	d.size++
}

// minRing is the size the rings and deques start at.
const minRing = 8

// grow returns a ring of n slots holding the live sequence numbers
// [lo, hi) of old (a ring of len(old) slots indexed by sequence number
// modulo its length) at their slots modulo n.
func grow[T any](old []T, n, lo, hi int) []T {
	nb := make([]T, n)
	for j := lo; j < hi; j++ {
		nb[j%n] = old[j%len(old)]
	}
	return nb
}

// New returns an Extractor for the named feature set.
func New(set string, cfg Config) (*Extractor, error) {
	names, err := Names(set)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return newExtractor(set, len(names), cfg, minRing), nil
}

// newExtractor returns an Extractor whose buffers start at ring slots (at
// most cfg.Capacity).
func newExtractor(set string, n int, cfg Config, ring int) *Extractor {
	e := &Extractor{set: set, legacy: set == SetLegacy, n: n, cfg: cfg, maxCap: cfg.Capacity}
	if e.legacy {
		return e
	}
	e.cap = min(ring, e.maxCap)
	e.eCap = e.cap
	e.times = make([]int64, e.cap)
	e.p = make([]float64, e.cap)
	e.eTimes = make([]int64, e.eCap)
	e.eAccs = make([]float64, e.eCap)
	for i := range e.win {
		e.win[i] = window{span: int64(windows[i])}
	}
	return e
}

// RingSlots returns how many readings the extractor's window buffers can
// hold now: they grow with the stream's rate up to Config.Capacity.
func (e *Extractor) RingSlots() int { return e.cap }

// Set returns the feature set name.
func (e *Extractor) Set() string { return e.set }

// NumFeatures returns the length of the vectors Push writes.
func (e *Extractor) NumFeatures() int { return e.n }

// Reset forgets the stream so far (as after a long gap).
func (e *Extractor) Reset() {
	e.started = false
	e.seq = 0
	for i := range e.win {
		w := &e.win[i]
		w.start, w.sum, w.sumSq = 0, 0, 0
		w.minQ.reset()
		w.maxQ.reset()
	}
	e.eHave = false
	e.eSeq, e.eStart = 0, 0
	e.edge = 0
	e.st = [stBins]int8{}
}

// commitEdge books a finished switching edge of step watts in the state
// tracker: an upward step switches a load of that size on, a downward one
// switches it off (in the same bin, or a neighbouring one when the meter's
// averaging split the step differently).
func (e *Extractor) commitEdge(step float64) {
	a := math.Abs(step)
	if a < stBase {
		return
	}
	b := min(stBins-1, int(math.Log(a/stBase)/math.Log(stRatio)))
	if step > 0 {
		if e.st[b] < stMax {
			e.st[b]++
		}
		return
	}
	for _, c := range [...]int{b, b - 1, b + 1} {
		if c >= 0 && c < stBins && e.st[c] > 0 {
			e.st[c]--
			return
		}
	}
}

var nan32 = float32(math.NaN())

// Push adds reading r and writes its feature vector to out, which must hold
// NumFeatures values. It never allocates.
func (e *Extractor) Push(r power.Reading, out []float32) {
	out = out[:e.n]
	if e.legacy {
		out[0], out[1] = nan32, nan32
		if r.Is(power.FieldPower) {
			out[0] = float32(r.Power)
		}
		if r.Is(power.FieldEnergy) {
			out[1] = float32(r.Energy)
		}
		return
	}
	for i := range out {
		out[i] = nan32
	}
	t := r.Time.UnixNano()
	if e.started && (t <= e.prevT || t-e.prevT > int64(e.cfg.MaxGap)) {
		e.Reset()
	}

	hasP, hasV, hasI := r.Is(power.FieldPower), r.Is(power.FieldVoltage), r.Is(power.FieldCurrent)
	p, v, i := float64(r.Power), float64(r.Voltage), float64(r.Current)
	if hasP {
		out[iP] = float32(p)
	}
	if hasI {
		out[iI] = float32(i)
	}
	if hasV {
		out[iV] = float32(v)
	}
	if r.Is(power.FieldPF) {
		out[iPF] = float32(r.PF)
	}
	if r.Is(power.FieldFrequency) {
		out[iF] = float32(r.Frequency)
	}
	if hasP && hasV && v > 0 {
		k := float64(e.cfg.NominalVoltage) / v
		out[iPNorm] = float32(p * k * k)
	}
	q := math.NaN()
	if s, ok := r.Apparent(); ok {
		out[iS] = float32(s)
		if qq, ok := r.Reactive(); ok {
			q = qq
			out[iQ] = float32(q)
		}
	}

	if e.started {
		if hasP && !math.IsNaN(e.prevP) {
			out[iDP] = float32(p - e.prevP)
		}
		if !math.IsNaN(q) && !math.IsNaN(e.prevQ) {
			out[iDQ] = float32(q - e.prevQ)
		}
		if hasV && !math.IsNaN(e.prevV) {
			out[iDV] = float32(v - e.prevV)
		}
		// Switching edges for the state tracker: steps in P large enough
		// in watts and in relative terms; consecutive steps of one sign
		// are one edge.
		if hasP && !math.IsNaN(e.prevP) {
			d := p - e.prevP
			if math.Abs(d) >= float64(e.cfg.EventMinStep) && math.Abs(d) >= 0.05*math.Max(p, e.prevP) {
				if e.edge != 0 && (d > 0) == (e.edge > 0) {
					e.edge += d // the meter's averaging spread one switch over two reads
				} else {
					if e.edge != 0 {
						e.commitEdge(e.edge)
					}
					e.edge = d
				}
			} else if e.edge != 0 {
				e.commitEdge(e.edge)
				e.edge = 0
			}
		}
	}

	if hasP {
		e.pushWindows(t, p, out)
		// A load cannot be on when the total is below its size: this
		// clears counts whose switch-off edge was missed (a slow ramp
		// down, or a switch hidden in another load's edge).
		for b := range e.st {
			if e.st[b] > 0 && 0.8*stLow[b] > p {
				e.st[b] = 0
			}
		}
		for b, c := range e.st {
			out[iSt+b] = float32(c)
		}
	}
	if r.Is(power.FieldEnergy) {
		e.pushEnergy(t, float64(r.Energy), out)
	}

	e.started, e.prevT = true, t
	e.prevP, e.prevQ, e.prevV = math.NaN(), q, math.NaN()
	if hasP {
		e.prevP = p
	}
	if hasV {
		e.prevV = v
	}
}

func (e *Extractor) pushWindows(t int64, p float64, out []float32) {
	s := e.seq
	e.seq++
	if s == 0 {
		e.t0 = t
	}
	if e.cap < e.maxCap {
		// Grow rather than overwrite a reading a window still holds.
		lo := s
		for k := range e.win {
			lo = min(lo, e.win[k].start)
		}
		if s+1-lo > e.cap {
			n := min(e.maxCap, 2*e.cap)
			e.times = grow(e.times, n, lo, s)
			e.p = grow(e.p, n, lo, s)
			e.cap = n
		}
	}
	oldest := max(0, e.seq-e.cap) // oldest sequence still in the ring
	// Drop what the new sample overwrites before overwriting it.
	for k := range e.win {
		w := &e.win[k]
		for w.start < oldest {
			old := e.p[w.start%e.cap]
			w.sum -= old
			w.sumSq -= old * old
			w.start++
		}
		for !w.minQ.empty() && w.minQ.front() < w.start {
			w.minQ.popFront()
		}
		for !w.maxQ.empty() && w.maxQ.front() < w.start {
			w.maxQ.popFront()
		}
	}
	slot := s % e.cap
	e.times[slot], e.p[slot] = t, p
	for k := range e.win {
		w := &e.win[k]
		w.sum += p
		w.sumSq += p * p
		for !w.minQ.empty() && e.p[w.minQ.back()%e.cap] >= p {
			w.minQ.popBack()
		}
		w.minQ.pushBack(s)
		for !w.maxQ.empty() && e.p[w.maxQ.back()%e.cap] <= p {
			w.maxQ.popBack()
		}
		w.maxQ.pushBack(s)
		// Drop what fell out of the window in time.
		for w.start < s && t-e.times[w.start%e.cap] > w.span {
			old := e.p[w.start%e.cap]
			w.sum -= old
			w.sumSq -= old * old
			w.start++
		}
		for w.minQ.front() < w.start {
			w.minQ.popFront()
		}
		for w.maxQ.front() < w.start {
			w.maxQ.popFront()
		}
		if s%4096 == 4095 {
			// Recompute the running sums now and then, so that rounding
			// from months of adds and subtracts cannot pile up.
			w.sum, w.sumSq = 0, 0
			for j := w.start; j <= s; j++ {
				v := e.p[j%e.cap]
				w.sum += v
				w.sumSq += v * v
			}
		}
		n := float64(s - w.start + 1)
		mean := w.sum / n
		variance := w.sumSq/n - mean*mean
		if variance < 0 || n == 1 {
			variance = 0
		}
		// A spread from a window the stream has not yet covered for half
		// its span is not that window's spread: leave it unknown.
		std := float32(math.NaN())
		if n > 1 && 2*(t-e.t0) >= w.span {
			std = float32(math.Sqrt(variance))
		}
		if k == 0 {
			out[iWin] = float32(mean)
			out[iWin+1] = float32(e.p[w.minQ.front()%e.cap])
			out[iWin+2] = float32(e.p[w.maxQ.front()%e.cap])
			out[iWin+3] = std
		} else {
			out[iWin+3+k] = std
		}
	}
}

// pushEnergy tracks the counter as an accumulated energy that survives
// resets and wraps, and writes the rate (W) over the longest window.
func (e *Extractor) pushEnergy(t int64, c float64, out []float32) {
	if !e.eHave {
		e.eHave, e.eLast, e.eAcc, e.eLastT = true, c, 0, t
		e.eSeq, e.eStart = 0, 0
	} else {
		d := c - e.eLast
		if d < 0 {
			wrap := float64(e.cfg.EnergyWrap)
			if e.eLast > 0.9*wrap && c < 0.1*wrap {
				d = wrap - e.eLast + c // wrapped past the top
			} else {
				d = 0 // reset: the counter restarted near 0; count from here
			}
		}
		e.eAcc += d
		e.eLast, e.eLastT = c, t
	}
	s := e.eSeq
	e.eSeq++
	if s+1-e.eStart > e.eCap && e.eCap < e.maxCap {
		n := min(e.maxCap, 2*e.eCap)
		e.eTimes = grow(e.eTimes, n, e.eStart, s)
		e.eAccs = grow(e.eAccs, n, e.eStart, s)
		e.eCap = n
	}
	e.eTimes[s%e.eCap], e.eAccs[s%e.eCap] = t, e.eAcc
	oldest := max(0, e.eSeq-e.eCap)
	span := int64(windows[nWindows-1])
	for e.eStart < s && (e.eStart < oldest || t-e.eTimes[e.eStart%e.eCap] > span) {
		e.eStart++
	}
	if e.eStart == s {
		return
	}
	dt := float64(t-e.eTimes[e.eStart%e.eCap]) / 1e9
	// A counter with 1 Wh resolution needs time to say anything: below a
	// minute the rate is mostly quantisation.
	if dt < 60 {
		return
	}
	out[iERate] = float32((e.eAcc - e.eAccs[e.eStart%e.eCap]) * 3600 / dt)
}

// Streams keeps one Extractor per device, for input that interleaves
// several devices (each device's readings still in time order).
type Streams struct {
	set string
	cfg Config
	n   int
	m   map[string]*Extractor
}

// NewStreams returns an empty set of per-device streams.
func NewStreams(set string, cfg Config) (*Streams, error) {
	names, err := Names(set)
	if err != nil {
		return nil, err
	}
	return &Streams{set: set, cfg: cfg, n: len(names), m: map[string]*Extractor{}}, nil
}

// NumFeatures returns the length of the vectors Push writes.
func (s *Streams) NumFeatures() int { return s.n }

// Push adds a reading of device and writes its features to out. It
// allocates only for the first reading of a device.
func (s *Streams) Push(device string, r power.Reading, out []float32) {
	e, ok := s.m[device]
	if !ok {
		e, _ = New(s.set, s.cfg) // the set was checked by NewStreams
		s.m[device] = e
	}
	e.Push(r, out)
}
