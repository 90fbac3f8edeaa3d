package leanmqtt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Options configures Dial. Zero fields mean the documented defaults.
type Options struct {
	Addr     string // host:port
	ClientID string
	Username string
	Password string
	// Window bounds the PUBLISHes awaiting a PUBACK. Default 16; it is
	// lowered to the server's Receive Maximum.
	Window int
	// SessionExpiry and CleanStart are sent in CONNECT (default: clean
	// start true is NOT implied; set it for a fresh session).
	SessionExpiry uint32
	CleanStart    bool
	// KeepAlive is sent in CONNECT (seconds). This client sends no
	// PINGREQ: a connection with nothing to publish for 1.5 x KeepAlive
	// is closed by the server. 0 disables keep-alive.
	KeepAlive uint16
	// Dialer dials the TCP connection. Default: a net.Dialer.
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
}

// ErrClosed is passed to the done callbacks of messages still in flight
// when the connection closes, and returned by Publish after it closed.
var ErrClosed = errors.New("leanmqtt: connection closed")

// ConnectError is a CONNACK refusal.
type ConnectError struct {
	Reason byte   // CONNACK reason code, e.g. 0x86 bad user name or password
	Text   string // reason string, if the server sent one
}

func (e *ConnectError) Error() string {
	s := fmt.Sprintf("leanmqtt: connection refused (reason 0x%02x)", e.Reason)
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// DisconnectError is why the server closed the connection with a
// DISCONNECT packet.
type DisconnectError struct{ Reason byte }

func (e *DisconnectError) Error() string {
	return fmt.Sprintf("leanmqtt: disconnected by the server (reason 0x%02x)", e.Reason)
}

// Ack is the outcome of one PUBLISH.
type Ack struct {
	Reason byte          // PUBACK reason code (0 success); meaningful when Err is nil
	RTT    time.Duration // from the write of the PUBLISH to the read of its PUBACK
	Err    error         // non-nil: no PUBACK came (connection lost or closed)
}

type pending struct {
	sent time.Time
	done func(Ack)
}

// Conn is one MQTT connection. Publish is safe for concurrent use.
type Conn struct {
	nc     net.Conn
	window int

	mu       sync.Mutex
	cond     sync.Cond // signalled when a slot frees or the connection closes
	inflight map[uint16]pending
	nextID   uint16
	wmu      sync.Mutex // serialises writes; never held with mu
	wbuf     []byte
	err      error // set once closed
	done     chan struct{}
	maxPkt   int
}

// Dial connects, sends CONNECT and waits for the CONNACK. A refusal is a
// *ConnectError.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if o.Window <= 0 {
		o.Window = 16
	}
	var d interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	} = &net.Dialer{}
	if o.Dialer != nil {
		d = o.Dialer
	}
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("leanmqtt: dial %s: %w", o.Addr, err)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	c, err := handshake(nc, &o)
	if !stop() || err != nil {
		nc.Close()
		if err == nil || ctx.Err() != nil {
			err = fmt.Errorf("leanmqtt: connect %s: %w", o.Addr, context.Cause(ctx))
		}
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

func handshake(nc net.Conn, o *Options) (*Conn, error) {
	pkt, err := AppendConnect(nil, &Connect{
		ClientID: o.ClientID, Username: o.Username, Password: []byte(o.Password), HasPassword: o.Password != "",
		CleanStart: o.CleanStart, SessionExpiry: o.SessionExpiry, KeepAlive: o.KeepAlive,
	})
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(pkt); err != nil {
		return nil, fmt.Errorf("leanmqtt: send CONNECT: %w", err)
	}
	h, body, err := ReadPacket(nc, nil, 0)
	if err != nil {
		return nil, fmt.Errorf("leanmqtt: read CONNACK: %w", err)
	}
	if h.Type != TypeConnack {
		return nil, malformed("expected CONNACK, got packet type %d", h.Type)
	}
	ca, err := DecodeConnack(body)
	if err != nil {
		return nil, err
	}
	if ca.Reason != 0 {
		return nil, &ConnectError{Reason: ca.Reason, Text: ca.Props.ReasonString}
	}
	w := o.Window
	if rm := int(ca.Props.ReceiveMaximum); rm > 0 && rm < w {
		w = rm
	}
	c := &Conn{nc: nc, window: w, inflight: make(map[uint16]pending, w), done: make(chan struct{})}
	if mp := ca.Props.MaximumPacketSize; mp > 0 {
		c.maxPkt = int(mp)
	}
	c.cond.L = &c.mu
	return c, nil
}

// Window is the in-flight window in use (the lower of Options.Window and
// the server's Receive Maximum).
func (c *Conn) Window() int { return c.window }

// Done is closed when the connection has closed; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection closed (ErrClosed after Close), nil while open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Publish sends payload to topic at QoS 1. It waits while the window is
// full (until ctx ends or the connection closes). done is called exactly
// once, from the connection's reader goroutine or from the closing
// goroutine, with the PUBACK or with the error that lost it; done must not
// call Publish on this Conn synchronously. When Publish returns an error,
// done is not called.
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte, done func(Ack)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.inflight) >= c.window && c.err == nil {
		stop := context.AfterFunc(ctx, func() {
			c.mu.Lock()
			c.cond.Broadcast()
			c.mu.Unlock()
		})
		for len(c.inflight) >= c.window && c.err == nil && ctx.Err() == nil {
			c.cond.Wait()
		}
		stop()
	}
	if c.err != nil {
		return c.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pid := c.nextID
	for {
		pid++
		if pid == 0 {
			pid = 1
		}
		if _, used := c.inflight[pid]; !used {
			break
		}
	}
	c.nextID = pid
	c.inflight[pid] = pending{sent: time.Now(), done: done}
	c.mu.Unlock()

	// The write happens without c.mu, so that the reader can take PUBACKs
	// while a write waits for the socket.
	c.wmu.Lock()
	c.wbuf = AppendPublish(c.wbuf[:0], topic, pid, payload, false)
	var err error
	tooBig := c.maxPkt > 0 && len(c.wbuf) > c.maxPkt
	if tooBig {
		err = fmt.Errorf("leanmqtt: packet of %d bytes over the server's maximum %d", len(c.wbuf), c.maxPkt)
	} else if _, werr := c.nc.Write(c.wbuf); werr != nil {
		err = fmt.Errorf("leanmqtt: write: %w", werr)
	}
	if cap(c.wbuf) > 16<<10 {
		c.wbuf = nil // do not keep a large batch's buffer per connection
	}
	c.wmu.Unlock()

	c.mu.Lock()
	if err == nil {
		return nil
	}
	if _, ok := c.inflight[pid]; !ok {
		// The connection closed meanwhile and took this message with it:
		// done has been or will be called with the close error.
		return nil
	}
	delete(c.inflight, pid)
	c.cond.Signal()
	if tooBig { // nothing was written: the connection is still fine
		return err
	}
	f := c.closeLocked(err)
	c.mu.Unlock()
	f()
	c.mu.Lock() // for the deferred Unlock
	return err
}

