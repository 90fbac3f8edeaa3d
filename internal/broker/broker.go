// Package broker is loadwatch's embedded MQTT broker and the only user of
// mochi-mqtt: MQTT 3.1.1 and 5 over TCP, TLS and WebSocket, per-device
// credentials, a per-device ACL, persistent sessions on disk, and a
// synchronous ingest hook that decides each PUBACK.
//
// mochi calls OnPublish before it writes the PUBACK and delivers to
// subscribers after it. The ingest hook calls the Ingester inside OnPublish,
// so a reading is acknowledged only once the Ingester took it, and a refused
// reading gets the Ingester's MQTT 5 reason code instead of an
// acknowledgement and is never delivered to subscribers.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/registry"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Authenticator checks MQTT credentials (implemented by *registry.Registry).
// An error refuses the connection with CONNACK 0x86 (MQTT 5) or 4 (3.1.1).
type Authenticator interface {
	Authenticate(ctx context.Context, user, password string) (registry.Principal, error)
}

// SeenRecorder is an optional ability of an Authenticator: it is told when
// a device connects, publishes or disconnects. It must be cheap.
type SeenRecorder interface {
	TouchLastSeen(id string, at time.Time)
}

// Ingester takes a message a client published, synchronously, before the
// broker acknowledges it. reason 0 accepts it; a reason code of 0x80 or
// more refuses it with that code (0x99 payload format invalid and 0x87 not
// authorised are permanent for the agent, 0x97 quota exceeded and 0x80
// unspecified are retried); a non-nil err with reason 0 refuses with 0x80.
// payload is only valid during the call. Messages published by the broker
// itself (Publish) are not passed in.
type Ingester interface {
	Ingest(ctx context.Context, clientID, topic string, payload []byte) (reason byte, err error)
}

// MQTT 5 PUBACK reason codes an Ingester may return.
const (
	ReasonSuccess        byte = 0x00
	ReasonUnspecified    byte = 0x80
	ReasonImplementation byte = 0x83
	ReasonNotAuthorized  byte = 0x87
	ReasonTopicInvalid   byte = 0x90
	ReasonQuotaExceeded  byte = 0x97
	ReasonPayloadInvalid byte = 0x99
)

// Config configures a Broker; zero fields mean the documented defaults.
type Config struct {
	// TCPAddr, TLSAddr and WSAddr are listen addresses; an empty one is
	// not opened; port 0 picks a free port (see Addr). WSAddr serves MQTT
	// over WebSocket (subprotocol "mqtt", any path), with TLS when TLS is
	// set.
	TCPAddr, TLSAddr, WSAddr string
	// TLS is required with TLSAddr (see LoadTLS).
	TLS *tls.Config
	// DataDir holds the session store (broker-sessions.db). Empty keeps
	// sessions in memory only.
	DataDir string
	// MaxInflight bounds the QoS 1/2 messages held per client (queued for
	// an offline session or unacknowledged). Default 65535, the most the
	// 16-bit packet ids allow (mochi's 8192 dropped 11.5 % of messages to a
	// lagging subscriber in our measurement).
	MaxInflight uint16
	// MaxPendingWrites bounds each client's outbound queue. Default 1024.
	// mochi allocates every slot (8 bytes) for every client at connect, and
	// the Go GC counts the whole queue as live heap: 65,536 slots at 10,000
	// devices were 5 GiB of heap that doubled the GC's target. A subscriber
	// that sets Receive Maximum never fills it (mochi holds what exceeds
	// that quota in the session, up to MaxInflight); one without flow
	// control that stops reading loses what does not fit (MessagesDropped).
	MaxPendingWrites int32
	// MaxPacketSize refuses larger packets. Default 256 KiB.
	MaxPacketSize uint32
	// Logger receives the broker's and mochi's logs. Default slog.Default().
	Logger *slog.Logger
}

// SessionFile is the session store's file name inside DataDir.
const SessionFile = "broker-sessions.db"

// Broker is an embedded MQTT broker. Create it with New and start it with Run.
type Broker struct {
	cfg  Config
	auth Authenticator
	ing  Ingester
	log  *slog.Logger

	ready chan struct{}
	mu    sync.Mutex
	srv   *mqtt.Server
	addrs map[string]string
	store *sessionStore
	ctx   context.Context

	stats counters
}

// New checks the configuration; Run starts the broker.
func New(cfg Config, auth Authenticator, ing Ingester) (*Broker, error) {
	if auth == nil {
		return nil, errors.New("broker: no authenticator")
	}
	if cfg.TLSAddr != "" && cfg.TLS == nil {
		return nil, errors.New("broker: TLS listener without a certificate")
	}
	if cfg.TCPAddr == "" && cfg.TLSAddr == "" && cfg.WSAddr == "" {
		return nil, errors.New("broker: no listener configured")
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 65535
	}
	if cfg.MaxPendingWrites <= 0 {
		cfg.MaxPendingWrites = 1024
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = 256 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Broker{
		cfg:   cfg,
		auth:  auth,
		ing:   ing,
		log:   cfg.Logger.With("component", "broker"),
		ready: make(chan struct{}),
		addrs: map[string]string{},
	}, nil
}

// LoadTLS loads a certificate and key (PEM files) for the TLS listeners.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("broker: TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}, nil
}

// Ready is closed once the listeners accept connections.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Addr returns the bound address of a listener ("tcp", "tls" or "ws") once
// Ready, or "" if it is not configured.
func (b *Broker) Addr(listener string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs[listener]
}

