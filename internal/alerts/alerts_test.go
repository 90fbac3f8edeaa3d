package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/ingest"
)

func TestParse(t *testing.T) {
	good := `{"targets":[{"name":"hook","url":"https://example.com/hook"},{"name":"phone","url":"https://ntfy.sh/my-topic","format":"ntfy","kinds":["relay_trip"],"headers":{"Authorization":"Bearer x"}}],
		"rules":[{"name":"kettle_left_on","device":"kitchen","field":"power","above":1800,"for":"10m"}],"every":"30s","burst":2}`
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Targets) != 2 || time.Duration(c.Rules[0].For) != 10*time.Minute || time.Duration(c.Every) != 30*time.Second || *c.Rules[0].Above != 1800 {
		t.Errorf("parsed %+v", c)
	}
	for _, bad := range []string{
		`{"targets":[{"name":"a","url":"ftp://x/y"}]}`,
		`{"targets":[{"name":"a","url":"https://x/"},{"name":"a","url":"https://y/"}]}`,
		`{"targets":[{"name":"a","url":"https://x/","format":"xml"}]}`,
		`{"targets":[{"name":"a","url":"https://x/","headers":{"X":"a\r\nB: c"}}]}`,
		`{"rules":[{"name":"r","field":"power"}]}`,
		`{"rules":[{"name":"r","field":"temperature","above":1}]}`,
		`{"rules":[{"name":"r","field":"power","above":1,"for":"-1m"}]}`,
		`{"every":"soon"}`,
		`{"unknown":1}`,
		`[]`,
	} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("Parse(%s) = %v, want ErrConfig", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"targets":[{"name":"a","url":"https://x/"}],"rules":[{"name":"r","field":"pf","below":0.5,"for":"1m"}]}`))
	f.Add([]byte(`{"every":"1s","burst":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		if _, err := New(c); err != nil {
			t.Fatalf("a parsed configuration is refused by New: %v", err)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	cfg := []byte(`{"targets":[{"name":"a","url":"https://x/"},{"name":"b","url":"https://ntfy.sh/t","format":"ntfy"}],"rules":[{"name":"r","field":"power","above":3000,"for":"5m"}]}`)
	for b.Loop() {
		Parse(cfg)
	}
}

// recorder is a webhook receiver.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
	fail bool
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.body = append(r.body, string(b))
	fail := r.fail
	r.mu.Unlock()
	code := 200
	if fail {
		code = 500
	}
	return &http.Response{StatusCode: code, Status: http.StatusText(code), Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}}, nil
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	resp, _ := r.RoundTrip(req)
	w.WriteHeader(resp.StatusCode)
}

func (r *recorder) n() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.body) }

func anomaly(dev, kind string, at time.Time) ingest.Event {
	return ingest.Event{Type: ingest.EventAnomaly, Device: dev, Kind: kind, Source: ingest.SourceDevice, Time: at, Detail: "V 230.0 -> 262.0"}
}

