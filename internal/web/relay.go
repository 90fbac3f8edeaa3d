package web

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"loadwatch/internal/ingest"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"
)

// RelayState is what the dashboard knows of one device's relay.
type RelayState struct {
	State string    `json:"state"` // closed, open, tripped or latched
	Since time.Time `json:"since"` // when loadwatch learnt it
}

// RelayTracker follows relay states from the agents' status messages
// (their optional relay member, sent at every connection and at every
// change), command acknowledgements and relay events (the telemetry
// carries no relay field). It implements ingest.Notifier: put it among the
// pipeline's notifiers. A device that has sent no status with a relay, and
// was never commanded or tripped since the server started, is unknown (a
// device without a relay, or an older agent).
type RelayTracker struct {
	mu sync.Mutex
	m  map[string]RelayState
}

// NewRelayTracker returns an empty tracker.
func NewRelayTracker() *RelayTracker { return &RelayTracker{m: map[string]RelayState{}} }

// Notify implements ingest.Notifier; it never blocks.
func (t *RelayTracker) Notify(e ingest.Event) {
	switch {
	case e.Type == ingest.EventStatus && e.Relay != "":
		t.set(e.Device, e.Relay, e.Time)
	case e.Type == ingest.EventAck && e.Ack != nil && e.Ack.OK && e.Ack.State != "":
		t.set(e.Device, e.Ack.State, e.Time)
	case e.Type == ingest.EventAnomaly && e.Source == ingest.SourceDevice:
		switch telemetry.EventKind(e.Kind) {
		case telemetry.EventRelayTrip:
			t.set(e.Device, "tripped", e.Time)
		case telemetry.EventRelayLatch:
			t.set(e.Device, "latched", e.Time)
		case telemetry.EventRelayReset, telemetry.EventRelayRecover:
			t.set(e.Device, "closed", e.Time)
		}
	}
}

func (t *RelayTracker) set(dev, state string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.m[dev]; ok && at.Before(old.Since) {
		return
	}
	t.m[dev] = RelayState{State: state, Since: at.UTC()}
}

// Get returns a device's relay state.
func (t *RelayTracker) Get(dev string) (RelayState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[dev]
	return s, ok
}

// All returns a copy of every known relay state.
func (t *RelayTracker) All() map[string]RelayState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]RelayState, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

// Registry is what RegistryLogin needs (*registry.Registry implements it).
type Registry interface {
	Authenticate(ctx context.Context, user, token string) (registry.Principal, error)
	CheckPassword(ctx context.Context, name, password string) error
}

// RegistryLogin signs in the admin identity (user "admin" with the
// password from admin-credentials.json) or a dashboard user added with
// the CLI. A device's own credential does not sign in.
type RegistryLogin struct{ Reg Registry }

// CheckLogin implements Authenticator.
func (l RegistryLogin) CheckLogin(ctx context.Context, user, password string) error {
	if user == "" || password == "" {
		return ErrBadLogin
	}
	if user == registry.AdminName {
		p, err := l.Reg.Authenticate(ctx, user, password)
		if errors.Is(err, registry.ErrBadCredentials) || err == nil && !p.Admin {
			return fmt.Errorf("web: %w", ErrBadLogin)
		}
		return err
	}
	err := l.Reg.CheckPassword(ctx, user, password)
	if errors.Is(err, registry.ErrBadCredentials) {
		return fmt.Errorf("web: %w", errors.Join(ErrBadLogin, err))
	}
	return err
}
