package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/registry"

	"github.com/alecthomas/kong"
)

func TestServeDefaults(t *testing.T) {
	var c cli
	p, err := kong.New(&c, kong.Exit(func(int) { t.Fatal("exit") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse([]string{"serve"}); err != nil {
		t.Fatal(err)
	}
	cfg := c.Serve.config()
	if cfg.HTTPAddr != "127.0.0.1:8080" || cfg.MQTTAddr != "127.0.0.1:1883" || cfg.ExternalBroker != "" || cfg.Retention != 15*24*time.Hour {
		t.Errorf("defaults %+v", cfg)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeRuns starts `loadwatch serve` on free ports, waits for the API,
// checks that it serves the dashboard and that `loadwatch backup` takes a
// restorable backup through it while it runs, and stops it with its
// context.
func TestServeRuns(t *testing.T) {
	dir := t.TempDir()
	cmd := serveCmd{HTTP: freeAddr(t), MQTT: freeAddr(t), Data: dir, Retention: time.Hour, BrokerGroup: "loadwatch"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + cmd.HTTP + "/api/v1/devices")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "[]\n" {
				t.Errorf("devices: %s %q", resp.Status, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, f := range []string{"admin-credentials.json", "api-token.json", "model.json", "registry.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("first start did not create %s: %v", f, err)
		}
	}
	resp, err := http.Get("http://" + cmd.HTTP + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "<html") {
		t.Errorf("/: %s %.200q", resp.Status, b)
	}

	// A device added while serve runs, then a live backup and a restore.
	bctx := context.Background()
	reg, err := registry.Open(bctx, registry.Path(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Add(bctx, registry.NewDevice{ID: "kitchen"}); err != nil {
		t.Fatal(err)
	}
	reg.Close()
	tmp := t.TempDir()
	var msg bytes.Buffer
	if err := (&backupCmd{Data: dir, Out: filepath.Join(tmp, "b.tar"), Server: "http://" + cmd.HTTP, out: &msg}).Run(bctx); err != nil {
		t.Fatalf("live backup: %v\n%s", err, msg.String())
	}
	if !strings.Contains(msg.String(), "asking") {
		t.Errorf("backup did not go through the server: %s", msg.String())
	}
	restored := filepath.Join(tmp, "restored")
	if err := (&restoreCmd{Data: restored, Backup: filepath.Join(tmp, "b.tar"), out: &msg}).Run(bctx); err != nil {
		t.Fatalf("restore: %v\n%s", err, msg.String())
	}
	rreg, err := registry.Open(bctx, registry.Path(restored), nil)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := rreg.List(bctx)
	rreg.Close()
	if err != nil || len(devs) != 1 || devs[0].ID != "kitchen" {
		t.Errorf("restored registry: %v %v", devs, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestServeIntegrationFlags(t *testing.T) {
	var c cli
	p, err := kong.New(&c, kong.Exit(func(int) { t.Fatal("exit") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse([]string{"serve", "--hass", "--hass-prefix", "ha", "--tariff", "0.30 EUR; 22:00-06:00 0.18", "--tariff-zone", "UTC"}); err != nil {
		t.Fatal(err)
	}
	if f := c.Serve.integrationFlags; !f.HASS || f.HASSPrefix != "ha" || f.Tariff != "0.30 EUR; 22:00-06:00 0.18" || f.TariffZone != "UTC" {
		t.Errorf("flags %+v", f)
	}
	if _, err := p.Parse([]string{"demo", "--hass", "--tariff", "0.25"}); err != nil || !c.Demo.HASS || c.Demo.Tariff != "0.25" {
		t.Errorf("demo flags: %v %+v", err, c.Demo.integrationFlags)
	}
	// A bad tariff stops serve before it starts anything.
	bad := serveCmd{HTTP: "off", MQTT: "off", Data: t.TempDir(), integrationFlags: integrationFlags{Tariff: "cheap"}}
	if err := bad.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "tariff") {
		t.Errorf("bad tariff: %v", err)
	}
}

func TestServeConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serve.json")
	os.WriteFile(path, []byte(`{"http": "0.0.0.0:9090", "device_rate": 5, "mqtt": "127.0.0.1:1999"}`), 0o600)
	var c cli
	p, err := kong.New(&c, kong.Exit(func(int) { t.Fatal("exit") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse([]string{"serve", "--config", path, "--mqtt", "127.0.0.1:2000"}); err != nil {
		t.Fatal(err)
	}
	cfg := c.Serve.config()
	if cfg.HTTPAddr != "0.0.0.0:9090" || cfg.DeviceRate != 5 || cfg.MQTTAddr != "127.0.0.1:2000" {
		t.Errorf("config file + flags gave %+v", cfg)
	}
	var c2 cli
	p2, _ := kong.New(&c2, kong.Exit(func(int) { t.Fatal("exit") }))
	if _, err := p2.Parse([]string{"serve", "--config", filepath.Join(t.TempDir(), "missing.json")}); err == nil {
		t.Error("missing config file accepted")
	}
}
