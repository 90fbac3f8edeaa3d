package store

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"

	"loadwatch/internal/store/promtest"
)

// waitFor polls cond with a generous deadline (never asserting speed).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiver is a fake remote-write endpoint that answers with the scripted
// status codes in turn (then 204) and decodes what it accepts.
type receiver struct {
	mu      sync.Mutex
	codes   []int
	samples int
	series  map[string]int
	sorted  bool
	calls   atomic.Int32
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.calls.Add(1)
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.codes) > 0 {
		code := r.codes[0]
		r.codes = r.codes[1:]
		if code != http.StatusNoContent {
			http.Error(w, "scripted", code)
			return
		}
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.series == nil {
		r.series = map[string]int{}
		r.sorted = true
	}
	for _, ts := range wr.Timeseries {
		key := ""
		for i, l := range ts.Labels {
			if i > 0 && ts.Labels[i-1].Name >= l.Name {
				r.sorted = false
			}
			key += l.Name + "=" + l.Value + ","
		}
		for i, s := range ts.Samples {
			if i > 0 && ts.Samples[i-1].Timestamp > s.Timestamp {
				r.sorted = false
			}
		}
		r.series[key] += len(ts.Samples)
		r.samples += len(ts.Samples)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.samples
}

func runWriter(t *testing.T, o RemoteWriteOptions) *RemoteWriter {
	t.Helper()
	w, err := NewRemoteWriter(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return w
}

func TestRemoteWriteRetriesAndBatches(t *testing.T) {
	rcv := &receiver{codes: []int{503, 500, 429}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	w := runWriter(t, RemoteWriteOptions{URL: srv.URL + "/api/v1/write", BatchSize: 100,
		FlushInterval: 10 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	var batch []Sample
	for i := range 250 {
		// Labels out of order and samples reversed: the writer sorts them.
		batch = append(batch, Sample{Metric: MetricPower, Labels: []Label{{"z", "1"}, {LabelDevice, "a"}}, T: base + int64(250-i)*1000, V: float64(i)})
	}
	if n := w.Enqueue(batch); n != 250 {
		t.Fatalf("queued %d", n)
	}
	waitFor(t, "250 samples sent", func() bool { return w.Stats().Sent == 250 })
	st := w.Stats()
	if st.Retries != 3 || st.Failed != 0 || st.Dropped != 0 || rcv.count() != 250 {
		t.Fatalf("stats %+v, receiver got %d", st, rcv.count())
	}
	if !rcv.sorted || len(rcv.series) != 1 {
		t.Fatalf("receiver saw unsorted labels or samples, or %d series", len(rcv.series))
	}
	if c := rcv.calls.Load(); c < 6 { // 3 failures + at least 3 batches of ≤100
		t.Fatalf("only %d requests", c)
	}
}

func TestRemoteWritePermanentFailureAndDrops(t *testing.T) {
	rcv := &receiver{codes: []int{400}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	w, err := NewRemoteWriter(RemoteWriteOptions{URL: srv.URL, QueueSize: 10, BatchSize: 10,
		FlushInterval: 10 * time.Millisecond, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]Sample, 15)
	for i := range batch {
		batch[i] = Sample{Metric: MetricPower, Labels: dev("a"), T: base + int64(i), V: 1}
	}
	// Not running yet: the queue holds 10, the other 5 are dropped.
	if n := w.Enqueue(batch); n != 10 || w.Stats().Dropped != 5 {
		t.Fatalf("queued %d, stats %+v", n, w.Stats())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, "first batch refused", func() bool { return w.Stats().Failed == 10 })
	w.Enqueue(batch[:5])
	waitFor(t, "second batch sent", func() bool { return w.Stats().Sent == 5 })
	cancel()
	<-done
	if st := w.Stats(); st.Retries != 0 || rcv.count() != 5 {
		t.Fatalf("stats %+v, receiver %d", st, rcv.count())
	}
}

func TestRemoteWriteBadURL(t *testing.T) {
	for _, u := range []string{"", "localhost:9090", "ftp://x/y", "http://"} {
		if _, err := NewRemoteWriter(RemoteWriteOptions{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

// TestRemoteWriteToPrometheus sends through Store.Append with RemoteWrite
// set to Debian's Prometheus and checks it holds every sample.
func TestRemoteWriteToPrometheus(t *testing.T) {
	prom := promtest.Start(t)
	w := runWriter(t, RemoteWriteOptions{URL: prom.WriteURL(), BatchSize: 500, FlushInterval: 50 * time.Millisecond})
	s := openTest(t, Options{RemoteWrite: w})
	now := time.Now().Truncate(time.Second).Add(-10 * time.Minute).UnixMilli()
	const devices, steps = 20, 100
	for i := range steps {
		var batch []Sample
		for d := range devices {
			batch = append(batch, Sample{Metric: MetricPower, Labels: dev(string(rune('a' + d))), T: now + int64(i)*5000 + 137, V: float64(i)})
		}
		if err := s.Append(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all samples sent", func() bool { return w.Stats().Sent == devices*steps })
	ctx := context.Background()
	at := time.UnixMilli(now + steps*5000)
	var got float64
	waitFor(t, "Prometheus to hold every sample", func() bool {
		var err error
		got, err = prom.Count(ctx, `sum(count_over_time(`+MetricPower+`[1h]))`, at)
		return err == nil && got == devices*steps
	})
	if st := w.Stats(); st.Failed != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}
