package wiring

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/agent"
	"loadwatch/internal/dutycycle"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/mqttc/agentmqtt"
	"loadwatch/internal/power"
	"loadwatch/internal/registry"
	"loadwatch/internal/server"
	"loadwatch/internal/telemetry"
)

type relayJSON struct {
	State string    `json:"state"`
	Since time.Time `json:"since"`
}

// relays is GET /ui/api/relays, what the fleet page's Relay column shows.
func relays(t *testing.T, s *server.Server) map[string]relayJSON {
	t.Helper()
	resp, body := get(t, "http://"+s.HTTPAddr()+"/ui/api/relays")
	var out map[string]relayJSON
	if err := json.Unmarshal([]byte(body), &out); resp.StatusCode != 200 || err != nil {
		t.Fatalf("/ui/api/relays: %s %s %v", resp.Status, body, err)
	}
	return out
}

// TestStatusRelayShowsOnFleetPage: over the embedded broker, a device's
// retained status with relay "tripped" shows as tripped in the dashboard's
// relays API before any command ack or relay event; a newer status
// replaces it, and a status without a relay (an older agent) leaves its
// device unknown.
func TestStatusRelayShowsOnFleetPage(t *testing.T) {
	cfg := server.Config{DataDir: t.TempDir(), NoModel: true}
	if err := Apply(&cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	s := run(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(id string) *mqttc.Conn {
		_, tok, err := s.Registry().Add(ctx, registry.NewDevice{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		c, err := mqttc.Dial(ctx, mqttc.Config{Broker: "mqtt://" + s.MQTTAddr(), ClientID: id, Password: tok, CleanStart: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	status := func(c *mqttc.Conn, id string, st telemetry.Status) {
		st.State, st.Time = telemetry.StatusOnline, time.Now()
		code, err := c.Publish(ctx, mqttc.Message{Topic: telemetry.Topic(id, telemetry.ChannelStatus), Payload: st.AppendJSON(nil), QoS: 1, Retain: true})
		if err != nil || code != 0 {
			t.Fatalf("status of %s: 0x%02x %v", id, code, err)
		}
	}
	plug, old := dial("plug"), dial("old")
	defer plug.Close(context.Background())
	defer old.Close(context.Background())
	if rl := relays(t, s); len(rl) != 0 {
		t.Fatalf("relays before any status: %+v", rl)
	}
	// Ingest takes the status before the broker acknowledges it: the
	// state is there once Publish returns.
	status(plug, "plug", telemetry.Status{Firmware: "2", Relay: telemetry.RelayTripped})
	status(old, "old", telemetry.Status{Firmware: "1"})
	rl := relays(t, s)
	if rl["plug"].State != "tripped" || rl["plug"].Since.IsZero() {
		t.Fatalf("relays after a tripped status: %+v", rl)
	}
	if r, ok := rl["old"]; ok {
		t.Errorf("a status without a relay made old %+v", r)
	}
	status(plug, "plug", telemetry.Status{Firmware: "2", Relay: telemetry.RelayClosed})
	if rl := relays(t, s); rl["plug"].State != "closed" {
		t.Fatalf("relays after a closed status: %+v", rl)
	}
	// The server saw no ack and no relay event from these devices; the
	// events API shows the status events with their relay.
	var evs []map[string]any
	resp, body := get(t, "http://"+s.HTTPAddr()+"/api/v1/events")
	if err := json.Unmarshal([]byte(body), &evs); resp.StatusCode != 200 || err != nil {
		t.Fatalf("/api/v1/events: %s %s %v", resp.Status, body, err)
	}
	var seen []any
	for _, e := range evs {
		if e["type"] == "ack" || e["type"] == "anomaly" {
			t.Errorf("unexpected event %v", e)
		}
		if e["type"] == "status" && e["device"] == "plug" {
			seen = append(seen, e["relay"])
		}
	}
	if len(seen) != 2 || seen[0] != "tripped" || seen[1] != "closed" {
		t.Errorf("relay of plug's status events %v, want tripped, closed", seen)
	}
}

// nullRelay is a relay that switches nothing.
type nullRelay struct{}

func (nullRelay) Set(context.Context, bool) error { return nil }

// flatSensor is a meter on a steady 40 W load.
type flatSensor struct {
	mu sync.Mutex
	e  power.WattHours
}

func (s *flatSensor) Read(context.Context, uint8) (power.Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.e += 0.01
	return power.Reading{Time: time.Now(), Voltage: 230, Current: 0.19, Power: 40, Energy: s.e, Frequency: 50, PF: 0.9,
		Has: power.AllMeterFields &^ power.FieldAlarm}, nil
}

// TestAgentRelayShowsOnFleetPage: the real agent with a relay, connected
// over the embedded broker, is listed with its relay closed from its first
// status, with no command and no relay event.
func TestAgentRelayShowsOnFleetPage(t *testing.T) {
	cfg := server.Config{DataDir: t.TempDir(), NoModel: true}
	if err := Apply(&cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	s := run(t, cfg)
	_, tok, err := s.Registry().Add(context.Background(), registry.NewDevice{ID: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		ID:        "edge",
		Meters:    []agent.Meter{{Addr: 1, Relay: nullRelay{}}},
		Sensor:    &flatSensor{},
		Dialer:    agentmqtt.Dialer{Base: mqttc.Config{Broker: "mqtt://" + s.MQTTAddr(), ClientID: "edge", Password: tok, ConnectTimeout: 5 * time.Second}},
		OutboxDir: t.TempDir(),
		Duty:      dutycycle.Config{Wake: 100 * time.Millisecond, AlwaysOn: true},
		Firmware:  "test-1",
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for relays(t, s)["edge"].State != "closed" {
		if time.Now().After(deadline) {
			t.Fatalf("edge's relay not shown closed within 20 s: %+v", relays(t, s))
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Commands != 0 || st.Trips != 0 {
		t.Errorf("agent stats %+v", st)
	}
}