// TestFormatsOverHTTP delivers to real HTTP receivers in both formats.
func TestFormatsOverHTTP(t *testing.T) {
	jr, nr := &recorder{}, &recorder{}
	js, ns := httptest.NewServer(jr), httptest.NewServer(nr)
	defer js.Close()
	defer ns.Close()
	d, err := New(Config{Targets: []Target{{Name: "json", URL: js.URL + "/hook", Headers: map[string]string{"Authorization": "Bearer s3cret"}},
		{Name: "ntfy", URL: ns.URL + "/topic", Format: FormatNtfy, Kinds: []string{"overvoltage"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	d.Notify(anomaly("kitchen", "overvoltage", at))
	d.Notify(anomaly("kitchen", "load_on", at))    // not a default kind
	d.Notify(anomaly("kitchen", "grid_surge", at)) // json only
	d.Notify(ingest.Event{Type: ingest.EventStatus, Device: "pi", Status: "offline", Time: at})
	deadline := time.Now().Add(10 * time.Second)
	for jr.n() < 3 || nr.n() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("json got %d, ntfy got %d", jr.n(), nr.n())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if jr.n() != 3 || nr.n() != 1 {
		t.Errorf("json got %d (want 3), ntfy got %d (want 1)", jr.n(), nr.n())
	}
	var a Alert
	if err := json.Unmarshal([]byte(jr.body[0]), &a); err != nil {
		t.Fatal(err)
	}
	if a.Source != "loadwatch" || a.Device != "kitchen" || a.Kind != "overvoltage" || a.Severity != "critical" || !a.Time.Equal(at) || a.Message != "V 230.0 -> 262.0" {
		t.Errorf("json alert %+v", a)
	}
	if jr.reqs[0].Header.Get("Authorization") != "Bearer s3cret" || jr.reqs[0].Header.Get("Content-Type") != "application/json" {
		t.Errorf("json headers %v", jr.reqs[0].Header)
	}
	h := nr.reqs[0].Header
	if nr.body[0] != "V 230.0 -> 262.0" || h.Get("Title") != "kitchen: overvoltage" || h.Get("Priority") != "5" || !strings.Contains(h.Get("Tags"), "overvoltage") {
		t.Errorf("ntfy %q %v", nr.body[0], h)
	}
}

// TestRateLimitPerDevice runs on fake time: a burst passes, the rest of
// one device is held back (and counted in its next alert) while another
// device is not affected.
func TestRateLimitPerDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		d, err := New(Config{Targets: []Target{{Name: "hook", URL: "http://hook.invalid/"}}, Every: Duration(time.Minute), Burst: 2,
			Client: &http.Client{Transport: rec}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go d.Run(ctx)
		for i := 0; i < 5; i++ {
			d.Notify(anomaly("noisy", "grid_surge", time.Now()))
		}
		d.Notify(anomaly("quiet", "grid_surge", time.Now()))
		synctest.Wait()
		if rec.n() != 3 || d.Stats().RateLimited != 3 {
			t.Fatalf("delivered %d (want 2 noisy + 1 quiet), limited %d (want 3)", rec.n(), d.Stats().RateLimited)
		}
		time.Sleep(time.Minute)
		d.Notify(anomaly("noisy", "grid_surge", time.Now()))
		synctest.Wait()
		if rec.n() != 4 {
			t.Fatalf("after a minute: %d deliveries", rec.n())
		}
		var a Alert
		json.Unmarshal([]byte(rec.body[3]), &a)
		if a.Suppressed != 3 {
			t.Errorf("suppressed %d, want 3", a.Suppressed)
		}
	})
}

// TestRules fires a rule after its hold time and resolves it.
func TestRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		limit := 1800.0
		d, err := New(Config{Targets: []Target{{Name: "hook", URL: "http://hook.invalid/"}},
			Rules:  []Rule{{Name: "kettle_left_on", Device: "kitchen", Field: "power", Above: &limit, For: Duration(10 * time.Second)}},
			Client: &http.Client{Transport: rec}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go d.Run(ctx)
		t0 := time.Now()
		read := func(dev string, sec int, p float64) {
			d.Notify(ingest.Event{Type: ingest.EventReading, Device: dev, Time: t0.Add(time.Duration(sec) * time.Second), Power: &p})
		}
		read("kitchen", 0, 2000)
		read("kitchen", 5, 2100)
		read("office", 20, 5000) // the rule names kitchen only
		synctest.Wait()
		if rec.n() != 0 {
			t.Fatalf("fired before its hold time: %v", rec.body)
		}
		read("kitchen", 11, 2050)
		read("kitchen", 12, 2050) // still firing: no repeat
		synctest.Wait()
		if rec.n() != 1 || !strings.Contains(rec.body[0], `"status":"firing"`) || !strings.Contains(rec.body[0], `"value":2050`) {
			t.Fatalf("after 11 s: %v", rec.body)
		}
		read("kitchen", 13, 5)
		synctest.Wait()
		if rec.n() != 2 || !strings.Contains(rec.body[1], `"status":"resolved"`) {
			t.Fatalf("resolved: %v", rec.body)
		}
	})
}

func TestTestHandler(t *testing.T) {
	ok, bad := &recorder{}, &recorder{fail: true}
	os, bs := httptest.NewServer(ok), httptest.NewServer(bad)
	defer os.Close()
	defer bs.Close()
	d, err := New(Config{Targets: []Target{{Name: "good", URL: os.URL}, {Name: "broken", URL: bs.URL, Format: FormatNtfy}}})
	if err != nil {
		t.Fatal(err)
	}
	h := d.TestHandler(func(context.Context) string { return "alice" })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/ui/api/alerts/test", nil))
	var res []TestResult
	json.Unmarshal(w.Body.Bytes(), &res)
	if w.Code != http.StatusBadGateway || len(res) != 2 || !res[0].OK || res[1].OK || res[1].Error == "" {
		t.Errorf("all targets: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(ok.body[0], `"test":true`) || !strings.Contains(ok.body[0], "sent by alice") {
		t.Errorf("test alert body %s", ok.body[0])
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/ui/api/alerts/test", strings.NewReader(`{"target":"good"}`)))
	if w.Code != 200 || ok.n() != 2 {
		t.Errorf("one target: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/ui/api/alerts/test", strings.NewReader(`{"target":"nope"}`)))
	if w.Code != 404 {
		t.Errorf("unknown target: %d", w.Code)
	}
}
