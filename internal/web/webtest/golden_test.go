package webtest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/power"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenNow is the fixed clock of the golden tests (a Wednesday, noon UTC).
var goldenNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// feedGolden ingests 20 minutes of one device, one reading every 10 s:
// 10 minutes at 40 W, then 10 at 1500 W, a grid surge event, a status
// with meter link counters and a relay ack, all in process (no broker
// timing involved).
func feedGolden(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	const dev = "golden"
	topic := telemetry.Topic(dev, telemetry.ChannelTelemetry)
	wh := 100.0
	start := goldenNow.Add(-20 * time.Minute)
	for i := 0; i < 120; i++ {
		ts := start.Add(time.Duration(i) * 10 * time.Second)
		p := 40.0
		if i >= 60 {
			p = 1500
		}
		wh += p * 10 / 3600
		r := reading(ts, p)
		m := telemetry.Message{Epoch: "g1", Readings: []telemetry.Telemetry{{Seq: uint64(i + 1), ClockSynced: true, Reading: r,
			EnergyTotal: telemetryWh(wh), HasEnergyTotal: true, State: telemetry.StateActive}}}
		if code, err := e.Pipe.Ingest(ctx, dev, topic, m.AppendJSON(nil)); code != 0 {
			t.Fatalf("ingest %d: 0x%02x %v", i, code, err)
		}
	}
	ev := telemetry.Event{Kind: telemetry.EventGridSurge, Time: goldenNow.Add(-5 * time.Minute), ClockSynced: true, Detail: "V 230.0 -> 246.5 with P flat"}
	if code, err := e.Pipe.Ingest(ctx, dev, telemetry.Topic(dev, telemetry.ChannelEvent), ev.AppendJSON(nil)); code != 0 {
		t.Fatalf("event: 0x%02x %v", code, err)
	}
	st := telemetry.Status{State: telemetry.StatusOnline, Firmware: "0.9.0", Time: goldenNow.Add(-time.Minute), Link: map[uint8]telemetry.LinkCounters{
		1: {Requests: 1210, Replies: 1203, CRCErrors: 3, Timeouts: 2, Exceptions: 1, ShortFrames: 1, Resyncs: 2, Retries: 6, LastLatency: 112500 * time.Microsecond}}}
	if code, err := e.Pipe.Ingest(ctx, dev, telemetry.Topic(dev, telemetry.ChannelStatus), st.AppendJSON(nil)); code != 0 {
		t.Fatalf("status: 0x%02x %v", code, err)
	}
	ack := telemetry.CommandAck{ID: "c1", OK: true, State: "open"}
	if code, err := e.Pipe.Ingest(ctx, dev, telemetry.Topic(dev, telemetry.ChannelCmdAck), ack.AppendJSON(nil)); code != 0 {
		t.Fatalf("ack: 0x%02x %v", code, err)
	}
}

// normalise rewrites the values of the named keys (random ids, wall-clock
// times) so the answer is comparable, and indents it.
func normalise(t *testing.T, body []byte, keys ...string) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}
	red := map[string]bool{}
	for _, k := range keys {
		red[k] = true
	}
	var walk func(any) any
	walk = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k, v := range x {
				if red[k] && v != nil {
					x[k] = "<" + k + ">"
				} else {
					x[k] = walk(v)
				}
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		}
		return x
	}
	out, _ := json.MarshalIndent(walk(v), "", "  ")
	return append(out, '\n')
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n%s", name, p, got)
	}
}

func TestGoldenAPIAnswers(t *testing.T) {
	e := start(t, envOpts{openReads: true, now: func() time.Time { return goldenNow }, labels: true})
	feedGolden(t, e)
	if err := e.Reg.AddUser(context.Background(), "alice", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(path string) []byte {
		resp, err := c.Get(e.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	golden(t, "session-anonymous", normalise(t, get("/ui/api/session")))
	golden(t, "devices", normalise(t, get("/ui/api/v1/devices")))
	golden(t, "device", normalise(t, get("/ui/api/v1/devices/golden")))
	golden(t, "relays", normalise(t, get("/ui/api/relays")))
	golden(t, "events", normalise(t, get("/ui/api/v1/events?type=anomaly&limit=50&device=golden")))
	golden(t, "energy", normalise(t, get("/ui/api/devices/golden/energy")))
	q := url.Values{"query": {`loadwatch_power_watts{device="golden"}`}, "start": {f(goldenNow.Add(-20 * time.Minute))},
		"end": {f(goldenNow)}, "step": {"60"}}
	golden(t, "power-range", normalise(t, get("/ui/api/v1/query_range?"+q.Encode())))
	// A 30-day window at 1 s would be 2.6 million points: the dashboard
	// raises the step to 2000 points at most.
	q.Set("start", f(goldenNow.Add(-30*24*time.Hour)))
	q.Set("step", "1")
	var rr struct {
		Data struct {
			Result []struct {
				Values [][]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	json.Unmarshal(get("/ui/api/v1/query_range?"+q.Encode()), &rr)
	if len(rr.Data.Result) != 1 || len(rr.Data.Result[0].Values) > 2000 || len(rr.Data.Result[0].Values) == 0 {
		t.Errorf("30-day range: %d series, want one with at most 2000 points", len(rr.Data.Result))
	}

	// Signed in: labels and the retrain status.
	resp, err := c.Post(e.URL+"/login", "application/json", strings.NewReader(`{"user":"alice","password":"correct horse battery"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %v %v", err, resp.Status)
	}
	var sess struct{ CSRF string }
	json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	golden(t, "session-signed-in", normalise(t, get("/ui/api/session"), "csrf"))
	body := `{"device":"golden","from":"2026-11-25T11:41:00Z","to":"2026-11-25T11:49:00Z","label":"laptop"}`
	req, _ := http.NewRequest("POST", e.URL+"/ui/api/labels", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", sess.CSRF)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("add label: %d %s", resp.StatusCode, b)
	}
	golden(t, "label-created", normalise(t, b, "id", "created"))
	golden(t, "labels", normalise(t, get("/ui/api/labels?device=golden"), "id", "created"))
	golden(t, "retrain-idle", normalise(t, get("/ui/api/retrain"), "loaded_at"))
}

// f formats a time as the Unix seconds the query API takes.
func f(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func telemetryWh(wh float64) power.WattHours { return power.WattHours(wh) }

// TestSignInIdentities: the admin credential and dashboard users sign in;
// a device's token, a wrong password and an unknown user do not.
func TestSignInIdentities(t *testing.T) {
	e := start(t, envOpts{})
	ctx := context.Background()
	_, devTok, err := e.Reg.Add(ctx, registry.NewDevice{ID: "meter1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reg.AddUser(ctx, "alice", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, pass string
		want       int
	}{
		{"admin", e.AdminPass, 200},
		{"alice", "correct horse battery", 200},
		{"meter1", devTok, 401},
		{"admin", devTok, 401},
		{"alice", "wrong horse battery", 401},
		{"bob", "correct horse battery", 401},
		{"", "", 401},
	} {
		body, _ := json.Marshal(map[string]string{"user": c.user, "password": c.pass})
		resp, err := http.Post(e.URL+"/login", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("sign in as %q: %d, want %d", c.user, resp.StatusCode, c.want)
		}
		if c.want == 200 && len(resp.Cookies()) != 1 {
			t.Errorf("sign in as %q: no session cookie", c.user)
		}
	}
}
