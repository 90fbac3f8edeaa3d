// Package ledger keeps a reset-proof energy total over a meter's cumulative
// counter: the total never goes backwards across counter resets (explicit
// or after a power loss), the PZEM-004T's wrap after 9999.99 kWh, and agent
// restarts (the State is persisted by the caller).
//
// Rules for a counter value c after the last seen value l (see
// docs/AGENT.md):
//
//   - c >= l: the meter counted c-l; the total grows by c-l.
//   - c < l and a reset was announced with MarkReset: a reset; the meter
//     has counted c since it restarted from 0, so the total grows by c.
//   - c < l, l >= Modulus-WrapWindow and c <= WrapWindow: a wrap; the total
//     grows by (Modulus-l)+c.
//   - any other c < l: a reset (explicit, or the power-loss reset some units
//     do); the total grows by c. Energy counted between l and the reset is
//     not observable and is lost; it is at most one reading period's worth.
//
// The one ambiguous case is an unannounced reset while the counter was
// within WrapWindow of Modulus: it is taken for a wrap and over-counts by
// Modulus-l (at most WrapWindow). Announce resets you cause with MarkReset.
//
// The package imports only the standard library and loadwatch/internal/power.
package ledger

import (
	"errors"
	"fmt"
	"math"

	"loadwatch/internal/power"
)

// DefaultModulus is where the PZEM-004T counter wraps: it counts Wh from 0
// and shows at most 9999.99 kWh, so the value after the last one is 0 again
// at 10,000 kWh = 10,000,000 Wh.
const DefaultModulus power.WattHours = 10_000_000

// DefaultWrapWindow is how close to the ends a backwards jump must be to
// count as a wrap: 100 kWh, more than 4 h at the meter's 23 kW maximum.
const DefaultWrapWindow power.WattHours = 100_000

// Config sets the counter's range. Zero fields mean the defaults above.
type Config struct {
	Modulus    power.WattHours
	WrapWindow power.WattHours
}

// State is everything a Ledger needs to resume after a restart. It is plain
// data with JSON tags; persist it with the outbox.
type State struct {
	Total   power.WattHours `json:"total"`    // monotonic total, Wh
	Last    power.WattHours `json:"last"`     // last counter value seen
	HasLast bool            `json:"has_last"` // false until the first observation
	Resets  uint64          `json:"resets"`   // backwards jumps taken as resets
	Wraps   uint64          `json:"wraps"`    // backwards jumps taken as wraps
	Pending bool            `json:"pending"`  // a reset was announced and not yet seen
}

// Jump says what an observation was.
type Jump int

// The kinds of observation.
const (
	JumpFirst   Jump = iota // first value ever: the total starts at the counter
	JumpForward             // normal: counter same or higher
	JumpReset               // counter went back: reset
	JumpWrap                // counter went back: wrap
)

func (j Jump) String() string {
	switch j {
	case JumpFirst:
		return "first"
	case JumpForward:
		return "forward"
	case JumpReset:
		return "reset"
	case JumpWrap:
		return "wrap"
	}
	return fmt.Sprintf("Jump(%d)", int(j))
}

// ErrBadCounter is returned for a counter value that is negative, not
// finite or not below Modulus; the ledger is unchanged.
var ErrBadCounter = errors.New("ledger: counter value out of range")

// Ledger is the energy ledger of one meter. It is not safe for concurrent
// use.
type Ledger struct {
	mod, win power.WattHours
	st       State
}

// New returns a Ledger resuming from st (the zero State for a new meter).
func New(cfg Config, st State) *Ledger {
	if cfg.Modulus <= 0 {
		cfg.Modulus = DefaultModulus
	}
	if cfg.WrapWindow <= 0 {
		cfg.WrapWindow = DefaultWrapWindow
	}
	if cfg.WrapWindow > cfg.Modulus/2 {
		cfg.WrapWindow = cfg.Modulus / 2
	}
	return &Ledger{mod: cfg.Modulus, win: cfg.WrapWindow, st: st}
}

// State returns the state to persist.
func (l *Ledger) State() State { return l.st }

// Total returns the monotonic total.
func (l *Ledger) Total() power.WattHours { return l.st.Total }

// MarkReset announces that the meter's counter has been reset (call it
// after the meter acknowledged the reset command), so that the next
// observation, if it goes backwards, is a reset even near the wrap point.
// The announcement covers the next observation only.
func (l *Ledger) MarkReset() { l.st.Pending = true }

// Observe takes the next counter value and returns the new total and what
// the step was.
func (l *Ledger) Observe(c power.WattHours) (power.WattHours, Jump, error) {
	if math.IsNaN(float64(c)) || c < 0 || c >= l.mod {
		return l.st.Total, 0, fmt.Errorf("%w: %v (modulus %v)", ErrBadCounter, c, l.mod)
	}
	s := &l.st
	var j Jump
	switch {
	case !s.HasLast:
		s.Total += c
		s.HasLast = true
		j = JumpFirst
	case c >= s.Last:
		s.Total += c - s.Last
		j = JumpForward
	case !s.Pending && s.Last >= l.mod-l.win && c <= l.win:
		s.Total += l.mod - s.Last + c
		s.Wraps++
		j = JumpWrap
	default:
		s.Total += c
		s.Resets++
		j = JumpReset
	}
	s.Pending = false // an announcement covers the next observation only
	s.Last = c
	return s.Total, j, nil
}
