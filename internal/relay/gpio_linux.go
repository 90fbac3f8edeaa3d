package relay

import (
	"context"
	"fmt"
	"sync"

	"github.com/warthog618/go-gpiocdev"
)

// GPIO is a relay on one GPIO output line.
type GPIO struct {
	mu     sync.Mutex
	line   *gpiocdev.Line
	closed bool
}

// OpenGPIO requests the line as an output, driven to o.Closed.
func OpenGPIO(o GPIOOpts) (*GPIO, error) {
	if o.Line < 0 {
		return nil, fmt.Errorf("relay: negative GPIO line %d", o.Line)
	}
	chip := o.Chip
	if chip == "" {
		chip = "gpiochip0"
	}
	consumer := o.Consumer
	if consumer == "" {
		consumer = "loadwatch-relay"
	}
	level := gpiocdev.AsActiveHigh
	if o.ActiveLow {
		level = gpiocdev.AsActiveLow
	}
	l, err := gpiocdev.RequestLine(chip, o.Line, gpiocdev.WithConsumer(consumer), level, gpiocdev.AsOutput(b2i(o.Closed)))
	if err != nil {
		return nil, fmt.Errorf("relay: request %s line %d: %w", chip, o.Line, err)
	}
	return &GPIO{line: l, closed: o.Closed}, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Set closes (true) or opens (false) the relay. The GPIO write is a single
// ioctl; ctx is accepted for the interface and not waited on.
func (g *GPIO) Set(_ context.Context, closed bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.line == nil {
		return ErrClosed
	}
	if err := g.line.SetValue(b2i(closed)); err != nil {
		return fmt.Errorf("relay: set line: %w", err)
	}
	g.closed = closed
	return nil
}

// Closed returns the last state set.
func (g *GPIO) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Close releases the line (the kernel keeps its last level).
func (g *GPIO) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.line == nil {
		return nil
	}
	err := g.line.Close()
	g.line = nil
	return err
}
