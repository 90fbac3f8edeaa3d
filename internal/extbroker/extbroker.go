// Package extbroker runs ingest behind an external MQTT v5 broker
// (Mosquitto, EMQX, HiveMQ...) instead of the embedded one. It subscribes
// to the loadwatch topics through a shared subscription
// ($share/<group>/...), so several `loadwatch serve` replicas split the
// messages between them, and it acknowledges each QoS 1 message only after
// ingest has stored (or permanently refused) it: paho.golang's manual
// acknowledgement. A message whose ingest failed for a retryable reason is
// not acknowledged; the connection is dropped so that the broker hands it
// out again on reconnect (persistent session).
//
// With an external broker the device's PUBACK comes from the broker, not
// from loadwatch: a refusal is counted here and the message is dropped, but
// the device never learns of it. See docs/SERVER.md for the broker settings
// loss-free operation needs.
package extbroker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// Ingester takes one message synchronously (*ingest.Pipeline implements
// it). reason 0 means stored; 0x99 and 0x87 are permanent refusals; any
// other reason or an error with reason 0 is retried.
type Ingester interface {
	Ingest(ctx context.Context, clientID, topic string, payload []byte) (reason byte, err error)
}

// Config configures a Client. Zero fields mean the defaults in brackets.
type Config struct {
	// URL is mqtt://HOST:PORT (tcp://) or mqtts://HOST:PORT (tls://, ssl://).
	URL      string
	ClientID string // required, stable per replica so its session survives restarts
	Username string
	Password string
	CAFile   string // PEM roots for mqtts [system roots]
	// Group is the shared-subscription group ["loadwatch"].
	Group string
	// Filters are the topic filters shared in Group [the loadwatch v1
	// telemetry, event, status and cmd/ack topics and Tasmota's
	// tele/+/SENSOR].
	Filters []string
	// SessionExpiry is how long the broker keeps this replica's session
	// (and its unacknowledged messages) after a disconnect [1 h].
	SessionExpiry time.Duration
	// RetryDelay is the pause before reconnecting after a retryable
	// failure [1 s].
	RetryDelay time.Duration
	Logger     *slog.Logger
}

// DefaultFilters are the topics ingest takes.
var DefaultFilters = []string{
	"loadwatch/v1/+/telemetry",
	"loadwatch/v1/+/event",
	"loadwatch/v1/+/status",
	"loadwatch/v1/+/cmd/ack",
	"tele/+/SENSOR",
}

// Client is the external-broker ingest client.
type Client struct {
	cfg Config
	ing Ingester
	log *slog.Logger
	u   *url.URL
	tls *tls.Config

	ready     chan struct{}
	readyOnce sync.Once

	mu sync.Mutex
	cm *autopaho.ConnectionManager

	acked, refused, retried atomic.Int64
}

// New checks cfg.
func New(cfg Config, ing Ingester) (*Client, error) {
	if ing == nil {
		return nil, errors.New("extbroker: no ingester")
	}
	if cfg.ClientID == "" {
		return nil, errors.New("extbroker: empty client id")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("extbroker: broker URL: %w", err)
	}
	c := &Client{cfg: cfg, ing: ing, u: u, ready: make(chan struct{})}
	switch u.Scheme {
	case "mqtt", "tcp":
		u.Scheme = "mqtt"
	case "mqtts", "tls", "ssl":
		u.Scheme = "mqtts"
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("extbroker: CA file: %w", err)
			}
			pool = x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("extbroker: CA file %s: no certificate", cfg.CAFile)
			}
		}
		c.tls = &tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	default:
		return nil, fmt.Errorf("extbroker: broker URL %q: want mqtt:// or mqtts://", cfg.URL)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("extbroker: broker URL %q has no port", cfg.URL)
	}
	if c.cfg.Group == "" {
		c.cfg.Group = "loadwatch"
	}
	if len(c.cfg.Filters) == 0 {
		c.cfg.Filters = DefaultFilters
	}
	if c.cfg.SessionExpiry <= 0 {
		c.cfg.SessionExpiry = time.Hour
	}
	if c.cfg.RetryDelay <= 0 {
		c.cfg.RetryDelay = time.Second
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.Default()
	}
	c.log = c.cfg.Logger.With("component", "extbroker")
	return c, nil
}

// Ready is closed once the first subscription is in place.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Stats are the client's counters.
type Stats struct {
	Acked   int64 // messages stored and acknowledged
	Refused int64 // messages permanently refused (acknowledged and dropped)
	Retried int64 // retryable failures (not acknowledged; redelivered)
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{Acked: c.acked.Load(), Refused: c.refused.Load(), Retried: c.retried.Load()}
}

// permanent reports whether a reason code can never succeed on retry.
func permanent(code byte) bool { return code == 0x99 || code == 0x87 }

