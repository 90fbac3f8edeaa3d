package broker

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestSessionStoreWritesOnlyForStoredSessions: connecting and disconnecting
// clients that keep no session costs no session-store write, including
// after a restart; a persistent session and the command queued for it
// survive the restart (the index of stored clients is loaded at start), and
// a later clean start still deletes it.
func TestSessionStoreWritesOnlyForStoredSessions(t *testing.T) {
	e := newEnv(t)
	cfg := Config{TCPAddr: "127.0.0.1:0", DataDir: t.TempDir()}
	b, stop := start(t, cfg, e.reg, &recorder{})
	addr := b.Addr("tcp")
	offline := func(b *Broker) {
		waitFor(t, "clients gone", func() bool { return b.Stats().ClientsConnected == 0 })
	}
	// Clean, non-persistent connections (what a device that does not
	// sleep uses): no write on CONNECT or DISCONNECT.
	for range 3 {
		for _, id := range []string{"pi", "other"} {
			c := mustDial(t, addr, id, e.tokens[id], connOpts{clean: true})
			_ = c.c.Disconnect(&paho.Disconnect{})
		}
	}
	offline(b)
	if w := b.store.writes.Load(); w != 0 {
		t.Fatalf("%d session-store writes for clients that keep no session, want 0", w)
	}

	// A persistent session with a subscription and a queued command.
	o := connOpts{clean: true, expiry: 3600}
	pi := mustDial(t, addr, "pi", e.tokens["pi"], o)
	if code := pi.subscribe(t, "loadwatch/v1/pi/cmd"); code != 1 {
		t.Fatalf("subscribe: %#x", code)
	}
	_ = pi.c.Disconnect(&paho.Disconnect{})
	offline(b)
	if err := b.Publish("loadwatch/v1/pi/cmd", []byte(`{"id":"1"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	if !b.store.hasStored("pi") || b.store.hasStored("other") {
		t.Fatalf("index: pi %v, other %v", b.store.hasStored("pi"), b.store.hasStored("other"))
	}
	stop()

	// After a restart the index comes from disk.
	b2, stop2 := start(t, cfg, e.reg, &recorder{})
	addr = b2.Addr("tcp")
	if !b2.store.hasStored("pi") || b2.store.hasStored("other") {
		t.Fatalf("index after restart: pi %v, other %v", b2.store.hasStored("pi"), b2.store.hasStored("other"))
	}
	c := mustDial(t, addr, "other", e.tokens["other"], connOpts{clean: true})
	_ = c.c.Disconnect(&paho.Disconnect{})
	offline(b2)
	if w := b2.store.writes.Load(); w != 0 {
		t.Fatalf("%d writes after the restart for a client without a session", w)
	}
	o.clean = false
	pi = mustDial(t, addr, "pi", e.tokens["pi"], o)
	pi.expect(t, "loadwatch/v1/pi/cmd", `{"id":"1"}`)
	_ = pi.c.Disconnect(&paho.Disconnect{})
	offline(b2)

	// A clean start without expiry ends the session: deleted on disk and
	// in the index, so nothing is queued for pi any more.
	pi = mustDial(t, addr, "pi", e.tokens["pi"], connOpts{clean: true})
	_ = pi.c.Disconnect(&paho.Disconnect{})
	offline(b2)
	if b2.store.hasStored("pi") {
		t.Fatal("pi still indexed after a clean start")
	}
	if err := b2.Publish("loadwatch/v1/pi/cmd", []byte(`{"id":"2"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	stop2()
	b3, _ := start(t, cfg, e.reg, &recorder{})
	if b3.store.hasStored("pi") {
		t.Fatal("pi indexed after the restart: its session was not deleted on disk")
	}
	clients, err := b3.store.StoredClients()
	if err != nil || len(clients) != 0 {
		t.Fatalf("stored clients %+v %v", clients, err)
	}
	if s := b3.Stats(); s.StoreFailures != 0 {
		t.Fatalf("store failures: %d", s.StoreFailures)
	}
}
