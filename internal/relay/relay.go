// Package relay switches the load relay of a loadwatch agent: a GPIO line
// through the Linux GPIO character device (github.com/warthog618/go-gpiocdev,
// imported only here), or a simulated relay for --sim and tests.
//
// "Closed" means the relay conducts and the load is powered. A relay module
// whose input is active low (most opto-isolated modules for the Raspberry
// Pi, and the original firmware's) is handled with GPIOOpts.ActiveLow: the
// line is then driven low to close the relay. Wire the load through the
// normally-open contact if the load must lose power when the agent or the
// board dies; through the normally-closed contact if it must keep it.
package relay

import (
	"context"
	"errors"
	"sync"
	"time"
)

// GPIOOpts configures a GPIO relay.
type GPIOOpts struct {
	Chip      string // gpiochip name or path, default "gpiochip0"
	Line      int    // line offset on the chip
	ActiveLow bool   // the module closes the relay on a low level
	Closed    bool   // initial state when the line is requested
	Consumer  string // label shown by gpioinfo, default "loadwatch-relay"
}

// ErrClosed is returned by Set after Close.
var ErrClosed = errors.New("relay: closed")

// Change is one switching of a simulated relay.
type Change struct {
	Closed bool
	Time   time.Time
}

// Sim is a simulated relay. OnChange (optional) is called with every new
// state and its time, under the relay's lock: --sim wires it to the
// simulated circuit (loadsim Circuit.SetRelay) so that a trip removes the
// load the virtual meter measures.
type Sim struct {
	mu       sync.Mutex
	closed   bool
	log      []Change
	now      func() time.Time
	onChange func(closed bool, t time.Time)
}

// NewSim returns a simulated relay in state closed. now defaults to
// time.Now.
func NewSim(closed bool, now func() time.Time, onChange func(closed bool, t time.Time)) *Sim {
	if now == nil {
		now = time.Now
	}
	return &Sim{closed: closed, now: now, onChange: onChange}
}

// Set switches the simulated relay and records the change.
func (s *Sim) Set(_ context.Context, closed bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if closed == s.closed && len(s.log) > 0 {
		return nil
	}
	t := s.now()
	s.closed = closed
	s.log = append(s.log, Change{Closed: closed, Time: t})
	if s.onChange != nil {
		s.onChange(closed, t)
	}
	return nil
}

// Closed returns the current state.
func (s *Sim) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Changes returns the switchings so far, oldest first.
func (s *Sim) Changes() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Change(nil), s.log...)
}
