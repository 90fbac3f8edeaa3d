package promapi

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// t0 is an unaligned start (ms): 2026-03-01T12:00:00.137Z.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 137e6, time.UTC)

func fixture(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var batch []store.Sample
	for i := range 120 {
		ts := t0.UnixMilli() + int64(i)*5000
		for d, dev := range []string{"kitchen", "office"} {
			l := []store.Label{{Name: store.LabelDevice, Value: dev}}
			batch = append(batch,
				store.Sample{Metric: store.MetricPower, Labels: l, T: ts, V: float64(100*(d+1)) + float64(i%7)},
				store.Sample{Metric: store.MetricVoltage, Labels: l, T: ts, V: 230.1 - float64(d)},
				store.Sample{Metric: store.MetricEnergy, Labels: l, T: ts, V: float64(i) * 500 * float64(d+1)},
			)
		}
		batch = append(batch, store.Sample{Metric: store.MetricClassConfidence,
			Labels: []store.Label{{Name: store.LabelDevice, Value: "kitchen"}, {Name: store.LabelClass, Value: "kettle"}}, T: ts, V: 0.875})
	}
	if err := s.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	return s
}

func newAPI(t testing.TB) *API {
	return New(fixture(t), Options{
		Now:       func() time.Time { return t0.Add(10 * time.Minute) },
		BuildInfo: BuildInfo{GoVersion: "go1.26", Revision: "test"},
	})
}

type call struct {
	name   string
	method string
	path   string
	form   url.Values
}

func sec(d time.Duration) string { return fmt.Sprintf("%.3f", float64(t0.Add(d).UnixMilli())/1000) }

var calls = []call{
	{"query_vector", "GET", "/api/v1/query", url.Values{"query": {"loadwatch_power_watts"}, "time": {sec(5 * time.Minute)}}},
	{"query_sum_by", "POST", "/api/v1/query", url.Values{"query": {"sum by (device) (rate(loadwatch_energy_joules_total[1m]))"}, "time": {sec(5 * time.Minute)}}},
	{"query_scalar", "GET", "/api/v1/query", url.Values{"query": {"1/0"}, "time": {"1700000000.5"}}},
	{"query_string", "GET", "/api/v1/query", url.Values{"query": {`"hello"`}, "time": {"2026-03-01T12:00:00Z"}}},
	{"query_default_time", "GET", "/api/v1/query", url.Values{"query": {`count(loadwatch_voltage_volts)`}}},
	{"query_empty", "GET", "/api/v1/query", url.Values{"query": {`loadwatch_power_watts{device="none"}`}, "time": {sec(0)}}},
	{"query_info", "GET", "/api/v1/query", url.Values{"query": {`rate(loadwatch_power_watts[1m])`}, "time": {sec(5 * time.Minute)}}},
	{"query_parse_error", "GET", "/api/v1/query", url.Values{"query": {"sum(rate(x[5m])"}}},
	{"query_no_query", "GET", "/api/v1/query", nil},
	{"query_bad_time", "GET", "/api/v1/query", url.Values{"query": {"1"}, "time": {"yesterday"}}},
	{"query_bad_timeout", "GET", "/api/v1/query", url.Values{"query": {"1"}, "timeout": {"-1s"}}},
	{"query_exec_error", "GET", "/api/v1/query", url.Values{"query": {`label_replace(loadwatch_power_watts, "device", "same", "", "")`}, "time": {sec(5 * time.Minute)}}},
	{"range_matrix", "GET", "/api/v1/query_range", url.Values{"query": {`avg_over_time(loadwatch_power_watts{device="kitchen"}[30s])`}, "start": {sec(time.Minute)}, "end": {sec(3 * time.Minute)}, "step": {"20"}}},
	{"range_post", "POST", "/api/v1/query_range", url.Values{"query": {`loadwatch_class_confidence_ratio`}, "start": {sec(0)}, "end": {sec(time.Minute)}, "step": {"30s"}}},
	{"range_end_before_start", "GET", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"100"}, "end": {"50"}, "step": {"1"}}},
	{"range_zero_step", "GET", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"100"}, "end": {"200"}, "step": {"0"}}},
	{"range_bad_step", "GET", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"100"}, "end": {"200"}, "step": {"fast"}}},
	{"range_too_many_points", "GET", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {"86400"}, "step": {"1"}}},
	{"range_missing_start", "GET", "/api/v1/query_range", url.Values{"query": {"1"}, "end": {"200"}, "step": {"1"}}},
	{"labels", "GET", "/api/v1/labels", nil},
	{"labels_match", "POST", "/api/v1/labels", url.Values{"match[]": {`loadwatch_power_watts`}}},
	{"label_values_device", "GET", "/api/v1/label/device/values", nil},
	{"label_values_name", "GET", "/api/v1/label/__name__/values", url.Values{"match[]": {`{device="office"}`}}},
	{"label_values_bad_name", "GET", "/api/v1/label/1bad/values", nil},
	{"series", "GET", "/api/v1/series", url.Values{"match[]": {`{device="kitchen"}`, `loadwatch_voltage_volts`}, "start": {sec(0)}, "end": {sec(time.Hour)}}},
	{"series_no_match", "GET", "/api/v1/series", nil},
	{"series_bad_match", "POST", "/api/v1/series", url.Values{"match[]": {`{device=}`}}},
	{"series_outside_range", "GET", "/api/v1/series", url.Values{"match[]": {`{device="kitchen"}`}, "start": {"0"}, "end": {"100"}}},
	{"series_limit", "GET", "/api/v1/series", url.Values{"match[]": {`{device="kitchen"}`}, "limit": {"1"}}},
	{"labels_limit", "GET", "/api/v1/labels", url.Values{"limit": {"2"}}},
	{"label_values_bad_limit", "GET", "/api/v1/label/device/values", url.Values{"limit": {"-1"}}},
	{"metadata_one", "GET", "/api/v1/metadata", url.Values{"metric": {"loadwatch_power_watts"}}},
	{"buildinfo", "GET", "/api/v1/status/buildinfo", nil},
}

