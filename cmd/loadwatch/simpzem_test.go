package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/pzemcli"
)

// The simulator prints a device path that the pzem tool can read three
// meters from, and stops when its context ends.
func TestSimPzemServesReadableMeters(t *testing.T) {
	pr, pw := io.Pipe()
	var log bytes.Buffer
	c := &simPzemCmd{PTY: true, Addr: 4, Meters: 3, Seed: 3, Schedule: "0s:solder",
		LatencyMin: time.Millisecond, LatencyMax: 2 * time.Millisecond, out: pw, log: &log}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	path, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	path = strings.TrimSpace(path)
	if !strings.HasPrefix(path, "/dev/") {
		t.Fatalf("first line %q is not a device path", path)
	}
	// The schedule switches the iron on at start; the meter shows it after
	// its averaging lag (settled within 3.2 s).
	time.Sleep(4 * time.Second)
	var out bytes.Buffer
	rd := &pzemcli.ReadCmd{Link: pzemcli.Link{Port: path, Timeout: time.Second, Retries: 2, JSON: true, Out: &out},
		Addr: []int{4, 5, 6}, Count: 1}
	if err := rd.Run(t.Context()); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want three meters, got:\n%s", out.String())
	}
	for i, l := range lines {
		var m struct {
			Address int
			Voltage float64
			Power   float64
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		// A soldering station heating up is tens of watts at mains voltage.
		if m.Address != 4+i || m.Voltage < 200 || m.Voltage > 260 || m.Power < 5 {
			t.Fatalf("meter %d: %s", 4+i, l)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim pzem did not stop with its context")
	}
	if !strings.Contains(log.String(), "3 meter(s) at address 4..6") {
		t.Fatalf("log: %s", log.String())
	}
}

func TestSimPzemRejectsBadFlags(t *testing.T) {
	for _, c := range []simPzemCmd{
		{PTY: false, Addr: 1, Meters: 1},
		{PTY: true, Addr: 246, Meters: 3},
		{PTY: true, Addr: 0, Meters: 1},
		{PTY: true, Addr: 1, Meters: 1, Faults: "crc=2"},
		{PTY: true, Addr: 1, Meters: 1, Schedule: "0s:toaster"},
	} {
		if err := c.Run(t.Context()); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
