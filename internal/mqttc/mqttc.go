// Package mqttc is loadwatch's MQTT v5 client adapter and the only importer
// of github.com/eclipse/paho.golang (autopaho). It offers what the agent
// needs and nothing more: one connection at a time (Dial), QoS 1 publishes
// that return the PUBACK reason code, a persistent session (clean start
// false with a session expiry) so that commands queued while the agent's
// radio was off arrive on its next connection, a last will, TLS with a CA
// file, and the inbound messages of the subscribed topics.
//
// Reconnecting is the caller's job: the agent connects when it has
// something to send and disconnects after ("radio off"), so a Conn ends
// when its network connection does (Done) and is never retried behind the
// caller's back.
package mqttc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// Message is a message to publish or one that was received.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// Config configures a connection. Zero fields mean the defaults in brackets.
type Config struct {
	// Broker is mqtt://HOST:PORT (also tcp://), or mqtts://, tls:// or
	// ssl:// for TLS.
	Broker   string
	ClientID string // also the username when Username is empty
	Username string
	Password string
	// CAFile is a PEM bundle to verify the broker's certificate with
	// [the system roots]; TLS can also be given whole.
	CAFile string
	TLS    *tls.Config
	// KeepAlive [30 s].
	KeepAlive time.Duration
	// SessionExpiry is how long the broker keeps the session (its
	// subscriptions and the QoS 1 messages queued for it) after a
	// disconnect [24 h]. It must outlast the longest sleep.
	SessionExpiry time.Duration
	// CleanStart discards a session the broker still holds [false].
	CleanStart bool
	// ConnectTimeout bounds Dial [10 s].
	ConnectTimeout time.Duration
	// Will is published by the broker when the connection is lost
	// without a DISCONNECT (nil: none).
	Will *Message
	// Subscribe lists topic filters subscribed at QoS 1 after connecting
	// whenever the broker has no session for the client (first connection,
	// expired or lost session).
	Subscribe []string
	// OnMessage receives every inbound message, on paho's goroutine; it
	// must not block for long. The message is acknowledged when it returns.
	OnMessage func(Message)
	// Dialer opens the network connection [net.Dialer]; tests use it to
	// put a proxy in the path.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ConnectError is a refused CONNACK (bad credentials, not authorised...).
// It is permanent for the given configuration.
type ConnectError struct {
	ReasonCode byte
	Reason     string
}

func (e *ConnectError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("mqtt: connection refused: reason 0x%02x (%s)", e.ReasonCode, e.Reason)
	}
	return fmt.Sprintf("mqtt: connection refused: reason 0x%02x", e.ReasonCode)
}

// ErrClosed is returned by Publish after the connection ended.
var ErrClosed = errors.New("mqtt: connection closed")

// Conn is one MQTT connection.
type Conn struct {
	cm             *autopaho.ConnectionManager
	aborted        atomic.Bool
	cancel         context.CancelFunc
	done           chan struct{}
	doneOnce       sync.Once
	sessionPresent bool
}

func brokerURL(s string) (*url.URL, bool, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, false, fmt.Errorf("mqtt: broker %q: %w", s, err)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, false, fmt.Errorf("mqtt: broker %q: want scheme://host:port", s)
	}
	switch u.Scheme {
	case "mqtt", "tcp":
		return u, false, nil
	case "mqtts", "tls", "ssl":
		return u, true, nil
	}
	return nil, false, fmt.Errorf("mqtt: broker %q: scheme must be mqtt, tcp, mqtts, tls or ssl", s)
}

