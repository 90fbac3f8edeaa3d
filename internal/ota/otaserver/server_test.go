package otaserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loadwatch/internal/ota"
	"loadwatch/internal/ota/release"
)

type fixture struct {
	h     *Handler
	store *release.Store
	log   *Log
	bin   []byte
	sec   ota.SecretKey
	tmp   string
}

func newFixture(t testing.TB, o Options) *fixture {
	t.Helper()
	tmp := t.TempDir()
	_, sec, err := ota.GenerateKey(rand.NewChaCha8([32]byte{9}))
	if err != nil {
		t.Fatal(err)
	}
	st, err := release.Open(filepath.Join(tmp, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: st, log: NewLog(0), sec: sec, tmp: tmp, bin: bytes.Repeat([]byte("0123456789abcdef"), 4096)}
	f.publish(t, "v1.0.0", 100)
	o.Releases = StoreReleases{Store: st}
	if o.Auth == nil {
		o.Auth = NewTokens(map[string]string{"tok-1": "dev-1", "tok-2": "dev-2"})
	}
	o.Recorder = f.log
	f.h = New(o)
	return f
}

func (f *fixture) publish(t testing.TB, v string, pct float64) {
	p := filepath.Join(f.tmp, v)
	if err := os.WriteFile(p, f.bin, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Publish(release.PublishRequest{Version: v, Binary: p, Channel: "stable", OS: "linux", Arch: "arm64", Percent: pct, Key: f.sec}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) do(method, path, token string, body io.Reader, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w
}

const base = "/ota/v1/stable/linux-arm64/"

func TestDeviceEndpoints(t *testing.T) {
	f := newFixture(t, Options{})
	for _, tc := range []struct {
		name, method, path, token string
		body                      string
		code                      int
	}{
		{"manifest", "GET", base + "update.json", "tok-1", "", 200},
		{"signature", "GET", base + "update.json.minisig", "tok-1", "", 200},
		{"binary", "GET", base + "v1.0.0/loadwatch-agent", "tok-1", "", 200},
		{"no token", "GET", base + "update.json", "", "", 401},
		{"bad token", "GET", base + "v1.0.0/loadwatch-agent", "nope", "", 401},
		{"unknown platform", "GET", "/ota/v1/stable/linux-mips/update.json", "tok-1", "", 404},
		{"bad channel", "GET", "/ota/v1/..x/linux-arm64/update.json", "tok-1", "", 404},
		{"other file", "GET", base + "v1.0.0/update.json", "tok-1", "", 404},
		{"unknown version", "GET", base + "v9.0.0/loadwatch-agent", "tok-1", "", 403},
		{"no release yet", "GET", "/ota/v1/beta/linux-arm64/update.json", "tok-1", "", 204},
		{"report", "POST", "/ota/v1/report", "tok-1", `{"kind":"result","channel":"stable","os":"linux","arch":"arm64","version":"v1.0.0","ok":true}`, 200},
		{"report bad kind", "POST", "/ota/v1/report", "tok-1", `{"kind":"check"}`, 400},
		{"report bad json", "POST", "/ota/v1/report", "tok-1", `{`, 400},
		{"report no token", "POST", "/ota/v1/report", "", `{"kind":"result"}`, 401},
		{"report bad platform", "POST", "/ota/v1/report", "tok-1", `{"kind":"result","channel":"stable","os":"linux","arch":"mips","version":"v1.0.0"}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(tc.method, tc.path, tc.token, strings.NewReader(tc.body))
			if w.Code != tc.code {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, w.Code, w.Body, tc.code)
			}
			if tc.code == 401 && (w.Header().Get("WWW-Authenticate") == "" || w.Body.Len() > 100) {
				t.Errorf("401 without challenge or with a body of %d bytes", w.Body.Len())
			}
		})
	}
	w := f.do("GET", base+"v1.0.0/loadwatch-agent", "tok-1", nil, "Range", "bytes=100-199")
	if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), f.bin[100:200]) {
		t.Fatalf("range: %d, %d bytes", w.Code, w.Body.Len())
	}
	evs, _ := f.log.Events(context.Background(), "dev-1", 0)
	last := evs[len(evs)-1]
	if last.Kind != KindDownload || last.Offset != 100 || last.Bytes != 100 || last.Detail != "206" {
		t.Fatalf("download event %+v", last)
	}
}

func TestOfferFollowsRollout(t *testing.T) {
	f := newFixture(t, Options{})
	f.publish(t, "v1.1.0", 50)
	offered := map[string]int{}
	tok := NewTokens(nil)
	f.h.o.Auth = tok
	for i := range 40 {
		dev := "d" + string(rune('a'+i%26)) + string(rune('0'+i/26))
		tok.Set("t-"+dev, dev)
		w := f.do("GET", base+"update.json", "t-"+dev, nil, VersionHeader, "v1.0.0")
		m, err := ota.ParseManifest(w.Body.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		want := "v1.0.0"
		if ota.InCohort(dev, 50) {
			want = "v1.1.0"
		}
		if m.Version != want {
			t.Fatalf("%s offered %s, want %s", dev, m.Version, want)
		}
		offered[m.Version]++
		// The binary of the other version is refused.
		other := map[string]string{"v1.0.0": "v1.1.0", "v1.1.0": "v1.0.0"}[want]
		if w := f.do("GET", base+other+"/loadwatch-agent", "t-"+dev, nil); w.Code != http.StatusForbidden {
			t.Fatalf("%s got the binary of %s: %d", dev, other, w.Code)
		}
	}
	if offered["v1.0.0"] == 0 || offered["v1.1.0"] == 0 {
		t.Fatalf("offers %v", offered)
	}
	st, _ := f.log.Status(context.Background())
	if len(st) != 40 || st[0].Running != "v1.0.0" || st[0].Offered == "" {
		t.Fatalf("status %+v", st[:1])
	}
}

func TestDownloadLimits(t *testing.T) {
	f := newFixture(t, Options{MaxDownloads: 1, RateLimit: 64 << 10})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	get := func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", srv.URL+base+"v1.0.0/loadwatch-agent", nil)
		req.Header.Set("Authorization", "Bearer tok-1")
		return http.DefaultClient.Do(req)
	}
	first, err := get()
	if err != nil {
		t.Fatal(err)
	}
	// With the only slot taken by a paced download, the next waits its turn.
	second, err := get()
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" {
		t.Errorf("second concurrent download: %d", second.StatusCode)
	}
	body, err := io.ReadAll(first.Body)
	first.Body.Close()
	if err != nil || !bytes.Equal(body, f.bin) {
		t.Fatalf("paced download: %v, %d of %d bytes", err, len(body), len(f.bin))
	}
}

func TestAdminAndStatus(t *testing.T) {
	f := newFixture(t, Options{})
	f.publish(t, "v1.1.0", 10)
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/api/v1/ota/stable/linux-arm64/promote?to=30%25", 200},
		{"/api/v1/ota/stable/linux-arm64/promote?to=x", 400},
		{"/api/v1/ota/stable/linux-arm64/promote?to=20", 409},
		{"/api/v1/ota/stable/linux-arm64/halt?reason=looks+bad", 200},
		{"/api/v1/ota/stable/linux-arm64/promote", 409},
		{"/api/v1/ota/stable/linux-arm64/promote?resume=1&to=100", 200},
		{"/api/v1/ota/stable/linux-arm64/halt", 409},
		{"/api/v1/ota/stable/linux-arm64/dance", 404},
	} {
		if w := f.do("POST", tc.path, "", nil); w.Code != tc.code {
			t.Errorf("POST %s: %d %s, want %d", tc.path, w.Code, w.Body, tc.code)
		}
	}
	f.do("GET", base+"update.json", "tok-2", nil, VersionHeader, "v1.0.0")
	w := f.do("GET", "/api/v1/ota/status", "", nil)
	var rep StatusReply
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Rollouts) != 1 || rep.Rollouts[0].Stable != "v1.1.0" || len(rep.Devices) != 1 || rep.Devices[0].Offered != "v1.1.0" {
		t.Fatalf("status %s", w.Body)
	}
	if strings.Contains(w.Body.String(), "untrusted comment") {
		t.Error("status carries binary signatures")
	}
	// The device handler does not serve the API and vice versa.
	req := httptest.NewRequest("GET", "/api/v1/ota/status", nil)
	rw := httptest.NewRecorder()
	f.h.DeviceHandler().ServeHTTP(rw, req)
	if rw.Code != 404 {
		t.Errorf("device handler served the API: %d", rw.Code)
	}
}

func TestLogFileReload(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := OpenLog(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	ctx := context.Background()
	l.Record(ctx, Event{Device: "a", Kind: KindCheck, Running: "v1.0.0", Version: "v1.1.0"})
	l.Record(ctx, Event{Device: "a", Kind: KindResult, Version: "v1.1.0", OK: &ok, Detail: "boom"})
	l.Close()
	l2, err := OpenLog(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	st, _ := l2.Status(ctx)
	if len(st) != 1 || st[0].LastResult == nil || st[0].LastResult.Detail != "boom" || st[0].Events != 2 {
		t.Fatalf("reloaded %+v", st)
	}
}

func FuzzReport(f *testing.F) {
	fx := newFixture(f, Options{})
	f.Add([]byte(`{"kind":"result","channel":"stable","os":"linux","arch":"arm64","version":"v1.0.0","ok":false}`))
	f.Add([]byte(`{"kind":"apply","detail":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		w := fx.do("POST", "/ota/v1/report", "tok-1", bytes.NewReader(body))
		if w.Code != 200 && w.Code != 400 && w.Code != 404 {
			t.Fatalf("report %q: %d", body, w.Code)
		}
	})
}

func FuzzRangeStart(f *testing.F) {
	for _, s := range []string{"bytes=0-", "bytes=100-199", "bytes=-5", "", "items=1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n := rangeStart(s); n < 0 && !strings.Contains(s, "bytes=-") {
			t.Fatalf("rangeStart(%q) = %d", s, n)
		}
	})
}

func BenchmarkManifest(b *testing.B) {
	f := newFixture(b, Options{})
	for b.Loop() {
		if w := f.do("GET", base+"update.json", "tok-1", nil); w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
