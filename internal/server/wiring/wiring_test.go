package wiring

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/forest"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/registry"
	"loadwatch/internal/server"
	"loadwatch/internal/telemetry"
)

var (
	modelOnce sync.Once
	model     *forest.Model
	modelErr  error
)

// defaultModel trains the default model once per test binary.
func defaultModel(t *testing.T) *forest.Model {
	t.Helper()
	modelOnce.Do(func() { model, modelErr = server.TrainDefaultModel(context.Background()) })
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return model
}

// run starts a server with cfg until the test ends.
func run(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	cfg.HTTPAddr = "127.0.0.1:0"
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = "127.0.0.1:0"
	}
	cfg.Logger, cfg.Out = slog.New(slog.DiscardHandler), io.Discard
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("server: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server not ready")
	}
	return s
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestServerWithDashboardAndHASS: with Apply, the server serves the
// dashboard's pages at / and its API under /ui/api/ (open reads), and the
// Home Assistant bridge announces a device that reported over the
// embedded broker.
func TestServerWithDashboardAndHASS(t *testing.T) {
	dir := t.TempDir()
	if err := server.WriteModel(filepath.Join(dir, server.ModelFile), defaultModel(t)); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{DataDir: dir}
	if err := Apply(&cfg, Options{Tariff: "0.30 EUR; 22:00-06:00 0.18", TariffZone: "UTC", HASS: true, HASSPrefix: "ha"}); err != nil {
		t.Fatal(err)
	}
	s := run(t, cfg)
	base := "http://" + s.HTTPAddr()

	resp, body := get(t, base+"/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "fleet.js") {
		t.Errorf("/: %s %s %.200q", resp.Status, resp.Header.Get("Content-Type"), body)
	}

	// Home Assistant's side: the admin identity, subscribed to discovery.
	user, pass, err := registry.ReadAdminFile(s.AdminCredentialFile())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan mqttc.Message, 64)
	ha, err := mqttc.Dial(ctx, mqttc.Config{Broker: "mqtt://" + s.MQTTAddr(), ClientID: user + ":hass", Username: user, Password: pass,
		CleanStart: true, Subscribe: []string{"ha/#"}, OnMessage: func(m mqttc.Message) {
			select {
			case got <- m:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close(context.Background())

	_, tok, err := s.Registry().Add(ctx, registry.NewDevice{ID: "kitchen"})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := mqttc.Dial(ctx, mqttc.Config{Broker: "mqtt://" + s.MQTTAddr(), ClientID: "kitchen", Password: tok, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close(context.Background())
	payload := fmt.Sprintf(`{"v":1,"epoch":"e1","seq":1,"ts":%q,"clock_synced":true,"voltage":230.1,"current":0.2,"power":41.5,"energy_total":10,"state":"active"}`,
		time.Now().UTC().Format(telemetry.TimeLayout))
	if code, err := dev.Publish(ctx, mqttc.Message{Topic: telemetry.Topic("kitchen", telemetry.ChannelTelemetry), Payload: []byte(payload), QoS: 1}); err != nil || code != 0 {
		t.Fatalf("publish: 0x%02x %v", code, err)
	}

	want := "ha/sensor/loadwatch_kitchen/energy/config"
	for found := false; !found; {
		select {
		case m := <-got:
			if m.Topic != want {
				continue
			}
			var c map[string]any
			if err := json.Unmarshal(m.Payload, &c); err != nil || c["device_class"] != "energy" || c["state_class"] != "total_increasing" {
				t.Errorf("%s: %s", m.Topic, m.Payload)
			}
			found = true
		case <-ctx.Done():
			t.Fatalf("no %s from the bridge", want)
		}
	}

	// The dashboard's read API is open and lists the device.
	resp, body = get(t, base+"/ui/api/v1/devices")
	var devs []struct {
		ID    string   `json:"id"`
		Power *float64 `json:"power"`
	}
	if err := json.Unmarshal([]byte(body), &devs); resp.StatusCode != 200 || err != nil || len(devs) != 1 || devs[0].ID != "kitchen" || devs[0].Power == nil || *devs[0].Power != 41.5 {
		t.Errorf("/ui/api/v1/devices: %s %s", resp.Status, body)
	}
	resp, body = get(t, base+"/ui/api/relays")
	if resp.StatusCode != 200 {
		t.Errorf("/ui/api/relays: %s %s", resp.Status, body)
	}
}

// TestAuthReadNeedsSignIn: with AuthRead the dashboard's reads need a
// sign-in too.
func TestAuthReadNeedsSignIn(t *testing.T) {
	// No broker: stopping mochi while a client connects is a race inside
	// mochi v2.7.9 (Close against EstablishConnection) that -race reports.
	cfg := server.Config{DataDir: t.TempDir(), NoModel: true, AuthRead: true, MQTTAddr: "off"}
	if err := Apply(&cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	s := run(t, cfg)
	if resp, body := get(t, "http://"+s.HTTPAddr()+"/ui/api/v1/devices"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/ui/api/v1/devices without a sign-in: %s %s", resp.Status, body)
	}
}

// TestApplyRefusesBadOptions: bad flags fail before the server starts.
func TestApplyRefusesBadOptions(t *testing.T) {
	badAlerts := filepath.Join(t.TempDir(), "alerts.json")
	os.WriteFile(badAlerts, []byte(`{"targets":[{"name":"x","url":"ftp://nowhere"}],"bogus":1}`), 0o600)
	for name, o := range map[string]Options{
		"tariff":         {Tariff: "cheap"},
		"zone":           {TariffZone: "Mars/Olympus"},
		"alerts missing": {AlertsFile: filepath.Join(t.TempDir(), "none.json")},
		"alerts bad":     {AlertsFile: badAlerts},
	} {
		var cfg server.Config
		if err := Apply(&cfg, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if cfg.DashboardFunc != nil {
			t.Errorf("%s: half applied", name)
		}
	}
}
