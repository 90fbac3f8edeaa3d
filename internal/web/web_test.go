package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/api"
	"loadwatch/internal/ingest"
	"loadwatch/internal/telemetry"
)

type fakeLogin struct{}

func (fakeLogin) CheckLogin(_ context.Context, user, pw string) error {
	if user == "alice" && pw == "correct horse" {
		return nil
	}
	return ErrBadLogin
}

type fakeCmds struct{ sent []string }

func (f *fakeCmds) Send(dev string, kind telemetry.CommandKind, args json.RawMessage) (api.CommandJSON, error) {
	if kind == "bogus" {
		return api.CommandJSON{}, errors.Join(api.ErrBadCommand, errors.New("unknown kind"))
	}
	f.sent = append(f.sent, dev+":"+string(kind))
	return api.CommandJSON{ID: "c1", Device: dev, Kind: string(kind), Status: api.CommandSent}, nil
}

func (f *fakeCmds) Wait(id string, d time.Duration, done <-chan struct{}) (api.CommandJSON, bool) {
	return api.CommandJSON{ID: id, Status: api.CommandDone, State: "open"}, true
}

// reads records the forwarded requests.
type reads struct{ got []string }

func (r *reads) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.got = append(r.got, req.URL.Path+"?"+req.URL.RawQuery+" auth="+req.Header.Get("Authorization"))
	w.Write([]byte(`[]`))
}

func newTestServer(t *testing.T, open bool) (*httptest.Server, *reads, *fakeCmds, *RelayTracker) {
	t.Helper()
	rd, fc, rt := &reads{}, &fakeCmds{}, NewRelayTracker()
	d, err := New(Config{Reads: rd, Login: fakeLogin{}, OpenReads: open, Commands: fc, Relays: rt, InsecureCookies: true})
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(d)
	t.Cleanup(s.Close)
	return s, rd, fc, rt
}