// Run connects, subscribes and ingests until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	for {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.log.Warn("external broker session ended; reconnecting", "error", err, "in", c.cfg.RetryDelay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.cfg.RetryDelay):
		}
	}
}

// session runs one connection manager until a retryable ingest failure
// (which drops it so that the broker redelivers) or ctx's end.
func (c *Client) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 1)
	var broken atomic.Bool
	subs := make([]paho.SubscribeOptions, len(c.cfg.Filters))
	for i, f := range c.cfg.Filters {
		subs[i] = paho.SubscribeOptions{Topic: "$share/" + c.cfg.Group + "/" + f, QoS: 1}
	}
	handler := func(pr paho.PublishReceived) (bool, error) {
		p := pr.Packet
		if broken.Load() {
			return true, nil // not acknowledged: the broker resends it after the reconnect
		}
		code, err := c.ing.Ingest(sctx, "", p.Topic, p.Payload)
		switch {
		case code == 0 && err == nil:
			c.acked.Add(1)
		case permanent(code):
			c.refused.Add(1)
			c.log.Debug("message refused", "topic", p.Topic, "reason", code, "error", err)
		default:
			c.retried.Add(1)
			broken.Store(true)
			select {
			case failed <- fmt.Errorf("ingest of %s failed (reason 0x%02x): %w", p.Topic, code, err):
			default:
			}
			return true, nil
		}
		if err := pr.Client.Ack(p); err != nil && !errors.Is(err, paho.ErrManualAcknowledgmentDisabled) {
			c.log.Warn("ack failed", "topic", p.Topic, "error", err)
		}
		return true, nil
	}
	up := make(chan struct{}, 1)
	ac := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{c.u},
		TlsCfg:                        c.tls,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(c.cfg.SessionExpiry / time.Second),
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff:              autopaho.NewConstantBackoff(c.cfg.RetryDelay),
		ConnectUsername:               c.cfg.Username,
		ConnectPassword:               []byte(c.cfg.Password),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			// Subscribe on every connection: harmless when the session
			// already has the subscriptions.
			go func() {
				sa, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs})
				if err == nil {
					for i, rc := range sa.Reasons {
						if rc >= 0x80 {
							err = fmt.Errorf("subscribe %s refused: reason 0x%02x", subs[min(i, len(subs)-1)].Topic, rc)
						}
					}
				}
				if err != nil {
					select {
					case failed <- err:
					default:
					}
					return
				}
				c.log.Info("subscribed to the external broker", "broker", c.u.Redacted(), "group", c.cfg.Group, "client", c.cfg.ClientID)
				select {
				case up <- struct{}{}:
				default:
				}
			}()
		},
		OnConnectError: func(err error) { c.log.Warn("external broker connect failed", "broker", c.u.Redacted(), "error", err) },
		ClientConfig: paho.ClientConfig{
			ClientID:                   c.cfg.ClientID,
			EnableManualAcknowledgment: true,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){handler},
		},
	}
	if c.tls != nil {
		ac.AttemptConnection = func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			d := tls.Dialer{Config: c.tls}
			return d.DialContext(ctx, "tcp", u.Host)
		}
	}
	cm, err := autopaho.NewConnection(sctx, ac)
	if err != nil {
		return fmt.Errorf("extbroker: %w", err)
	}
	c.mu.Lock()
	c.cm = cm
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cm = nil
		c.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			cm.Disconnect(dctx)
			dcancel()
			<-cm.Done()
			return nil
		case <-up:
			c.readyOnce.Do(func() { close(c.ready) })
		case err := <-failed:
			// Drop the connection without acknowledging, so that the
			// broker redelivers what is not acknowledged.
			cancel()
			<-cm.Done()
			return err
		case <-cm.Done():
			return errors.New("connection manager stopped")
		}
	}
}

// ErrNotConnected is returned by Publish while no connection is up.
var ErrNotConnected = errors.New("extbroker: not connected")

// Publish sends a message (commands to devices) and waits for the
// broker's acknowledgement at QoS 1.
func (c *Client) Publish(topic string, payload []byte, retain bool, qos byte) error {
	c.mu.Lock()
	cm := c.cm
	c.mu.Unlock()
	if cm == nil {
		return ErrNotConnected
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cm.AwaitConnection(ctx); err != nil {
		return fmt.Errorf("extbroker: %w", err)
	}
	resp, err := cm.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: qos, Retain: retain})
	if err != nil {
		return fmt.Errorf("extbroker: publish %s: %w", topic, err)
	}
	if resp != nil && resp.ReasonCode >= 0x80 {
		return fmt.Errorf("extbroker: publish %s refused: reason 0x%02x", topic, resp.ReasonCode)
	}
	return nil
}
