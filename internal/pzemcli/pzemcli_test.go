package pzemcli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
	"loadwatch/internal/pzem/pzemtest"
)

type steady power.Reading

func (s steady) At(time.Time) power.Reading { return power.Reading(s) }

// virtual starts n meters (addresses 1..n) on a pseudo-terminal.
func virtual(t *testing.T, n int) (string, *pzemtest.Bus) {
	t.Helper()
	var ms []*pzemtest.Meter
	for i := range n {
		m, err := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: uint8(i + 1), Energy: 1234,
			Source: steady{Voltage: 230, Current: power.Amperes(i + 1), Power: power.Watts(207 * (i + 1)), Frequency: 50,
				Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	bus, err := pzemtest.NewBus(pzemtest.BusOpts{LatencyMin: time.Millisecond, LatencyMax: 2 * time.Millisecond}, ms...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pzemtest.ServePTY(t.Context(), bus)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Path(), bus
}

// run parses args as the binaries do and runs the command.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var c struct {
		Pzem Cmd `cmd:""`
	}
	var out bytes.Buffer
	k, err := kong.New(&c, kong.Name("loadwatch"), kong.Exit(func(int) { t.Fatal("kong exit") }),
		kong.BindTo(context.Background(), (*context.Context)(nil)))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := k.Parse(append([]string{"pzem"}, args...))
	if err != nil {
		return "", err
	}
	for _, l := range []*Link{&c.Pzem.Read.Link, &c.Pzem.Scan.Link, &c.Pzem.SetAddress.Link, &c.Pzem.SetAlarm.Link, &c.Pzem.ResetEnergy.Link, &c.Pzem.Calibrate.Link} {
		l.Out = &out
	}
	err = kctx.Run()
	return out.String(), err
}

func TestReadJSONSeveralMeters(t *testing.T) {
	path, _ := virtual(t, 3)
	out, err := run(t, "read", "--port", path, "--addr", "1,2,3", "--json", "--count", "2", "--interval", "10ms")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 {
		t.Fatalf("want 6 lines (3 meters x 2 cycles), got:\n%s", out)
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		a := float64(i%3 + 1)
		want := map[string]any{"address": a, "voltage": 230.0, "current": a, "power": 207 * a, "energy": 1234.0, "frequency": 50.0, "pf": 0.9, "alarm": false}
		for k, v := range want {
			if m[k] != v {
				t.Fatalf("line %d: %s = %v, want %v\n%s", i, k, m[k], v, line)
			}
		}
		link := m["link"].(map[string]any)
		if link["requests"] != float64(i/3+1) || link["crc_errors"] != 0.0 {
			t.Fatalf("link counters %v", link)
		}
	}
}

func TestCommandsAgainstVirtualMeter(t *testing.T) {
	path, bus := virtual(t, 2)
	out, err := run(t, "read", "--port", path, "--addr", "2")
	if err != nil || !strings.Contains(out, "address 2: 230.0 V  2.000 A  414.0 W  1234 Wh  50.0 Hz  pf 0.90  alarm off") {
		t.Fatalf("read: %v\n%s", err, out)
	}
	out, err = run(t, "scan", "--port", path, "--to", "5", "--scan-timeout", "100ms", "--json")
	if err != nil || strings.TrimSpace(out) != `{"found":[1,2],"from":1,"to":5}` {
		t.Fatalf("scan: %v\n%s", err, out)
	}
	if out, err = run(t, "set-alarm", "--port", path, "--addr", "2", "300"); err != nil || !strings.Contains(out, "alarm threshold 300.0 W") {
		t.Fatalf("set-alarm: %v\n%s", err, out)
	}
	if out, err = run(t, "read", "--port", path, "--addr", "2", "--json"); err != nil || !strings.Contains(out, `"alarm":true`) {
		t.Fatalf("alarm after threshold: %v\n%s", err, out)
	}
	if out, err = run(t, "reset-energy", "--port", path, "--addr", "1"); err != nil {
		t.Fatalf("reset-energy: %v\n%s", err, out)
	}
	if out, err = run(t, "read", "--port", path, "--addr", "1", "--json"); err != nil || !strings.Contains(out, `"energy":0,`) {
		t.Fatalf("energy after reset: %v\n%s", err, out)
	}
	if out, err = run(t, "set-address", "--port", path, "--addr", "2", "9"); err != nil || !strings.Contains(out, "address 2 is now 9") {
		t.Fatalf("set-address: %v\n%s", err, out)
	}
	if bus.Meters()[1].Addr() != 9 {
		t.Fatal("meter address unchanged")
	}
	if _, err = run(t, "calibrate", "--port", path); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("calibrate without --yes: %v", err)
	}
}

func TestClearErrors(t *testing.T) {
	path, _ := virtual(t, 1)
	missing := filepath.Join(t.TempDir(), "ttyUSB7")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"read", "--port", missing}, missing + " does not exist"},
		{[]string{"read", "--port", path, "--addr", "300"}, "address 300 out of range 1..247"},
		{[]string{"read", "--port", path, "--addr", "0"}, "address 0 out of range 1..247"},
		{[]string{"set-address", "--port", path, "248"}, "address 248 out of range 1..247"},
		{[]string{"read", "--port", path, "--addr", "3", "--timeout", "100ms", "--retries", "1"}, "1 of 1 reads failed"},
		{[]string{"set-alarm", "--port", path, "70000"}, "out of range 0..65535"},
	}
	for _, tt := range tests {
		out, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want %q", tt.args, err, tt.want)
		}
		if tt.want == "1 of 1 reads failed" && !strings.Contains(out, "no reply from address 3 (is the meter powered from AC?)") {
			t.Errorf("missing meter: output %q", out)
		}
	}
	var ae *pzem.AddressError
	if _, err := run(t, "read", "--port", path, "--addr", "999"); !errors.As(err, &ae) {
		t.Errorf("address error not typed: %v", err)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("a missing port was created")
	}
}
