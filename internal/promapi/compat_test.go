package promapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"testing"
	"time"

	"loadwatch/internal/store"
	"loadwatch/internal/store/promtest"
)

// Tolerance for comparing values between loadwatch and Prometheus 2.42:
// relative 1e-9 (or absolute 1e-9 near zero). Both engines evaluate the same
// float operations; only summation order could differ.
const tolerance = 1e-9

type promSeries struct {
	key    string
	points [][2]float64 // [seconds, value]
}

type promAnswer struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	} `json:"data"`
	Error string `json:"error"`
}

func decodeAnswer(t *testing.T, body []byte) (string, []promSeries) {
	t.Helper()
	var a promAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if a.Status != "success" {
		t.Fatalf("query failed: %s", body)
	}
	var out []promSeries
	for _, raw := range a.Data.Result {
		var s struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
			Values [][]any           `json:"values"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		keys := make([]string, 0, len(s.Metric))
		for k, v := range s.Metric {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		ps := promSeries{key: fmt.Sprint(keys)}
		if s.Value != nil {
			s.Values = [][]any{s.Value}
		}
		for _, p := range s.Values {
			v, err := strconv.ParseFloat(p[1].(string), 64)
			if err != nil {
				t.Fatal(err)
			}
			ps.points = append(ps.points, [2]float64{p[0].(float64), v})
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return a.Data.ResultType, out
}

func close(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	d := math.Abs(a - b)
	return d <= tolerance || d <= tolerance*math.Max(math.Abs(a), math.Abs(b))
}

func get(t *testing.T, base, path string, q url.Values) []byte {
	t.Helper()
	body, code, err := (&promtest.Server{URL: base}).Get(context.Background(), path, q)
	if err != nil || code != 200 {
		t.Fatalf("GET %s%s?%s: %d %v %s", base, path, q.Encode(), code, err, body)
	}
	return body
}

// TestAnswersLikePrometheus feeds the same samples to loadwatch's store and,
// by remote write, to Debian's Prometheus 2.42, then compares the answers of
// both HTTP APIs to instant and range queries.
func TestAnswersLikePrometheus(t *testing.T) {
	prom := promtest.Start(t)
	w, err := store.NewRemoteWriter(store.RemoteWriteOptions{URL: prom.WriteURL(), BatchSize: 1000, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	s, err := store.Open(t.TempDir(), store.Options{RemoteWrite: w})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// 30 minutes of data, every 5 s with up to 1 s of jitter and a 137 ms
	// offset, so no sample sits on a whole second (see boundary test below).
	base := time.Now().Truncate(time.Minute).Add(-40 * time.Minute)
	rng := rand.New(rand.NewPCG(5, 7))
	devices := []string{"kitchen", "office", "garage"}
	power := []float64{60, 1500, 5}
	energy := make([]float64, len(devices))
	total := 0
	for i := range 360 {
		var batch []store.Sample
		for d, dev := range devices {
			ts := base.UnixMilli() + int64(i)*5000 + 137 + rng.Int64N(1000)
			power[d] = math.Max(0, power[d]+rng.NormFloat64()*20)
			energy[d] += power[d] * 5
			if dev == "garage" && i == 200 {
				energy[d] = 0 // a counter reset
			}
			l := []store.Label{{Name: store.LabelDevice, Value: dev}}
			batch = append(batch,
				store.Sample{Metric: store.MetricPower, Labels: l, T: ts, V: math.Round(power[d]*10) / 10},
				store.Sample{Metric: store.MetricEnergy, Labels: l, T: ts, V: energy[d]},
				store.Sample{Metric: store.MetricVoltage, Labels: l, T: ts, V: 230 + rng.NormFloat64()},
			)
		}
		if err := s.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
		total += len(batch)
	}
	waitSent(t, w, total)
	end := base.Add(30 * time.Minute)
	waitFor(t, "Prometheus to hold every sample", func() bool {
		var n float64
		var err error
		for _, m := range []string{store.MetricPower, store.MetricEnergy, store.MetricVoltage} {
			c, cerr := prom.Count(ctx, `sum(count_over_time(`+m+`[1h]))`, end)
			n, err = n+c, errors.Join(err, cerr)
		}
		if int(n) != total {
			t.Logf("Prometheus holds %v of %d samples (err %v)", n, total, err)
		}
		return err == nil && int(n) == total
	})

	lw := httptest.NewServer(New(s, Options{}))
	defer lw.Close()

	exprs := []string{
		`loadwatch_power_watts`,
		`rate(loadwatch_energy_joules_total[1m])`,
		`increase(loadwatch_energy_joules_total[10m])`,
		`avg_over_time(loadwatch_power_watts[2m])`,
		`max_over_time(loadwatch_voltage_volts[1m])`,
		`count_over_time(loadwatch_power_watts[1m])`,
		`sum by (device) (rate(loadwatch_energy_joules_total[5m]))`,
		`sum(loadwatch_power_watts) / count(loadwatch_power_watts)`,
		`quantile_over_time(0.9, loadwatch_power_watts[5m])`,
	}
	sec := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	// Every window lies inside the data: at a series' start, rate and
	// increase extrapolate differently in 2.42 and 3.x (docs/STORAGE.md).
	for _, e := range exprs {
		for _, at := range []time.Time{base.Add(10 * time.Minute), base.Add(17*time.Minute + 3*time.Second), end} {
			q := url.Values{"query": {e}, "time": {sec(at)}}
			compare(t, e+" @"+at.Format(time.TimeOnly), get(t, prom.URL, "/api/v1/query", q), get(t, lw.URL, "/api/v1/query", q))
		}
		for _, step := range []string{"15", "1m"} {
			q := url.Values{"query": {e}, "start": {sec(base.Add(11 * time.Minute))}, "end": {sec(end)}, "step": {step}}
			compare(t, e+" range step "+step, get(t, prom.URL, "/api/v1/query_range", q), get(t, lw.URL, "/api/v1/query_range", q))
		}
	}

	// The documented difference: a sample exactly on the left edge of a
	// range is inside the range in Prometheus 2.x and outside in 3.x.
	edge := base.Add(35 * time.Minute)
	var batch []store.Sample
	for i := range 5 {
		batch = append(batch, store.Sample{Metric: "loadwatch_edge_test", T: edge.Add(time.Duration(i) * 15 * time.Second).UnixMilli(), V: 1})
	}
	if err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	total += len(batch)
	waitSent(t, w, total)
	at := edge.Add(time.Minute)
	q := url.Values{"query": {`count_over_time(loadwatch_edge_test[1m])`}, "time": {sec(at)}}
	var pv []promSeries
	waitFor(t, "edge samples in Prometheus", func() bool {
		_, pv = decodeAnswer(t, get(t, prom.URL, "/api/v1/query", q))
		return len(pv) == 1 && pv[0].points[0][1] == 5
	})
	_, lv := decodeAnswer(t, get(t, lw.URL, "/api/v1/query", q))
	if len(lv) != 1 || lv[0].points[0][1] != 4 {
		t.Fatalf("left-open range: loadwatch counted %v, want 4 (Prometheus 2.42 counts 5)", lv)
	}
}

func waitSent(t *testing.T, w *store.RemoteWriter, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d samples sent", n), func() bool {
		st := w.Stats()
		if st.Failed > 0 || st.Dropped > 0 {
			t.Fatalf("remote write lost samples: %+v", st)
		}
		return st.Sent == uint64(n)
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func compare(t *testing.T, name string, promBody, lwBody []byte) {
	t.Helper()
	pt, ps := decodeAnswer(t, promBody)
	lt, ls := decodeAnswer(t, lwBody)
	if pt != lt {
		t.Errorf("%s: result type %s vs %s", name, pt, lt)
		return
	}
	if len(ps) == 0 {
		t.Errorf("%s: Prometheus returned nothing; the comparison is empty", name)
	}
	if len(ps) != len(ls) {
		t.Errorf("%s: %d series from Prometheus, %d from loadwatch", name, len(ps), len(ls))
		return
	}
	for i := range ps {
		if ps[i].key != ls[i].key {
			t.Errorf("%s: series %s vs %s", name, ps[i].key, ls[i].key)
			continue
		}
		if len(ps[i].points) != len(ls[i].points) {
			t.Errorf("%s %s: %d points vs %d", name, ps[i].key, len(ps[i].points), len(ls[i].points))
			continue
		}
		for j, p := range ps[i].points {
			l := ls[i].points[j]
			if p[0] != l[0] || !close(p[1], l[1]) {
				t.Errorf("%s %s point %d: Prometheus %v, loadwatch %v", name, ps[i].key, j, p, l)
				break
			}
		}
	}
}
