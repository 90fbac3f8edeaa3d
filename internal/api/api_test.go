package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/ingest"
	"loadwatch/internal/power"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

type fakeDevices []ingest.Device

func (f fakeDevices) Devices() []ingest.Device { return f }
func (f fakeDevices) Device(id string) (ingest.Device, bool) {
	for _, d := range f {
		if d.ID == id {
			return d, true
		}
	}
	return ingest.Device{}, false
}

type fakeRegistry []registry.Device

func (f fakeRegistry) List(context.Context) ([]registry.Device, error) { return f, nil }

type fakeTokens map[string][]registry.Scope

func (f fakeTokens) CheckAPIToken(_ context.Context, secret string, need registry.Scope) (registry.APIToken, error) {
	sc, ok := f[secret]
	if !ok {
		return registry.APIToken{}, registry.ErrBadCredentials
	}
	t := registry.APIToken{Scopes: sc}
	if !t.Has(need) {
		return t, registry.ErrForbidden
	}
	return t, nil
}

type fakePub struct {
	mu   sync.Mutex
	msgs []string
	fail error
}

func (p *fakePub) Publish(topic string, payload []byte, _ bool, _ byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	p.msgs = append(p.msgs, topic+" "+string(payload))
	return nil
}

func newTestAPI(t *testing.T, pub *fakePub) (*httptest.Server, *Commands, *ingest.Bus) {
	bus := ingest.NewBus(10)
	cmds := NewCommands(pub, func() time.Time { return t0 })
	rd := power.Reading{Time: t0, Power: 42, Has: power.FieldPower}
	devs := fakeDevices{
		{ID: "on", LastSeen: t0.Add(-5 * time.Second), Reading: rd, HasReading: true, Class: "laptop", Confidence: 0.9, Classified: true,
			Link:   map[uint8]telemetry.LinkCounters{1: {Requests: 100, Replies: 97, CRCErrors: 2, Timeouts: 1, Retries: 3, LastLatency: 112500 * time.Microsecond}},
			LinkAt: t0.Add(-time.Minute)},
		{ID: "sleepy", LastSeen: t0.Add(-5 * time.Minute)},
		{ID: "gone", LastSeen: t0.Add(-time.Second), Status: telemetry.StatusOffline, StatusAt: t0},
	}
	a, err := New(Config{
		Devices: devs, Registry: fakeRegistry{{ID: "new"}, {ID: "on", Firmware: "1.2.3"}},
		Tokens: fakeTokens{"rw": {registry.ScopeRead, registry.ScopeWrite}, "ro": {registry.ScopeRead}},
		Bus:    bus, Commands: cmds, Now: func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv, cmds, bus
}

func TestDevicesStates(t *testing.T) {
	srv, _, _ := newTestAPI(t, &fakePub{})
	resp, err := http.Get(srv.URL + "/api/v1/devices")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw []map[string]any
	json.NewDecoder(resp.Body).Decode(&raw)
	got := map[string]map[string]any{}
	for _, d := range raw {
		got[d["id"].(string)] = d
	}
	want := map[string][2]any{"on": {"online", true}, "sleepy": {"asleep", true}, "gone": {"offline", false}, "new": {"offline", false}}
	for id, w := range want {
		d := got[id]
		if d == nil || d["state"] != w[0] || d["online"] != w[1] {
			t.Errorf("%s: %v, want state %v online %v", id, d, w[0], w[1])
		}
	}
	on := got["on"]
	if on["power"] != 42.0 || on["class"] != "laptop" || on["firmware"] != "1.2.3" || on["last_seen"] != "2026-11-29T11:59:55Z" || on["registered"] != true {
		t.Errorf("on = %v", on)
	}
	if got["sleepy"]["power"] != nil {
		t.Errorf("a device without readings has power %v, want null", got["sleepy"]["power"])
	}
	// Link counters by meter address, absent when unknown.
	link, _ := on["link"].(map[string]any)
	m1, _ := link["1"].(map[string]any)
	if len(link) != 1 || m1["requests"] != 100.0 || m1["crc_errors"] != 2.0 || m1["timeouts"] != 1.0 || m1["other"] != 0.0 ||
		m1["last_latency_ms"] != 112.5 || on["link_time"] != "2026-11-29T11:59:00Z" {
		t.Errorf("on link = %v at %v", on["link"], on["link_time"])
	}
	if _, ok := got["sleepy"]["link"]; ok {
		t.Errorf("a device without counters has link %v, want none", got["sleepy"]["link"])
	}
	if _, ok := got["sleepy"]["link_time"]; ok {
		t.Errorf("link_time without counters")
	}
}

func TestCommandAuthAndAck(t *testing.T) {
	pub := &fakePub{}
	srv, cmds, _ := newTestAPI(t, pub)
	post := func(tok, body string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/devices/on/commands", strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, c := range []struct {
		tok, body string
		code      int
	}{
		{"", `{"kind":"relay_on"}`, 401},
		{"bad", `{"kind":"relay_on"}`, 401},
		{"ro", `{"kind":"relay_on"}`, 403},
		{"rw", `{"kind":"explode"}`, 400},
		{"rw", `{"kind":"set_alarm","args":{"watts":-1}}`, 400},
		{"rw", `{"kind":"relay_on"}`, 202},
	} {
		resp := post(c.tok, c.body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("token %q body %s: %s, want %d", c.tok, c.body, resp.Status, c.code)
		}
	}
	if len(pub.msgs) != 1 || !strings.HasPrefix(pub.msgs[0], "loadwatch/v1/on/cmd {") {
		t.Fatalf("published %q", pub.msgs)
	}
	sent, err := telemetry.DecodeCommand([]byte(strings.SplitN(pub.msgs[0], " ", 2)[1]), telemetry.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// An ack from another device does not count; the device's own does.
	cmds.Notify(ingest.Event{Type: ingest.EventAck, Device: "sleepy", Time: t0, Ack: &telemetry.CommandAck{ID: sent.ID, OK: true}})
	if c, _ := cmds.Get(sent.ID); c.Status != CommandSent {
		t.Fatalf("ack from another device accepted: %+v", c)
	}
	cmds.Notify(ingest.Event{Type: ingest.EventAck, Device: "on", Time: t0, Ack: &telemetry.CommandAck{ID: sent.ID, OK: false, Error: "no relay"}})
	resp, err := http.Get(srv.URL + "/api/v1/commands/" + sent.ID)
	if err != nil {
		t.Fatal(err)
	}
	var cj CommandJSON
	json.NewDecoder(resp.Body).Decode(&cj)
	resp.Body.Close()
	if cj.Status != CommandFailed || cj.Error != "no relay" {
		t.Errorf("command %+v", cj)
	}
	pub.fail = errors.New("broker down")
	if resp := post("rw", `{"kind":"relay_on"}`); resp.StatusCode != 503 {
		t.Errorf("publish failure: %s", resp.Status)
	}
}

func TestEventsFilter(t *testing.T) {
	srv, _, bus := newTestAPI(t, &fakePub{})
	bus.Notify(ingest.Event{Type: ingest.EventAnomaly, Device: "a", Kind: "load_on", Time: t0})
	bus.Notify(ingest.Event{Type: ingest.EventReading, Device: "a", Time: t0})
	bus.Notify(ingest.Event{Type: ingest.EventStatus, Device: "b", Status: "online", Time: t0})
	var evs []ingest.Event
	resp, err := http.Get(srv.URL + "/api/v1/events?device=a")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&evs)
	resp.Body.Close()
	if len(evs) != 1 || evs[0].Kind != "load_on" {
		t.Errorf("events %+v", evs)
	}
}

func TestMetricsLint(t *testing.T) {
	reg := NewRegistry(fakeIngest{}, ingest.NewBus(1), func() time.Time { return t0 })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"loadwatch_ingest_rejected_total", "loadwatch_power_watts", "loadwatch_energy_joules_total", "loadwatch_class_confidence_ratio"} {
		if !names[n] {
			t.Errorf("%s missing from /metrics", n)
		}
	}
}

type fakeIngest struct{}

func (fakeIngest) Devices() []ingest.Device {
	return []ingest.Device{{ID: "d", LastSeen: t0, HasReading: true, Reading: power.Reading{Power: 5, Has: power.FieldPower}, Energy: 1, HasEnergy: true, Class: "x", Confidence: 1, Classified: true}}
}
func (fakeIngest) Device(string) (ingest.Device, bool) { return ingest.Device{}, false }
func (fakeIngest) Rejected() map[ingest.RejectKey]uint64 {
	return map[ingest.RejectKey]uint64{{Device: "d", Reason: "duplicate"}: 2}
}
func (fakeIngest) Stats() ingest.Stats { return ingest.Stats{} }
