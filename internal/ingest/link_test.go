package ingest

import (
	"context"
	"testing"
	"time"

	"loadwatch/internal/telemetry"
)

// TestStatusKeepsLinkCounters: the device table keeps the link counters
// of the newest status that has them; a status without them (a last will,
// an agent whose sensor has none) leaves them; an invalid link object is
// refused like any bad payload and changes nothing.
func TestStatusKeepsLinkCounters(t *testing.T) {
	now := t0
	p, err := New(Config{Store: &memStore{}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	topic := telemetry.Topic("pi7", telemetry.ChannelStatus)
	if d, _ := p.Device("pi7"); d.Link != nil {
		t.Fatalf("link before any status: %+v", d.Link)
	}
	if c, err := p.Ingest(ctx, "pi7", topic, []byte(`{"v":1,"state":"online"}`)); c != CodeOK {
		t.Fatal(err)
	}
	if d, _ := p.Device("pi7"); d.Link != nil || !d.LinkAt.IsZero() {
		t.Fatalf("link from a status without one: %+v", d.Link)
	}
	first := now
	if c, err := p.Ingest(ctx, "pi7", topic, []byte(`{"v":1,"state":"online","link":{"1":{"requests":10,"replies":8,"crc_errors":1,"timeouts":1,"last_latency_ms":112.5}}}`)); c != CodeOK {
		t.Fatal(err)
	}
	want := telemetry.LinkCounters{Requests: 10, Replies: 8, CRCErrors: 1, Timeouts: 1, LastLatency: 112500 * time.Microsecond}
	if d, _ := p.Device("pi7"); d.Link[1] != want || !d.LinkAt.Equal(first) {
		t.Fatalf("link %+v at %v", d.Link, d.LinkAt)
	}
	// The last will has no counters: the known ones stay.
	now = now.Add(time.Minute)
	p.ObserveStatus(topic, []byte(`{"v":1,"state":"offline"}`), false)
	d, _ := p.Device("pi7")
	if d.Status != telemetry.StatusOffline || d.Link[1] != want || !d.LinkAt.Equal(first) {
		t.Fatalf("after the will: %s %+v at %v", d.Status, d.Link, d.LinkAt)
	}
	// A bad link object is refused and changes nothing.
	if c, _ := p.Ingest(ctx, "pi7", topic, []byte(`{"v":1,"state":"online","link":{"1":{"requests":1,"timeouts":2}}}`)); c != CodePayloadFormat {
		t.Fatalf("inconsistent counters: code 0x%02x", c)
	}
	if d, _ := p.Device("pi7"); d.Link[1] != want {
		t.Fatalf("after a refusal: %+v", d.Link)
	}
	// Newer counters replace the old ones, through either path.
	now = now.Add(time.Minute)
	p.ObserveStatus(topic, []byte(`{"v":1,"state":"offline","link":{"1":{"requests":20,"replies":18,"crc_errors":1,"timeouts":1}}}`), false)
	if d, _ := p.Device("pi7"); d.Link[1].Requests != 20 || !d.LinkAt.Equal(now) {
		t.Fatalf("goodbye counters: %+v at %v", d.Link, d.LinkAt)
	}
}
