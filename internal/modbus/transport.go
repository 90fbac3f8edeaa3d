package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Port is the byte stream a Transport talks over: a serial port or a
// pseudo-terminal (go.bug.st/serial's Port satisfies it), or an in-memory
// pair in tests.
type Port interface {
	io.ReadWriter
	// SetReadTimeout makes Read return (0, nil) when nothing arrived
	// within d.
	SetReadTimeout(d time.Duration) error
	// ResetInputBuffer discards bytes received but not yet read.
	ResetInputBuffer() error
}

// Defaults of a Transport.
const (
	// DefaultGap is 3.5 character times at 9600 baud 8N1 (10 bits a
	// character): 3.65 ms, rounded up.
	DefaultGap = 4 * time.Millisecond
	// DefaultSettle is how long the transport keeps listening after a bad
	// frame before it gives up on the exchange.
	DefaultSettle = 30 * time.Millisecond
	// DefaultTimeout bounds an exchange whose ctx has no deadline.
	DefaultTimeout = time.Second
	pollSlice      = 50 * time.Millisecond
)

// Transport runs request/reply exchanges as a Modbus RTU master. It is not
// safe for concurrent use: one exchange at a time on a bus.
type Transport struct {
	port   Port
	gap    time.Duration
	settle time.Duration
	last   time.Time // end of the last frame on the bus
	rx     []byte
	tmp    [256]byte
}

// NewTransport returns a Transport over p. A zero gap or settle means the
// default.
func NewTransport(p Port, gap, settle time.Duration) *Transport {
	if gap <= 0 {
		gap = DefaultGap
	}
	if settle <= 0 {
		settle = DefaultSettle
	}
	return &Transport{port: p, gap: gap, settle: settle, rx: make([]byte, 0, 2*maxFrameLen)}
}

// Info describes one exchange, for counters.
type Info struct {
	// Skipped counts bytes that were discarded while looking for the reply
	// (garbage, a slipped byte, a frame with a bad CRC).
	Skipped int
	// Latency runs from the end of the request to the end of the reply.
	Latency time.Duration
}

// Exchange sends req and waits for its reply until ctx is done (or
// DefaultTimeout when ctx has no deadline). It waits the inter-frame gap
// before sending, discards stray input, and skips bytes that cannot start
// the expected reply, so a slipped or garbage byte costs nothing. A reply
// from another address, or for another function, is skipped as garbage.
// With address AddrGeneral (0xF8) a reply from any address is accepted.
// With AddrBroadcast no reply is awaited.
//
// Errors: a *CRCError (ErrCRC) when only a corrupted reply came, ErrShortFrame
// when bytes came but no complete reply, ErrTimeout when nothing came, and
// ctx.Err() when ctx was cancelled. An exception reply is returned as a
// Frame; call its Err method. After any error the input is flushed.
func (t *Transport) Exchange(ctx context.Context, req Frame) (Frame, Info, error) {
	var info Info
	if err := t.waitGap(ctx); err != nil {
		return Frame{}, info, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	_ = t.port.ResetInputBuffer()
	wire := Encode(req)
	if n, err := t.port.Write(wire); err != nil || n != len(wire) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return Frame{}, info, fmt.Errorf("modbus: write request: %w", err)
	}
	sent := time.Now()
	t.last = sent
	if req.Addr == AddrBroadcast {
		return Frame{}, info, nil
	}

	buf := t.rx[:0]
	var crcErr error
	var settleUntil time.Time
	for {
		// Scan what we have for the reply.
		for len(buf) >= 2 {
			if !t.head(req, buf) {
				buf, info.Skipped = buf[1:], info.Skipped+1
				continue
			}
			n := ReplyLen(buf)
			if n == 0 || len(buf) < n {
				break // need more bytes
			}
			f, err := Decode(buf[:n])
			if err != nil {
				crcErr = err
				buf, info.Skipped = buf[1:], info.Skipped+1
				continue
			}
			t.last = time.Now()
			info.Latency = t.last.Sub(sent)
			f.Data = append([]byte(nil), f.Data...)
			return f, info, nil
		}
		now := time.Now()
		if crcErr != nil && settleUntil.IsZero() {
			settleUntil = now.Add(t.settle)
		}
		end := deadline
		if !settleUntil.IsZero() && settleUntil.Before(end) {
			end = settleUntil
		}
		wait := end.Sub(now)
		if wait <= 0 || ctx.Err() != nil {
			break
		}
		if err := t.port.SetReadTimeout(min(wait, pollSlice)); err != nil {
			return Frame{}, info, fmt.Errorf("modbus: set read timeout: %w", err)
		}
		n, err := t.port.Read(t.tmp[:])
		if err != nil {
			return Frame{}, info, fmt.Errorf("modbus: read reply: %w", err)
		}
		if n > 0 {
			settleUntil = time.Time{} // more bytes: look again (a bad CRC stays the likely cause)
			if len(buf)+n > cap(t.rx) {
				info.Skipped += len(buf)
				buf = buf[:0]
			}
			buf = append(buf, t.tmp[:n]...)
		}
	}
	t.last = time.Now()
	info.Skipped += len(buf)
	t.flush()
	switch {
	case crcErr != nil:
		return Frame{}, info, crcErr
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Frame{}, info, ctx.Err()
	case info.Skipped > 0:
		return Frame{}, info, fmt.Errorf("%w: %d bytes received but no complete reply", ErrShortFrame, info.Skipped)
	}
	return Frame{}, info, ErrTimeout
}

// head reports whether b can start the reply to req.
func (t *Transport) head(req Frame, b []byte) bool {
	if b[0] != req.Addr && req.Addr != AddrGeneral {
		return false
	}
	return b[1] == req.Func || b[1] == req.Func|exceptionBit
}

// waitGap keeps the bus silent for the inter-frame gap since the last frame.
func (t *Transport) waitGap(ctx context.Context) error {
	d := time.Until(t.last.Add(t.gap))
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush waits one gap for the tail of a bad frame and drops all input.
func (t *Transport) flush() {
	time.Sleep(t.gap)
	_ = t.port.ResetInputBuffer()
	t.last = time.Now()
}