// Run serves until ctx ends, then disconnects every client, waits for their
// handlers and closes the session store.
func (b *Broker) Run(ctx context.Context) error {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumInflight = b.cfg.MaxInflight
	caps.MaximumClientWritesPending = b.cfg.MaxPendingWrites
	caps.MaximumPacketSize = b.cfg.MaxPacketSize
	caps.ReceiveMaximum = 1024
	// mochi's default session expiry cap is "forever"; a week keeps a
	// sleeping device's queue without keeping abandoned sessions for ever.
	caps.MaximumSessionExpiryInterval = 7 * 24 * 3600
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(quietHandler{b.cfg.Logger.Handler()}).With("component", "mochi"),
		InlineClient:           true,
		SysTopicResendInterval: 10,
	})
	b.mu.Lock()
	b.ctx = ctx
	b.mu.Unlock()

	if err := srv.AddHook(&hook{b: b, srv: srv}, nil); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if b.cfg.DataDir != "" {
		b.store = newSessionStore(filepath.Join(b.cfg.DataDir, SessionFile))
		if err := srv.AddHook(b.store, nil); err != nil {
			return err
		}
	}
	type lc struct {
		name string
		l    listeners.Listener
	}
	var ls []lc
	if b.cfg.TCPAddr != "" {
		ls = append(ls, lc{"tcp", listeners.NewTCP(listeners.Config{ID: "tcp", Address: b.cfg.TCPAddr})})
	}
	if b.cfg.TLSAddr != "" {
		ls = append(ls, lc{"tls", listeners.NewTCP(listeners.Config{ID: "tls", Address: b.cfg.TLSAddr, TLSConfig: b.cfg.TLS})})
	}
	if b.cfg.WSAddr != "" {
		ls = append(ls, lc{"ws", newWSListener("ws", b.cfg.WSAddr, b.cfg.TLS)})
	}
	for _, l := range ls {
		if err := srv.AddListener(l.l); err != nil {
			srv.Close()
			return fmt.Errorf("broker: listen %s %s: %w", l.name, l.l.Address(), err)
		}
		b.mu.Lock()
		b.addrs[l.name] = l.l.Address()
		b.mu.Unlock()
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return fmt.Errorf("broker: %w", err)
	}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	b.log.Info("mqtt broker listening", "tcp", b.Addr("tcp"), "tls", b.Addr("tls"), "ws", b.Addr("ws"), "sessions", b.cfg.DataDir != "")
	close(b.ready)

	<-ctx.Done()
	b.mu.Lock()
	b.srv = nil
	b.mu.Unlock()
	return srv.Close()
}

// ErrNotRunning is returned by Publish before Run is ready or after it ended.
var ErrNotRunning = errors.New("broker: not running")

// Publish sends a message from the broker itself (for example a command to
// loadwatch/v1/<id>/cmd, QoS 1): it bypasses the ACL and the Ingester, and
// is queued for persistent sessions that are offline.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	if srv == nil {
		return ErrNotRunning
	}
	if err := srv.Publish(topic, payload, retain, qos); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// Stats are the broker's counters, for metrics.
type Stats struct {
	ClientsConnected    int64 // now
	ClientsDisconnected int64 // persistent sessions now offline
	ClientsMaximum      int64
	Subscriptions       int64
	Retained            int64
	Inflight            int64 // QoS 1/2 messages held now
	MessagesReceived    int64
	MessagesSent        int64
	BytesReceived       int64
	BytesSent           int64
	// MessagesDropped counts messages dropped because a client's outbound
	// queue was full; InflightDropped because its inflight store was
	// (MaxInflight) or its packet ids were exhausted. Both should stay 0.
	MessagesDropped int64
	InflightDropped int64

	AuthFailures  int64          // refused CONNECTs
	ACLDenied     int64          // publishes and subscriptions refused by the ACL
	Ingested      int64          // messages the Ingester accepted
	Refused       map[byte]int64 // messages the Ingester refused, by reason code
	StoreFailures int64          // failed session store writes
}

// Stats returns a snapshot of the counters (zero before Run).
func (b *Broker) Stats() Stats {
	s := Stats{
		AuthFailures: b.stats.authFailures.Load(),
		ACLDenied:    b.stats.aclDenied.Load(),
		Ingested:     b.stats.ingested.Load(),
		Refused:      map[byte]int64{},
	}
	for code := range b.stats.refused {
		if n := b.stats.refused[code].Load(); n > 0 {
			s.Refused[byte(code)] = n
		}
	}
	if b.store != nil {
		s.StoreFailures = b.store.failures.Load()
	}
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	if srv == nil {
		return s
	}
	i := srv.Info.Clone()
	s.ClientsConnected = i.ClientsConnected
	s.ClientsDisconnected = i.ClientsDisconnected
	s.ClientsMaximum = i.ClientsMaximum
	s.Subscriptions = i.Subscriptions
	s.Retained = i.Retained
	s.Inflight = i.Inflight
	s.MessagesReceived = i.MessagesReceived
	s.MessagesSent = i.MessagesSent
	s.BytesReceived = i.BytesReceived
	s.BytesSent = i.BytesSent
	s.MessagesDropped = i.MessagesDropped
	s.InflightDropped = i.InflightDropped
	return s
}

type counters struct {
	authFailures, aclDenied, ingested atomic.Int64
	refused                           [256]atomic.Int64
}

// quietHandler demotes mochi's per-message "publish packet error" (logged
// at ERROR for every refused reading) to DEBUG: refusals are expected,
// counted in Stats and logged by the ingest hook.
type quietHandler struct{ slog.Handler }

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet error" && r.Level > slog.LevelDebug {
		if !q.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{q.Handler.WithAttrs(as)}
}

func (q quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{q.Handler.WithGroup(name)}
}
