//go:build !linux

package pzemtest

import (
	"context"
	"errors"
)

// PTY is a pseudo-terminal; serving on one is implemented for Linux only.
type PTY struct{}

var errNoPTY = errors.New("pzemtest: the pseudo-terminal meter is implemented for Linux only")

// OpenPTY fails outside Linux.
func OpenPTY() (*PTY, error) { return nil, errNoPTY }

// Path returns "".
func (p *PTY) Path() string { return "" }

// Start does nothing outside Linux.
func (p *PTY) Start(context.Context, *Bus) {}

// Close does nothing outside Linux.
func (p *PTY) Close() error { return nil }

// ServePTY fails outside Linux.
func ServePTY(context.Context, *Bus) (*PTY, error) { return nil, errNoPTY }