func client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, u, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func login(t *testing.T, s *httptest.Server, c *http.Client) string {
	t.Helper()
	resp, body := do(t, c, "POST", s.URL+"/login", `{"user":"alice","password":"correct horse","next":"//evil.example/"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	var out map[string]string
	json.Unmarshal([]byte(body), &out)
	if out["next"] != "/" {
		t.Errorf("next %q: an off-site redirect must become /", out["next"])
	}
	ck := resp.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie %+v: want HttpOnly and SameSite=Strict", ck)
	}
	return out["csrf"]
}

func TestClosedReadsNeedSignIn(t *testing.T) {
	s, rd, _, _ := newTestServer(t, false)
	c := client(t)
	resp, _ := do(t, c, "GET", s.URL+"/device/x", "", nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=%2Fdevice%2Fx") {
		t.Errorf("page without session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := do(t, c, "GET", s.URL+"/ui/api/v1/devices", "", nil); resp.StatusCode != 401 {
		t.Errorf("read without session: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, "POST", s.URL+"/login", `{"user":"alice","password":"wrong password"}`, map[string]string{"Content-Type": "application/json"}); resp.StatusCode != 401 {
		t.Errorf("wrong password: %d", resp.StatusCode)
	}
	login(t, s, c)
	if resp, _ := do(t, c, "GET", s.URL+"/ui/api/v1/devices", "", map[string]string{"Authorization": "Bearer x"}); resp.StatusCode != 200 {
		t.Errorf("read with session: %d", resp.StatusCode)
	}
	if len(rd.got) != 1 || rd.got[0] != "/api/v1/devices? auth=" {
		t.Errorf("forwarded %q: want /api/v1/devices without the Authorization header", rd.got)
	}
	if resp, _ := do(t, c, "GET", s.URL+"/device/x", "", nil); resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("page with session: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
}

func TestWritesNeedSessionAndCSRF(t *testing.T) {
	s, _, fc, rt := newTestServer(t, true)
	c := client(t)
	cmd := s.URL + "/ui/api/devices/pi/commands"
	if resp, _ := do(t, c, "POST", cmd, `{"kind":"relay_off"}`, nil); resp.StatusCode != 401 {
		t.Errorf("command without session: %d", resp.StatusCode)
	}
	csrf := login(t, s, c)
	if resp, _ := do(t, c, "POST", cmd, `{"kind":"relay_off"}`, nil); resp.StatusCode != 403 {
		t.Errorf("command without CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, "POST", cmd, `{"kind":"relay_off"}`, map[string]string{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}); resp.StatusCode != 403 {
		t.Errorf("cross-site command: %d", resp.StatusCode)
	}
	resp, body := do(t, c, "POST", cmd, `{"kind":"relay_off"}`, map[string]string{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != 200 || !strings.Contains(body, `"state":"open"`) {
		t.Errorf("command: %d %s", resp.StatusCode, body)
	}
	if len(fc.sent) != 1 || fc.sent[0] != "pi:relay_off" {
		t.Errorf("sent %v", fc.sent)
	}
	if st, ok := rt.Get("pi"); !ok || st.State != "open" {
		t.Errorf("relay tracker after the ack: %+v %v", st, ok)
	}
	if resp, _ := do(t, c, "POST", cmd, `{"kind":"bogus"}`, map[string]string{"X-CSRF-Token": csrf}); resp.StatusCode != 400 {
		t.Errorf("bad command kind: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, "POST", s.URL+"/logout", "", map[string]string{"X-CSRF-Token": csrf}); resp.StatusCode != 200 {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, "POST", cmd, `{"kind":"relay_off"}`, map[string]string{"X-CSRF-Token": csrf}); resp.StatusCode != 401 {
		t.Errorf("command after logout: %d", resp.StatusCode)
	}
}

func TestFormLoginRedirects(t *testing.T) {
	s, _, _, _ := newTestServer(t, false)
	c := client(t)
	f := url.Values{"user": {"alice"}, "password": {"correct horse"}, "next": {"/device/kitchen"}}
	resp, _ := do(t, c, "POST", s.URL+"/login", f.Encode(), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/device/kitchen" {
		t.Errorf("form login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = do(t, c, "POST", s.URL+"/login", f.Encode(), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin login: %d", resp.StatusCode)
	}
}

func TestSessionExpires(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d, _ := New(Config{Reads: &reads{}, Login: fakeLogin{}, SessionTTL: time.Hour, Now: func() time.Time { return now }, InsecureCookies: true})
	s := httptest.NewServer(d)
	defer s.Close()
	c := client(t)
	login(t, s, c)
	if resp, _ := do(t, c, "GET", s.URL+"/ui/api/relays", "", nil); resp.StatusCode != 200 {
		t.Fatalf("fresh session: %d", resp.StatusCode)
	}
	now = now.Add(61 * time.Minute)
	if resp, _ := do(t, c, "GET", s.URL+"/ui/api/relays", "", nil); resp.StatusCode != 401 {
		t.Errorf("expired session: %d", resp.StatusCode)
	}
}

func TestClampStep(t *testing.T) {
	for _, c := range []struct {
		start, end, step string
		want             string
		ok               bool
	}{
		{"0", "3600", "1", "1.800", true},       // 3600 points > 2000: raised
		{"0", "600", "1", "", false},            // fits
		{"0", "86400", "15s", "43.200", true},   // a duration string
		{"0", "2592000", "1", "1296.000", true}, // 30 days
		{"x", "1", "1", "", false},
	} {
		got, ok := clampStep(c.start, c.end, c.step, 2000)
		if got != c.want || ok != c.ok {
			t.Errorf("clampStep(%s, %s, %s) = %q %v, want %q %v", c.start, c.end, c.step, got, ok, c.want, c.ok)
		}
	}
}

func TestRelayTrackerEvents(t *testing.T) {
	rt := NewRelayTracker()
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rt.Notify(ingest.Event{Type: ingest.EventAnomaly, Device: "d", Source: ingest.SourceDevice, Kind: "relay_trip", Time: t1})
	if s, _ := rt.Get("d"); s.State != "tripped" {
		t.Errorf("after trip: %q", s.State)
	}
	rt.Notify(ingest.Event{Type: ingest.EventAnomaly, Device: "d", Source: ingest.SourceServer, Kind: "relay_reset", Time: t1.Add(time.Second)})
	if s, _ := rt.Get("d"); s.State != "tripped" {
		t.Errorf("a server-side event must not change the relay: %q", s.State)
	}
	rt.Notify(ingest.Event{Type: ingest.EventAck, Device: "d", Time: t1.Add(2 * time.Second), Ack: &telemetry.CommandAck{ID: "x", OK: true, State: "closed"}})
	if s, _ := rt.Get("d"); s.State != "closed" {
		t.Errorf("after ack: %q", s.State)
	}
	rt.Notify(ingest.Event{Type: ingest.EventAnomaly, Device: "d", Source: ingest.SourceDevice, Kind: "relay_latch", Time: t1})
	if s, _ := rt.Get("d"); s.State != "closed" {
		t.Errorf("an older event must not win: %q", s.State)
	}
}

// TestRelayTrackerStatus: a status with a relay sets the state before any
// ack or event; a status without one (an older agent, a last will) leaves
// it; a later status, ack or event replaces it and an older one does not.
func TestRelayTrackerStatus(t *testing.T) {
	rt := NewRelayTracker()
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rt.Notify(ingest.Event{Type: ingest.EventStatus, Device: "d", Status: "online", Time: t1})
	if s, ok := rt.Get("d"); ok {
		t.Fatalf("status without a relay: %+v", s)
	}
	rt.Notify(ingest.Event{Type: ingest.EventStatus, Device: "d", Status: "online", Relay: "tripped", Time: t1.Add(time.Second)})
	if s, _ := rt.Get("d"); s.State != "tripped" || !s.Since.Equal(t1.Add(time.Second)) {
		t.Fatalf("after the status: %+v", s)
	}
	rt.Notify(ingest.Event{Type: ingest.EventStatus, Device: "d", Status: "offline", Time: t1.Add(2 * time.Second)})
	if s, _ := rt.Get("d"); s.State != "tripped" {
		t.Fatalf("the last will changed the relay: %+v", s)
	}
	rt.Notify(ingest.Event{Type: ingest.EventAnomaly, Device: "d", Source: ingest.SourceDevice, Kind: "relay_trip", Time: t1})
	rt.Notify(ingest.Event{Type: ingest.EventStatus, Device: "d", Status: "online", Relay: "closed", Time: t1})
	if s, _ := rt.Get("d"); s.State != "tripped" {
		t.Fatalf("an older event or status won: %+v", s)
	}
	rt.Notify(ingest.Event{Type: ingest.EventStatus, Device: "d", Status: "online", Relay: "latched", Time: t1.Add(3 * time.Second)})
	if s, _ := rt.Get("d"); s.State != "latched" {
		t.Fatalf("after a newer status: %+v", s)
	}
	rt.Notify(ingest.Event{Type: ingest.EventAck, Device: "d", Time: t1.Add(4 * time.Second), Ack: &telemetry.CommandAck{ID: "x", OK: true, State: "open"}})
	if s, _ := rt.Get("d"); s.State != "open" {
		t.Fatalf("after an ack: %+v", s)
	}
}

func TestStaticAssets(t *testing.T) {
	s, _, _, _ := newTestServer(t, true)
	for _, p := range []string{"/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/uplot/LICENSE", "/static/app.css", "/static/device.js", "/", "/ota", "/login"} {
		resp, body := do(t, client(t), "GET", s.URL+p, "", nil)
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
}

func BenchmarkForwardRangeQuery(b *testing.B) {
	d, _ := New(Config{Reads: &reads{}, OpenReads: true})
	req := httptest.NewRequest("GET", "/ui/api/v1/query_range?query=up&start=0&end=2592000&step=1", nil)
	for b.Loop() {
		d.ServeHTTP(httptest.NewRecorder(), req)
	}
}
