package hass

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/broker"
	"loadwatch/internal/ingest"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"

	"github.com/eclipse/paho.golang/paho"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestDiscoveryGolden(t *testing.T) {
	var buf bytes.Buffer
	for _, m := range Discovery("kitchen.2", "1.2.3", "homeassistant", "loadwatch/hass") {
		var v any
		if err := json.Unmarshal(m.Payload, &v); err != nil {
			t.Fatal(err)
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		buf.WriteString(m.Topic + "\n")
		buf.Write(b)
		buf.WriteString("\n")
	}
	p := filepath.Join("testdata", "discovery.golden.txt")
	if *update {
		os.WriteFile(p, buf.Bytes(), 0o644)
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("discovery differs from %s:\n%s", p, buf.String())
	}
}

// units are the units Home Assistant accepts per sensor device class (the
// subset loadwatch uses; "" means no unit).
var units = map[string][]string{
	"power":        {"W", "kW"},
	"voltage":      {"V", "mV"},
	"current":      {"A", "mA"},
	"power_factor": {"", "%"},
	"frequency":    {"Hz", "kHz"},
	"energy":       {"Wh", "kWh", "MWh"},
	"":             {""},
}

var (
	topicRE   = regexp.MustCompile(`^homeassistant/(sensor|switch)/[a-z0-9_]+/[a-z0-9_]+/config$`)
	idRE      = regexp.MustCompile(`^[a-z0-9_]+$`)
	fieldRE   = regexp.MustCompile(`value_json\.([a-z_]+)`)
	stateKeys = map[string]bool{"power": true, "voltage": true, "current": true, "pf": true, "frequency": true, "energy_kwh": true, "class": true, "confidence": true, "relay": true}
)

// checkConfig checks one discovery message against Home Assistant's
// schema rules for the MQTT sensor and switch platforms.
func checkConfig(t *testing.T, device, topic string, payload []byte) map[string]any {
	t.Helper()
	m := topicRE.FindStringSubmatch(topic)
	if m == nil {
		t.Fatalf("discovery topic %q", topic)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	str := func(k string) string { s, _ := c[k].(string); return s }
	for _, k := range []string{"name", "unique_id", "object_id", "state_topic", "value_template", "availability_topic"} {
		if str(k) == "" {
			t.Errorf("%s: no %s", topic, k)
		}
	}
	if !idRE.MatchString(str("object_id")) {
		t.Errorf("%s: object_id %q", topic, str("object_id"))
	}
	dev, _ := c["device"].(map[string]any)
	if ids, _ := dev["identifiers"].([]any); len(ids) != 1 || dev["name"] == "" {
		t.Errorf("%s: device block %v", topic, dev)
	}
	for _, f := range fieldRE.FindAllStringSubmatch(str("value_template"), -1) {
		if !stateKeys[f[1]] {
			t.Errorf("%s: template reads %q, which the state never has", topic, f[1])
		}
	}
	switch m[1] {
	case "sensor":
		dc := str("device_class")
		ok := false
		for _, u := range units[dc] {
			ok = ok || u == str("unit_of_measurement")
		}
		if !ok {
			t.Errorf("%s: unit %q not valid for device_class %q", topic, str("unit_of_measurement"), dc)
		}
		if sc := str("state_class"); dc == "energy" && sc != "total_increasing" || dc != "" && dc != "energy" && sc != "measurement" {
			t.Errorf("%s: device_class %q with state_class %q", topic, dc, sc)
		}
	case "switch":
		if str("command_topic") != telemetry.Topic(device, telemetry.ChannelCmd) {
			t.Errorf("%s: command_topic %q", topic, str("command_topic"))
		}
		for k, want := range map[string]telemetry.CommandKind{"payload_on": telemetry.CmdRelayOn, "payload_off": telemetry.CmdRelayOff} {
			cmd, err := telemetry.DecodeCommand([]byte(str(k)), telemetry.Limits{})
			if err != nil || cmd.Kind != want {
				t.Errorf("%s: %s %q is not a valid %s command: %v", topic, k, str(k), want, err)
			}
		}
		if str("state_on") != "closed" || str("state_off") != "open" {
			t.Errorf("%s: states %q/%q", topic, str("state_on"), str("state_off"))
		}
	}
	return c
}

type noIngest struct{}

func (noIngest) Ingest(context.Context, string, string, []byte) (byte, error) { return 0, nil }

type pubFunc func(string, []byte, bool, byte) error

func (f pubFunc) Publish(t string, p []byte, r bool, q byte) error { return f(t, p, r, q) }

// TestBridgeOverBroker runs the bridge against the embedded broker and
// checks what a Home Assistant-like subscriber receives.
func TestBridgeOverBroker(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	reg, err := registry.Open(ctx, registry.Path(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	cred, _, err := reg.EnsureAdmin(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	_, pass, _ := registry.ReadAdminFile(cred.File)
	br, err := broker.New(broker.Config{TCPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, reg, noIngest{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); br.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-br.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("broker not ready")
	}

	// A subscriber like Home Assistant (admin identity: it may read and
	// command every device).
	nc, err := net.Dial("tcp", br.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string][]byte{}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
		mu.Lock()
		got[pr.Packet.Topic] = append([]byte(nil), pr.Packet.Payload...)
		mu.Unlock()
		return true, nil
	}}})
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	if _, err := c.Connect(cctx, &paho.Connect{ClientID: registry.AdminName + ":hass", Username: registry.AdminName, UsernameFlag: true, Password: []byte(pass), PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "homeassistant/#", QoS: 1}, {Topic: "loadwatch/hass/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	b := New(Config{Pub: br, MinInterval: 50 * time.Millisecond})
	go b.Run(ctx)
	now := time.Now()
	f := func(v float64) *float64 { return &v }
	for _, dev := range []string{"kitchen", "pi.3"} {
		b.Notify(ingest.Event{Type: ingest.EventStatus, Device: dev, Time: now, Status: "online", Firmware: "1.2.3"})
		b.Notify(ingest.Event{Type: ingest.EventReading, Device: dev, Time: now, Power: f(41.5), Voltage: f(231), Current: f(0.19), PF: f(0.94), Frequency: f(50.01),
			EnergyJoules: f(7.2e6), Class: "laptop", Confidence: f(0.9)})
	}
	b.Notify(ingest.Event{Type: ingest.EventAck, Device: "kitchen", Time: now, Ack: &telemetry.CommandAck{ID: "x", OK: true, State: "open"}})
	b.Notify(ingest.Event{Type: ingest.EventReading, Device: "bad/id", Time: now, Power: f(1)})

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		st := string(got["loadwatch/hass/kitchen/state"])
		mu.Unlock()
		if n >= 2*8+2*2 && strings.Contains(st, `"relay":"open"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d messages, kitchen state %s", n, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, dev := range []string{"kitchen", "pi.3"} {
		n := 0
		oid := "loadwatch_" + objectID(dev)
		for topic, p := range got {
			if strings.HasPrefix(topic, "homeassistant/") && strings.Contains(topic, "/"+oid+"/") {
				n++
				c := checkConfig(t, dev, topic, p)
				if c["device_class"] == "energy" && c["unit_of_measurement"] != "kWh" {
					t.Errorf("energy unit %v", c["unit_of_measurement"])
				}
			}
		}
		if n != 8 {
			t.Errorf("%s: %d discovery configs, want 8 (6 measurements, class, relay)", dev, n)
		}
		if a := string(got["loadwatch/hass/"+dev+"/availability"]); a != "online" {
			t.Errorf("%s availability %q", dev, a)
		}
		var s State
		if err := json.Unmarshal(got["loadwatch/hass/"+dev+"/state"], &s); err != nil {
			t.Fatal(err)
		}
		if s.EnergyKWh == nil || *s.EnergyKWh != 2 || s.Class != "laptop" || s.Power == nil || *s.Power != 41.5 {
			t.Errorf("%s state %+v", dev, s)
		}
	}
	for topic := range got {
		if strings.Contains(topic, "bad") {
			t.Errorf("an invalid device id was announced: %s", topic)
		}
	}
}

func BenchmarkNotifyReading(b *testing.B) {
	br := New(Config{Pub: pubFunc(func(string, []byte, bool, byte) error { return nil })})
	v := 12.5
	e := ingest.Event{Type: ingest.EventReading, Device: "kitchen", Power: &v, Voltage: &v, EnergyJoules: &v, Class: "x", Confidence: &v}
	for b.Loop() {
		br.Notify(e)
	}
}
