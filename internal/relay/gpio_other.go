//go:build !linux

package relay

import (
	"context"
	"errors"
)

// GPIO is a relay on a GPIO line; it needs Linux's GPIO character device.
type GPIO struct{}

var errNotLinux = errors.New("relay: GPIO relays need Linux (the GPIO character device)")

// OpenGPIO fails: GPIO relays need Linux.
func OpenGPIO(GPIOOpts) (*GPIO, error) { return nil, errNotLinux }

// Set fails: GPIO relays need Linux.
func (g *GPIO) Set(context.Context, bool) error { return errNotLinux }

// Closed is false.
func (g *GPIO) Closed() bool { return false }

// Close does nothing.
func (g *GPIO) Close() error { return nil }