// InFlight returns the number of PUBLISHes awaiting a PUBACK.
func (c *Conn) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

// Close sends DISCONNECT (reason 0) and closes the connection; messages in
// flight get ErrClosed.
func (c *Conn) Close() error {
	if c.wmu.TryLock() { // a write blocked on a full socket: close without DISCONNECT
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.nc.Write([]byte{TypeDisconnect << 4, 0}) // fails harmlessly when already closed
		c.wmu.Unlock()
	}
	c.mu.Lock()
	fail := c.closeLocked(ErrClosed)
	c.mu.Unlock()
	fail()
	<-c.done
	return nil
}

// Abort closes the socket without a DISCONNECT, as a crashed device would.
func (c *Conn) Abort() {
	c.mu.Lock()
	fail := c.closeLocked(ErrClosed)
	c.mu.Unlock()
	fail()
	<-c.done
}

// closeLocked records err, closes the socket and returns a function that
// fails the in-flight messages (to be called without c.mu held).
func (c *Conn) closeLocked(err error) func() {
	if c.err != nil {
		return func() {}
	}
	c.err = err
	c.nc.Close()
	c.cond.Broadcast()
	lost := c.inflight
	c.inflight = map[uint16]pending{}
	return func() {
		for _, p := range lost {
			p.done(Ack{Err: err})
		}
	}
}

func (c *Conn) fail(err error) {
	c.mu.Lock()
	f := c.closeLocked(err)
	c.mu.Unlock()
	f()
}

func (c *Conn) readLoop() {
	defer close(c.done)
	buf := make([]byte, 512)
	for {
		h, body, err := ReadPacket(c.nc, buf, 0)
		if err != nil {
			c.fail(fmt.Errorf("leanmqtt: read: %w", err))
			return
		}
		switch h.Type {
		case TypePuback:
			a, err := DecodePuback(body)
			if err != nil {
				c.fail(err)
				return
			}
			now := time.Now()
			c.mu.Lock()
			p, ok := c.inflight[a.PacketID]
			if ok {
				delete(c.inflight, a.PacketID)
				c.cond.Signal()
			}
			c.mu.Unlock()
			if ok {
				p.done(Ack{Reason: a.Reason, RTT: now.Sub(p.sent)})
			}
		case TypeDisconnect:
			d, err := DecodeDisconnect(body)
			if err != nil {
				c.fail(err)
			} else {
				c.fail(&DisconnectError{Reason: d.Reason})
			}
			return
		case TypePingresp:
		default:
			c.fail(malformed("unexpected packet type %d", h.Type))
			return
		}
	}
}
