package pzemtest

import (
	"errors"
	"io"
	"sync"
	"time"
)

// pipeEnd is one direction of an in-memory line.
type pipeEnd struct {
	ch   chan []byte
	done chan struct{}
	once *sync.Once
}

// ClientPort is the master's end of an in-memory line. It satisfies
// modbus.Port.
type ClientPort struct {
	rx, tx  pipeEnd
	mu      sync.Mutex
	pending []byte
	timeout time.Duration
}

// ServerPort is the meters' end of an in-memory line: a plain
// io.ReadWriteCloser for Bus.Serve.
type ServerPort struct {
	rx, tx  pipeEnd
	pending []byte
}

// Pipe returns the two ends of an in-memory serial line with no baud
// timing. Closing either end closes the line.
func Pipe() (*ClientPort, *ServerPort) {
	done := make(chan struct{})
	once := &sync.Once{}
	up := pipeEnd{ch: make(chan []byte, 64), done: done, once: once}
	down := pipeEnd{ch: make(chan []byte, 64), done: done, once: once}
	return &ClientPort{rx: down, tx: up}, &ServerPort{rx: up, tx: down}
}

var errClosed = errors.New("pzemtest: line closed")

func (e pipeEnd) write(b []byte) (int, error) {
	c := append([]byte(nil), b...)
	select {
	case e.ch <- c:
		return len(b), nil
	case <-e.done:
		return 0, errClosed
	}
}

func (e pipeEnd) close() error {
	e.once.Do(func() { close(e.done) })
	return nil
}

// Write sends b to the meters.
func (p *ClientPort) Write(b []byte) (int, error) { return p.tx.write(b) }

// Read returns what arrived, waiting up to the read timeout (forever when
// it is 0); (0, nil) on timeout.
func (p *ClientPort) Read(b []byte) (int, error) {
	p.mu.Lock()
	to := p.timeout
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		p.mu.Unlock()
		return n, nil
	}
	p.mu.Unlock()
	var tc <-chan time.Time
	if to > 0 {
		t := time.NewTimer(to)
		defer t.Stop()
		tc = t.C
	}
	select {
	case c := <-p.rx.ch:
		p.mu.Lock()
		defer p.mu.Unlock()
		n := copy(b, c)
		p.pending = append(p.pending, c[n:]...)
		return n, nil
	case <-tc:
		return 0, nil
	case <-p.rx.done:
		return 0, io.EOF
	}
}

// SetReadTimeout sets how long Read waits.
func (p *ClientPort) SetReadTimeout(d time.Duration) error {
	p.mu.Lock()
	p.timeout = d
	p.mu.Unlock()
	return nil
}

// ResetInputBuffer drops everything received and not yet read.
func (p *ClientPort) ResetInputBuffer() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = nil
	for {
		select {
		case <-p.rx.ch:
		default:
			return nil
		}
	}
}

// Close closes the line.
func (p *ClientPort) Close() error { return p.tx.close() }

// Read blocks until the master writes.
func (s *ServerPort) Read(b []byte) (int, error) {
	if len(s.pending) > 0 {
		n := copy(b, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	select {
	case c := <-s.rx.ch:
		n := copy(b, c)
		s.pending = append(s.pending, c[n:]...)
		return n, nil
	case <-s.rx.done:
		return 0, io.EOF
	}
}

// Write sends b to the master.
func (s *ServerPort) Write(b []byte) (int, error) { return s.tx.write(b) }

// Close closes the line.
func (s *ServerPort) Close() error { return s.rx.close() }