// TLSConfig returns a TLS configuration trusting the CA certificates in
// caFile (PEM), or the system roots when caFile is empty.
func TLSConfig(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("mqtt: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("mqtt: CA file %s: no PEM certificate in it", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// Validate checks the configuration without connecting.
func (c *Config) Validate() error {
	if c.ClientID == "" {
		return errors.New("mqtt: empty client id")
	}
	_, _, err := brokerURL(c.Broker)
	return err
}

// Dial connects once, subscribes, and returns the connection. It fails
// when the broker cannot be reached or refuses the connection within
// ConnectTimeout or before ctx ends (a refusal is a *ConnectError). The
// connection then lives until Close, Abort or a network failure (Done),
// not until ctx's end.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	u, useTLS, err := brokerURL(cfg.Broker)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		return nil, errors.New("mqtt: empty client id")
	}
	keep := cfg.KeepAlive
	if keep <= 0 {
		keep = 30 * time.Second
	}
	expiry := cfg.SessionExpiry
	if expiry <= 0 {
		expiry = 24 * time.Hour
	}
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tlsCfg := cfg.TLS
	if useTLS && tlsCfg == nil {
		if tlsCfg, err = TLSConfig(cfg.CAFile, u.Hostname()); err != nil {
			return nil, err
		}
	}
	user := cfg.Username
	if user == "" {
		user = cfg.ClientID
	}
	dialer := cfg.Dialer
	if dialer == nil {
		var d net.Dialer
		dialer = d.DialContext
	}

	c := &Conn{done: make(chan struct{})}
	// The connection outlives ctx (which bounds connecting only): the
	// caller may still want to say goodbye while shutting down.
	connCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	up := make(chan *paho.Connack, 1)
	failed := make(chan error, 1)
	var handlers []func(paho.PublishReceived) (bool, error)
	if cfg.OnMessage != nil {
		handlers = append(handlers, func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			cfg.OnMessage(Message{Topic: p.Topic, Payload: append([]byte(nil), p.Payload...), QoS: p.QoS, Retain: p.Retain})
			return true, nil
		})
	}
	ac := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     uint16(min(keep/time.Second, 65535)),
		CleanStartOnInitialConnection: cfg.CleanStart,
		SessionExpiryInterval:         uint32(min(expiry/time.Second, 1<<32-1)),
		ConnectTimeout:                timeout,
		ReconnectBackoff:              autopaho.NewConstantBackoff(timeout),
		ConnectUsername:               user,
		ConnectPassword:               []byte(cfg.Password),
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			conn, err := dialer(ctx, "tcp", u.Host)
			if err != nil {
				return nil, err
			}
			if tlsCfg == nil {
				return conn, nil
			}
			tc := tls.Client(conn, tlsCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		},
		OnConnectionUp: func(_ *autopaho.ConnectionManager, ca *paho.Connack) {
			select {
			case up <- ca:
			default:
			}
		},
		OnConnectionDown: func() bool {
			c.markDone()
			return false // one connection per Conn: the caller reconnects
		},
		OnConnectError: func(err error) {
			var ce *autopaho.ConnackError
			if errors.As(err, &ce) {
				err = &ConnectError{ReasonCode: ce.ReasonCode, Reason: ce.Reason}
			}
			select {
			case failed <- err:
			default:
			}
		},
		DisconnectPacketBuilder: func() *paho.Disconnect {
			if c.aborted.Load() {
				return &paho.Disconnect{ReasonCode: 0x04} // disconnect with will message
			}
			return &paho.Disconnect{ReasonCode: 0}
		},
		ClientConfig: paho.ClientConfig{
			ClientID:          cfg.ClientID,
			OnPublishReceived: handlers,
		},
	}
	if cfg.Will != nil {
		ac.WillMessage = &paho.WillMessage{Topic: cfg.Will.Topic, Payload: cfg.Will.Payload, QoS: cfg.Will.QoS, Retain: cfg.Will.Retain}
	}
	cm, err := autopaho.NewConnection(connCtx, ac)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	c.cm = cm
	go func() {
		<-cm.Done()
		c.markDone()
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var ca *paho.Connack
	select {
	case ca = <-up:
	case err = <-failed:
	case <-t.C:
		err = fmt.Errorf("mqtt: no connection to %s within %v", u.Redacted(), timeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if ca == nil {
		cancel()
		<-cm.Done()
		if err == nil {
			err = errors.New("mqtt: connection failed")
		}
		var ce *ConnectError
		if !errors.As(err, &ce) {
			err = fmt.Errorf("mqtt: connect %s: %w", u.Redacted(), err)
		}
		return nil, err
	}
	c.sessionPresent = ca.SessionPresent
	// A session the broker kept still has its subscriptions; subscribing
	// again could even collide with the packet ids of the messages it is
	// delivering (mochi answers 0x91).
	if len(cfg.Subscribe) > 0 && !ca.SessionPresent {
		sub := &paho.Subscribe{}
		for _, f := range cfg.Subscribe {
			sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
		}
		sctx, scancel := context.WithTimeout(ctx, timeout)
		sa, err := cm.Subscribe(sctx, sub)
		scancel()
		if err != nil && sa != nil {
			err = fmt.Errorf("%w (reason codes %v)", err, sa.Reasons)
		}
		if err == nil {
			for i, rc := range sa.Reasons {
				if rc >= 0x80 {
					err = fmt.Errorf("mqtt: subscribe %q refused: reason 0x%02x", cfg.Subscribe[min(i, len(cfg.Subscribe)-1)], rc)
					break
				}
			}
		}
		if err != nil {
			c.Abort()
			return nil, fmt.Errorf("mqtt: subscribe: %w", err)
		}
	}
	return c, nil
}

func (c *Conn) markDone() { c.doneOnce.Do(func() { close(c.done) }) }

// SessionPresent reports whether the broker still held this client's
// session when it connected.
func (c *Conn) SessionPresent() bool { return c.sessionPresent }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Publish sends m and, for QoS 1, waits for the PUBACK. It returns the
// PUBACK's reason code: 0 (or 0x10, no matching subscribers) means the
// broker took the message; a code of 0x80 or more is a refusal and comes
// with a nil error so that the caller can tell refusals (0x99, 0x87:
// permanent) from failures (err: the message may not have arrived).
func (c *Conn) Publish(ctx context.Context, m Message) (reason byte, err error) {
	select {
	case <-c.done:
		return 0, ErrClosed
	default:
	}
	resp, err := c.cm.Publish(ctx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain})
	if resp != nil && resp.ReasonCode >= 0x80 {
		return resp.ReasonCode, nil
	}
	if err != nil {
		if errors.Is(err, autopaho.ConnectionDownError) {
			return 0, ErrClosed
		}
		return 0, fmt.Errorf("mqtt: publish %s: %w", m.Topic, err)
	}
	if resp == nil {
		return 0, nil
	}
	return resp.ReasonCode, nil
}

// Close sends a DISCONNECT (so the broker does not publish the will) and
// waits for the connection to end, at most until ctx is done.
func (c *Conn) Close(ctx context.Context) error {
	err := c.cm.Disconnect(ctx)
	c.cancel()
	c.markDone()
	return err
}

// Abort ends the connection with DISCONNECT reason 0x04 ("disconnect with
// will message": the broker publishes the will, as after a network
// failure) and does not wait.
func (c *Conn) Abort() {
	c.aborted.Store(true)
	c.cancel()
	c.markDone()
}
