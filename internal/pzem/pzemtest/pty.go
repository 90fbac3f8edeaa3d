//go:build linux

package pzemtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// PTY is a pseudo-terminal whose slave side looks like a serial port to a
// client (open its Path). The meters sit on the master side.
type PTY struct {
	master *os.File // non-blocking, so Close interrupts a pending Read
	slave  *os.File // kept open: the master never sees EIO, and the raw mode sticks
	path   string
	stop   context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

// OpenPTY opens a pseudo-terminal and puts its slave side in raw mode (no
// echo, no line discipline, 8 bits, 9600 baud), so a client that opens the
// path late still sees clean binary frames.
func OpenPTY() (*PTY, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("pzemtest: open pseudo-terminal: %w", err)
	}
	if err := makeRaw(int(s.Fd())); err != nil {
		m.Close()
		s.Close()
		return nil, err
	}
	// pty.Open leaves the master in blocking mode (it called Fd), where
	// Close cannot interrupt a Read. Use a non-blocking duplicate, which
	// the runtime poller manages.
	fd, err := unix.Dup(int(m.Fd()))
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	m.Close()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("pzemtest: pseudo-terminal master: %w", err)
	}
	return &PTY{master: os.NewFile(uintptr(fd), "/dev/ptmx"), slave: s, path: s.Name(), done: make(chan struct{})}, nil
}

func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("pzemtest: get termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CSTOPB | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | unix.B9600
	t.Ispeed, t.Ospeed = unix.B9600, unix.B9600
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("pzemtest: set raw mode: %w", err)
	}
	return nil
}

// Path is the device a client opens, e.g. /dev/pts/7.
func (p *PTY) Path() string { return p.path }

// Start serves bus on the pseudo-terminal in the background until ctx is
// done or Close is called.
func (p *PTY) Start(ctx context.Context, bus *Bus) {
	ctx, p.stop = context.WithCancel(ctx)
	go func() {
		defer close(p.done)
		err := bus.Serve(ctx, p.master)
		if !errors.Is(err, context.Canceled) {
			p.err = err
		}
	}()
}

// Close stops serving, waits for the server and closes both sides. It
// returns the error that stopped the server, if any other than a stop.
func (p *PTY) Close() error {
	p.once.Do(func() {
		if p.stop != nil {
			p.stop()
			<-p.done
		}
		p.master.Close()
		p.slave.Close()
	})
	return p.err
}

// ServePTY opens a pseudo-terminal and serves bus on it until ctx is done
// or the PTY is closed.
func ServePTY(ctx context.Context, bus *Bus) (*PTY, error) {
	p, err := OpenPTY()
	if err != nil {
		return nil, err
	}
	p.Start(ctx, bus)
	return p, nil
}
