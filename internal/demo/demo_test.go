package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/relay"
)

// syncBuffer is an io.Writer safe for the demo's printer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDemo runs the demo on ephemeral ports until the test ends.
func startDemo(t *testing.T) (*Demo, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	d, err := New(Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		Out: out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("demo did not stop within 30 s of its context ending")
		}
	})
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("demo ended before it was ready: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("demo not ready after 2 minutes")
	}
	return d, out
}

type deviceJSON struct {
	ID    string   `json:"id"`
	Power *float64 `json:"power"`
	Class string   `json:"class"`
	State string   `json:"state"`
	Link  map[string]struct {
		Requests  uint64  `json:"requests"`
		Replies   uint64  `json:"replies"`
		LatencyMS float64 `json:"last_latency_ms"`
	} `json:"link"`
}

type eventJSON struct {
	Type   string `json:"type"`
	Device string `json:"device"`
	Kind   string `json:"kind"`
	Source string `json:"source"`
	Detail string `json:"detail"`
}

func getJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Logf("GET %s: %v", url, err)
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Logf("GET %s: %s", url, resp.Status)
		return false
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return true
}

// TestDemoDevicesWithData starts the demo and waits until the devices API
// lists the four agents, each with a power reading, a class and the link
// counters of its meter (the real pzem driver's, over the virtual bus). The
// deadline is generous (a loaded CI machine); docs/DEMO.md has the timing
// seen here.
func TestDemoDevicesWithData(t *testing.T) {
	d, out := startDemo(t)
	ready := time.Now()
	base := "http://" + d.Server().HTTPAddr()
	want := map[string]bool{}
	for _, a := range Scenario() {
		want[a.ID] = true
	}
	var devs []deviceJSON
	deadline := time.Now().Add(60 * time.Second)
	for {
		devs = nil
		if getJSON(t, base+"/api/v1/devices", &devs) {
			n := 0
			for _, dv := range devs {
				l, ok := dv.Link["1"]
				if want[dv.ID] && dv.Power != nil && dv.Class != "" && ok && l.Requests > 0 && l.Replies <= l.Requests && l.LatencyMS > 0 {
					n++
				}
			}
			if n == len(want) && len(devs) == len(want) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the devices are %+v", devs)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("four devices with power, class and link counters %v after ready: %+v", time.Since(ready).Round(100*time.Millisecond), devs)
	for _, frag := range []string{"http://" + d.Server().HTTPAddr() + "/", "admin credential", d.Server().AdminCredentialFile(), "API token"} {
		if !strings.Contains(out.String(), frag) {
			t.Errorf("the banner lacks %q:\n%s", frag, out.String())
		}
	}
	for _, a := range Scenario() {
		st, ok := d.AgentStats(a.ID)
		if !ok || st.Published == 0 {
			t.Errorf("agent %s: %+v", a.ID, st)
		}
	}
}

// TestDemoScenarioEvents waits for the scenario's first-minute events: a
// load-on with a voltage sag of at least 2 V (office), a grid surge
// (bench) and a relay trip (garage), each reported by its device, and
// checks that garage's simulated relay opened and closed again.
func TestDemoScenarioEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("the scenario's events take about half a minute (run without -short)")
	}
	d, out := startDemo(t)
	ready := time.Now()
	base := "http://" + d.Server().HTTPAddr()
	type want struct {
		device, kind string
		check        func(eventJSON) bool
	}
	wants := []want{
		{"office", "load_on", func(e eventJSON) bool { return sagOf(e.Detail) >= 2 }},
		{"bench", "grid_surge", nil},
		{"garage", "relay_trip", nil},
	}
	found := map[int]time.Duration{}
	deadline := time.Now().Add(90 * time.Second)
	var evs []eventJSON
	for len(found) < len(wants) {
		evs = nil
		if getJSON(t, base+"/api/v1/events?type=anomaly&limit=1000", &evs) {
			for i, w := range wants {
				if _, ok := found[i]; ok {
					continue
				}
				for _, e := range evs {
					if e.Device == w.device && e.Kind == w.kind && e.Source == "device" && (w.check == nil || w.check(e)) {
						found[i] = time.Since(ready).Round(time.Second)
						t.Logf("%s %s after %v: %s", e.Device, e.Kind, found[i], e.Detail)
						break
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s found %v of %+v; events: %+v\noutput:\n%s", found, wants, evs, out.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The load followed the open relay: garage reports (almost) nothing.
	deadline = time.Now().Add(30 * time.Second)
	for {
		var devs []deviceJSON
		if getJSON(t, base+"/api/v1/devices", &devs) {
			var p *float64
			for _, dv := range devs {
				if dv.ID == "garage" {
					p = dv.Power
				}
			}
			if p != nil && *p < 5 && !d.Relay("garage").Closed() {
				t.Logf("garage after the trip: %.1f W", *p)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("garage's power did not drop after the trip; relay closed=%v", d.Relay("garage").Closed())
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The relay recovered 20 s after the trip.
	deadline = time.Now().Add(60 * time.Second)
	for {
		ch := d.Relay("garage").Changes()
		if i := slices.IndexFunc(ch, func(c relay.Change) bool { return !c.Closed }); i >= 0 && i+1 < len(ch) && ch[i+1].Closed {
			t.Logf("garage relay: opened %s, closed %s", ch[i].Time.Format(time.TimeOnly), ch[i+1].Time.Format(time.TimeOnly))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("garage relay changes: %+v", ch)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "relay_trip") {
		t.Errorf("the printed events lack the trip:\n%s", out.String())
	}
}

// sagOf reads "V -3.2 V" out of a load_on detail "P +812.0 W, V -3.2 V"
// and returns the sag (3.2), or 0.
func sagOf(detail string) float64 {
	_, v, ok := strings.Cut(detail, "V ")
	if !ok {
		return 0
	}
	var x float64
	if _, err := fmt.Sscanf(v, "%f", &x); err != nil || x >= 0 {
		return 0
	}
	return -x
}
