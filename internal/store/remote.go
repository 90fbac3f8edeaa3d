package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
)

// RemoteWriteOptions configures a RemoteWriter. Zero fields mean the
// documented defaults.
type RemoteWriteOptions struct {
	// URL is the receiver's full write URL, e.g.
	// http://prometheus:9090/api/v1/write (Prometheus with
	// --web.enable-remote-write-receiver), http://mimir/api/v1/push or
	// http://victoriametrics:8428/api/v1/write. Required.
	URL string
	// QueueSize bounds the samples waiting to be sent; when it is full new
	// samples are dropped and counted. Default 100,000.
	QueueSize int
	// BatchSize is the most samples per request. Default 2,000.
	BatchSize int
	// FlushInterval sends a partial batch after this long. Default 1 s.
	FlushInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a request
	// that failed with a network error, HTTP 5xx or 429. Defaults 100 ms, 10 s.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetries is how many times one request is retried before its samples
	// are counted as failed. Default 10.
	MaxRetries int
	// Client sends the requests. Default: a client with a 30 s timeout.
	Client *http.Client
	// Registerer, when set, receives the sent/failed/dropped counters.
	Registerer prometheus.Registerer
}

// RemoteStats are a RemoteWriter's counters.
type RemoteStats struct {
	Sent    uint64 // samples the receiver accepted
	Failed  uint64 // samples given up on (4xx answer, or retries exhausted)
	Dropped uint64 // samples refused because the queue was full
	Retries uint64 // requests retried
	Queued  int    // samples waiting now
}

// RemoteWriter forwards samples to a Prometheus remote-write (protocol 1.0)
// receiver through a bounded queue, in batches, retrying with back-off.
// Enqueue never blocks the caller; Run does the sending.
type RemoteWriter struct {
	o     RemoteWriteOptions
	api   *remote.API
	queue chan Sample

	sent, failed, dropped, retries atomic.Uint64
}

// NewRemoteWriter checks the options and returns a writer; call Run to send.
func NewRemoteWriter(o RemoteWriteOptions) (*RemoteWriter, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("store: remote write URL %q: want http(s)://host/path", o.URL)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 100_000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(10*time.Second, o.MinBackoff)
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 10
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	api, err := remote.NewAPI(o.URL,
		remote.WithAPIPath(""),
		remote.WithAPIHTTPClient(o.Client),
		remote.WithAPIBackoff(remote.BackoffConfig{Min: o.MinBackoff, Max: o.MaxBackoff, MaxRetries: o.MaxRetries}),
	)
	if err != nil {
		return nil, fmt.Errorf("store: remote write: %w", err)
	}
	w := &RemoteWriter{o: o, api: api, queue: make(chan Sample, o.QueueSize)}
	if o.Registerer != nil {
		for name, c := range map[string]*atomic.Uint64{
			"loadwatch_remote_write_samples_sent_total":    &w.sent,
			"loadwatch_remote_write_samples_failed_total":  &w.failed,
			"loadwatch_remote_write_samples_dropped_total": &w.dropped,
			"loadwatch_remote_write_retries_total":         &w.retries,
		} {
			err := o.Registerer.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: name, Help: "Remote write: " + name + ".",
			}, func() float64 { return float64(c.Load()) }))
			if err != nil {
				return nil, fmt.Errorf("store: remote write metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Enqueue queues samples for sending and returns how many it queued; the
// rest are dropped (and counted) because the queue is full. It never blocks.
func (w *RemoteWriter) Enqueue(samples []Sample) int {
	for i, s := range samples {
		select {
		case w.queue <- s:
		default:
			w.dropped.Add(uint64(len(samples) - i))
			return i
		}
	}
	return len(samples)
}

// Stats returns the counters.
func (w *RemoteWriter) Stats() RemoteStats {
	return RemoteStats{Sent: w.sent.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load(),
		Retries: w.retries.Load(), Queued: len(w.queue)}
}

// Run sends queued samples until ctx ends. Samples still queued then are
// left unsent (the local store has them; remote write is best effort).
func (w *RemoteWriter) Run(ctx context.Context) error {
	batch := make([]Sample, 0, w.o.BatchSize)
	tick := time.NewTicker(w.o.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-w.queue:
			batch = append(batch, s)
			// Take what else is already queued, up to a full batch.
		fill:
			for len(batch) < w.o.BatchSize {
				select {
				case s := <-w.queue:
					batch = append(batch, s)
				default:
					break fill
				}
			}
			if len(batch) < w.o.BatchSize {
				continue
			}
		case <-tick.C:
			if len(batch) == 0 {
				continue
			}
		}
		w.send(ctx, batch)
		batch = batch[:0]
	}
}

func (w *RemoteWriter) send(ctx context.Context, batch []Sample) {
	req := toWriteRequest(batch)
	_, err := w.api.Write(ctx, remote.WriteV1MessageType, req,
		remote.WithWriteRetryCallback(func(error) { w.retries.Add(1) }))
	switch {
	case err == nil:
		w.sent.Add(uint64(len(batch)))
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		// Shutting down: these samples were neither sent nor refused.
	default:
		w.failed.Add(uint64(len(batch)))
	}
}

// toWriteRequest groups a batch by series, keeping each series' samples in
// time order, as receivers without an out-of-order window need.
func toWriteRequest(batch []Sample) *prompb.WriteRequest {
	idx := map[string]int{}
	req := &prompb.WriteRequest{}
	var key []byte
	for i := range batch {
		s := &batch[i]
		key = seriesKey(key[:0], s)
		j, ok := idx[string(key)]
		if !ok {
			j = len(req.Timeseries)
			idx[string(key)] = j
			ls := make([]prompb.Label, 0, len(s.Labels)+1)
			ls = append(ls, prompb.Label{Name: "__name__", Value: s.Metric})
			for _, l := range s.Labels {
				if l.Value != "" {
					ls = append(ls, prompb.Label{Name: l.Name, Value: l.Value})
				}
			}
			slices.SortFunc(ls, func(a, b prompb.Label) int {
				switch {
				case a.Name < b.Name:
					return -1
				case a.Name > b.Name:
					return 1
				}
				return 0
			})
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: ls})
		}
		req.Timeseries[j].Samples = append(req.Timeseries[j].Samples, prompb.Sample{Value: s.V, Timestamp: s.T})
	}
	for i := range req.Timeseries {
		slices.SortStableFunc(req.Timeseries[i].Samples, func(a, b prompb.Sample) int {
			switch {
			case a.Timestamp < b.Timestamp:
				return -1
			case a.Timestamp > b.Timestamp:
				return 1
			}
			return 0
		})
	}
	return req
}
