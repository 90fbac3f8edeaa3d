package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"loadwatch/internal/power"
)

func TestParseThreshold(t *testing.T) {
	for _, c := range []struct {
		in   string
		w    power.Watts
		pct  float64
		fail bool
	}{
		{"", 0, 0, false},
		{"1W", 1, 0, false},
		{"1", 1, 0, false},
		{"2.5w", 2.5, 0, false},
		{"1W,0.5%", 1, 0.5, false},
		{" 5W , 2% ", 5, 2, false},
		{"0%", 0, -1, false}, // no relative part
		{"0W", 0, 0, true},
		{"-1W", 0, 0, true},
		{"xW", 0, 0, true},
		{"-2%", 0, 0, true},
		{"1kW", 0, 0, true},
	} {
		w, pct, err := parseThreshold(c.in)
		if (err != nil) != c.fail || w != c.w || pct != c.pct {
			t.Errorf("parseThreshold(%q) = %v, %v, %v; want %v, %v, fail=%v", c.in, w, pct, err, c.w, c.pct, c.fail)
		}
	}
}

func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{"1W", "1W,0.5%", "0%", "", "1e3W", "NaN%", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, pct, err := parseThreshold(s)
		if err != nil {
			return
		}
		if w < 0 || pct < -1 || w != w || pct != pct {
			t.Fatalf("parseThreshold(%q) accepted %v, %v", s, w, pct)
		}
	})
}

func BenchmarkParseThreshold(b *testing.B) {
	for b.Loop() {
		if _, _, err := parseThreshold("1W,0.5%"); err != nil {
			b.Fatal(err)
		}
	}
}

func parseRun(t *testing.T, args ...string) *runCmd {
	t.Helper()
	var c cli
	p, err := kong.New(&c, kong.Name("loadwatch-agent"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(append([]string{"run"}, args...)); err != nil {
		t.Fatal(err)
	}
	return &c.Run
}

func TestConfigFileFlagsEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	yaml := "broker: mqtt://broker.lan:1883\ndevice: kitchen\nwake: 10s\nmax-power: 2000\naddr: [1, 2]\nalways-on: true\nthreshold: 2W\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOADWATCH_DEVICE", "from-env")
	c := parseRun(t, "--config", file, "--wake", "3s")
	if err := c.mergeFile(); err != nil {
		t.Fatal(err)
	}
	if c.Broker != "mqtt://broker.lan:1883" || c.Device != "from-env" || c.Wake != 3*time.Second ||
		c.MaxPower != 2000 || len(c.Addr) != 2 || !c.AlwaysOn || c.Threshold != "2W" {
		t.Fatalf("merged %+v: want broker and limits from the file, device from env, wake from the flag", c)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("wkae: 5s\n"), 0o600)
	c = parseRun(t, "--config", bad)
	if err := c.mergeFile(); err == nil || !strings.Contains(err.Error(), "wkae") {
		t.Fatalf("unknown key: err = %v", err)
	}
	c = parseRun(t, "--config", filepath.Join(dir, "missing.yaml"))
	if err := c.mergeFile(); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestRunRefusesBadInvocation(t *testing.T) {
	for name, args := range map[string][]string{
		"no broker":     {"--sim", "--device", "a"},
		"no source":     {"--broker", "mqtt://127.0.0.1:1883", "--device", "a"},
		"bad addr":      {"--sim", "--broker", "mqtt://127.0.0.1:1883", "--device", "a", "--addr", "300"},
		"bad broker":    {"--sim", "--broker", "http://x:1", "--device", "a"},
		"bad threshold": {"--sim", "--broker", "mqtt://127.0.0.1:1883", "--device", "a", "--threshold", "fast"},
		"bad device":    {"--sim", "--broker", "mqtt://127.0.0.1:1883", "--device", "a/b", "--outbox", t.TempDir()},
	} {
		c := parseRun(t, args...)
		if err := c.Run(t.Context()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