func do(t *testing.T, h http.Handler, c call) *httptest.ResponseRecorder {
	t.Helper()
	var req *http.Request
	if c.method == "POST" {
		req = httptest.NewRequest("POST", c.path, strings.NewReader(c.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		u := c.path
		if len(c.form) > 0 {
			u += "?" + c.form.Encode()
		}
		req = httptest.NewRequest("GET", u, nil)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestGolden(t *testing.T) {
	h := newAPI(t)
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			rec := do(t, h, c)
			var indented bytes.Buffer
			if err := json.Indent(&indented, rec.Body.Bytes(), "", "  "); err != nil {
				t.Fatalf("invalid JSON %q: %v", rec.Body.String(), err)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			got := fmt.Sprintf("%d\n%s\n", rec.Code, indented.String())
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestShape checks the envelope fields of every answer against Prometheus'
// rules, independent of the golden files.
func TestShape(t *testing.T) {
	h := newAPI(t)
	for _, c := range calls {
		rec := do(t, h, c)
		var r struct {
			Status    string          `json:"status"`
			Data      json.RawMessage `json:"data"`
			ErrorType string          `json:"errorType"`
			Error     string          `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		switch {
		case rec.Code == 200 && (r.Status != "success" || r.Data == nil || r.ErrorType != ""):
			t.Errorf("%s: 200 with %+v", c.name, r)
		case rec.Code != 200 && (r.Status != "error" || r.ErrorType == "" || r.Error == "" || r.Data != nil):
			t.Errorf("%s: %d with %+v", c.name, rec.Code, r)
		case rec.Code != 200 && statusOf(r.ErrorType) != rec.Code:
			t.Errorf("%s: %d for %s", c.name, rec.Code, r.ErrorType)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	h := newAPI(t)
	req := httptest.NewRequest("DELETE", "/api/v1/query", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE answered %d", rec.Code)
	}
}

func TestTimestampAndFloatFormat(t *testing.T) {
	for _, tc := range []struct {
		p    point
		want string
	}{
		{point{T: 1435781451781, V: 1}, `[1435781451.781,"1"]`},
		{point{T: 1000, V: 0.5}, `[1,"0.5"]`},
		{point{T: 1005, V: -2}, `[1.005,"-2"]`},
		{point{T: 1050, V: 1e21}, `[1.050,"1000000000000000000000"]`},
		{point{T: -1500, V: math.Inf(1)}, `[-1.500,"+Inf"]`},
		{point{T: 0, V: math.Inf(-1)}, `[0,"-Inf"]`},
		{point{T: 0, V: math.NaN()}, `[0,"NaN"]`},
	} {
		b, _ := tc.p.MarshalJSON()
		if string(b) != tc.want {
			t.Errorf("%+v: %s, want %s", tc.p, b, tc.want)
		}
	}
}

func TestParseTimeAndDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // ms
		ok   bool
	}{
		{"1700000000", 1700000000000, true},
		{"1700000000.1234", 1700000000123, true},
		{"2026-03-01T12:00:00.5Z", 1772366400500, true},
		{"-1", -1000, true},
		{"NaN", 0, false},
		{"1e300", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	} {
		got, err := parseTime(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got.UnixMilli() != tc.want) {
			t.Errorf("parseTime(%q) = %v, %v", tc.in, got.UnixMilli(), err)
		}
	}
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"15", 15 * time.Second, true},
		{"0.5", 500 * time.Millisecond, true},
		{"5m", 5 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"1d", 24 * time.Hour, true},
		{"250ms", 250 * time.Millisecond, true},
		{"1m1h", 0, false},
		{"5x", 0, false},
		{"m", 0, false},
		{"1e30", 0, false},
		{"", 0, false},
	} {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseDuration(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func FuzzParams(f *testing.F) {
	for _, s := range []string{"1700000000.5", "5m", "2026-03-01T12:00:00Z", "1h30m", "-1", "NaN", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseDuration(s); err == nil && d < 0 && !strings.HasPrefix(s, "-") {
			t.Fatalf("parseDuration(%q) = %v without a sign", s, d)
		}
		_, _ = parseTime(s)
	})
}

func BenchmarkQueryRangeHTTP(b *testing.B) {
	h := newAPI(b)
	q := url.Values{"query": {`avg_over_time(loadwatch_power_watts[1m])`}, "start": {sec(0)}, "end": {sec(10 * time.Minute)}, "step": {"15"}}
	req := httptest.NewRequest("GET", "/api/v1/query_range?"+q.Encode(), nil)
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Body.String())
		}
	}
}
