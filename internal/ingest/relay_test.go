package ingest

import (
	"context"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/telemetry"
)

type statusNotes struct {
	mu sync.Mutex
	ev []Event
}

func (n *statusNotes) Notify(e Event) {
	if e.Type != EventStatus {
		return
	}
	n.mu.Lock()
	n.ev = append(n.ev, e)
	n.mu.Unlock()
}

func (n *statusNotes) last(t *testing.T) Event {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.ev) == 0 {
		t.Fatal("no status event")
	}
	return n.ev[len(n.ev)-1]
}

// TestStatusTellsRelay: the status event ingest sends its notifiers
// carries the relay state of a status that has one (the relay tracker
// takes it from there), none for a status without one, and a status with
// a relay that is not one of the four states is refused.
func TestStatusTellsRelay(t *testing.T) {
	n := &statusNotes{}
	p, err := New(Config{Store: &memStore{}, Notifier: n, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	topic := telemetry.Topic("pi7", telemetry.ChannelStatus)
	if c, err := p.Ingest(ctx, "pi7", topic, []byte(`{"v":1,"state":"online","firmware":"2","relay":"tripped"}`)); c != CodeOK {
		t.Fatal(err)
	}
	if e := n.last(t); e.Device != "pi7" || e.Status != "online" || e.Relay != "tripped" || !e.Time.Equal(t0) {
		t.Fatalf("status event %+v", e)
	}
	if c, err := p.Ingest(ctx, "pi7", topic, []byte(`{"v":1,"state":"online"}`)); c != CodeOK {
		t.Fatal(err)
	}
	if e := n.last(t); e.Relay != "" {
		t.Fatalf("status without a relay told relay %q", e.Relay)
	}
	before := len(n.ev)
	if c, _ := p.Ingest(ctx, "pi7", topic, []byte(`{"v":1,"state":"online","relay":"on"}`)); c != CodePayloadFormat {
		t.Fatalf("bad relay: code 0x%02x", c)
	}
	if len(n.ev) != before {
		t.Fatal("a refused status was told")
	}
	// The last will (seen by the status watcher) says nothing of the relay.
	p.ObserveStatus(topic, []byte(`{"v":1,"state":"offline"}`), true)
	if e := n.last(t); e.Status != "offline" || e.Relay != "" {
		t.Fatalf("will event %+v", e)
	}
}
