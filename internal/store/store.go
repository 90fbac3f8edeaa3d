// Package store is loadwatch's time-series storage: the Prometheus TSDB and
// PromQL engine embedded as a library, with a write-ahead log, retention by
// time and size, and an out-of-order window so that replayed agent outboxes
// append without errors.
//
// It is the only package that imports github.com/prometheus/prometheus; its
// API speaks in plain Go types (Sample, Label, Result) so that callers such as
// ingest and the HTTP query API do not depend on Prometheus internals.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
)

// Names of the series loadwatch stores. Every series carries LabelDevice;
// MetricClassConfidence carries LabelClass too, and MetricEvents carries
// LabelEvent (the event kind).
const (
	MetricVoltage         = "loadwatch_voltage_volts"
	MetricCurrent         = "loadwatch_current_amperes"
	MetricPower           = "loadwatch_power_watts"
	MetricEnergy          = "loadwatch_energy_joules_total"
	MetricFrequency       = "loadwatch_frequency_hertz"
	MetricPowerFactor     = "loadwatch_power_factor_ratio"
	MetricClassConfidence = "loadwatch_class_confidence_ratio"
	// MetricEvents holds one sample per detected event (value 1) with the
	// event kind in LabelEvent, so that `loadwatch_events{device="x"}` can be
	// drawn as annotations and `count_over_time` counts events.
	MetricEvents = "loadwatch_events"

	LabelDevice = "device"
	LabelClass  = "class"
	LabelEvent  = "event"
)

// Label is one label pair of a series.
type Label struct {
	Name, Value string
}

// Sample is one value of one series. Labels may come in any order and must
// not contain "__name__" (that is Metric). T is in milliseconds since the
// Unix epoch (see Millis). Append keeps no reference to a batch after it
// returns, except with Options.RemoteWrite set: then the Labels slices are
// kept until sent, so do not modify them afterwards.
type Sample struct {
	Metric string
	Labels []Label
	T      int64
	V      float64
}

// Millis converts a time to the millisecond timestamps the store uses.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// Options configures a Store. Zero fields mean the documented defaults.
type Options struct {
	// Retention drops blocks whose data is older than this. Default 15 days.
	Retention time.Duration
	// MaxBytes drops the oldest blocks once blocks use more than this many
	// bytes (the WAL and head are not counted). 0 means no size limit.
	MaxBytes int64
	// OutOfOrderWindow accepts samples up to this far behind the newest
	// sample of the store. Default 24 h; a negative value disables it.
	OutOfOrderWindow time.Duration
	// QueryTimeout bounds one query. Default 2 minutes.
	QueryTimeout time.Duration
	// MaxSamples bounds the samples one query may load. Default 50 million.
	MaxSamples int
	// LookbackDelta is PromQL's staleness window. Default 5 minutes.
	LookbackDelta time.Duration
	// Logger receives TSDB and engine logs. Default: discard.
	Logger *slog.Logger
	// Registerer, when set, receives the TSDB and engine metrics.
	Registerer prometheus.Registerer
	// RemoteWrite, when set, is handed every sample that Append stores
	// (its Run must be running to send them).
	RemoteWrite *RemoteWriter
}

// Store is an open time-series database. It is safe for concurrent use.
type Store struct {
	db     *tsdb.DB
	engine *promql.Engine
	parser parser.Parser
	opts   Options

	mu    sync.RWMutex
	cache map[string]cached // series key -> labels and head reference
}

type cached struct {
	lset labels.Labels
	ref  storage.SeriesRef
}

// metricNameLabel is the label that holds a series' metric name.
const metricNameLabel = "__name__"

// maxCache bounds the series cache; past it the cache is dropped and refilled.
const maxCache = 1 << 20

// maxBlockDuration is the largest block compaction may build, as the
// Prometheus server sets it: a tenth of the retention, at most 31 days and
// at least one 2 h block. The TSDB library's own default (2 h) never merges
// blocks, so 15 days were 180 blocks, each with an index repeating every
// series and each opened by a query over the whole range. With 15 days'
// retention blocks grow to 2 h, 6 h and 18 h. Retention drops whole blocks,
// so data may outlive the retention by up to this much.
func maxBlockDuration(retention time.Duration) time.Duration {
	return max(2*time.Hour, min(31*24*time.Hour, retention/10))
}

// Open opens (or creates) the store in dir, replaying its WAL.
func Open(dir string, o Options) (*Store, error) {
	if o.Retention == 0 {
		o.Retention = 15 * 24 * time.Hour
	}
	if o.Retention < 0 {
		return nil, fmt.Errorf("store: retention %v must be positive", o.Retention)
	}
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("store: max bytes %d must not be negative", o.MaxBytes)
	}
	if o.OutOfOrderWindow == 0 {
		o.OutOfOrderWindow = 24 * time.Hour
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 2 * time.Minute
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = 50_000_000
	}
	if o.LookbackDelta <= 0 {
		o.LookbackDelta = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	to := tsdb.DefaultOptions()
	to.RetentionDuration = o.Retention.Milliseconds()
	to.MaxBlockDuration = maxBlockDuration(o.Retention).Milliseconds()
	to.MaxBytes = o.MaxBytes
	to.WALCompression = compression.Snappy
	if o.OutOfOrderWindow > 0 {
		to.OutOfOrderTimeWindow = o.OutOfOrderWindow.Milliseconds()
	}
	db, err := tsdb.Open(dir, o.Logger, o.Registerer, to, nil)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	p := parser.NewParser(parser.Options{})
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:                   o.Logger,
		Reg:                      o.Registerer,
		MaxSamples:               o.MaxSamples,
		Timeout:                  o.QueryTimeout,
		LookbackDelta:            o.LookbackDelta,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   p,
	})
	return &Store{db: db, engine: engine, parser: p, opts: o, cache: make(map[string]cached)}, nil
}

// Close flushes and closes the store. Samples already returned by Append are
// in the WAL and survive; Close also lets the head be compacted next time.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Errors a sample can be refused with (see AppendError).
var (
	// ErrConflict: a sample with the same series and timestamp but a
	// different value is already the newest sample of that series.
	ErrConflict = errors.New("store: different value for an existing timestamp")
	// ErrTooOld: the sample is older than the out-of-order window allows.
	ErrTooOld = errors.New("store: sample too old")
	// ErrInvalid: the sample's metric or label names are not valid.
	ErrInvalid = errors.New("store: invalid sample")
)

// AppendError reports samples of a batch that were refused. All other samples
// of the batch were stored. errors.Is(err, ErrConflict) etc. tell the cause of
// the first refusal; Refusals lists every refused sample, so that a caller
// that appends several callers' samples in one batch (ingest's group commit)
// can hand each its own refusals.
type AppendError struct {
	Refused  int       // samples not stored
	First    error     // cause of the first refusal
	Index    int       // index in the batch of the first refused sample
	Refusals []Refusal // every refused sample, by increasing index
}

// Refusal is one refused sample of a batch.
type Refusal struct {
	Index int   // index in the batch
	Err   error // why (errors.Is ErrConflict, ErrTooOld, ErrInvalid, or another cause)
}

func (e *AppendError) Error() string {
	return fmt.Sprintf("store: %d sample(s) refused, first at index %d: %v", e.Refused, e.Index, e.First)
}

func (e *AppendError) Unwrap() error { return e.First }

// Append stores a batch of samples in one WAL record set. When Append returns
// nil (or an *AppendError, for the samples it did not refuse), the samples are
// in the WAL and survive a crash of the process. Appending exactly the same
// sample again is harmless; see docs/STORAGE.md for what happens with the
// same timestamp and a different value.
func (s *Store) Append(ctx context.Context, batch []Sample) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	app := s.db.Appender(ctx)
	var aerr *AppendError
	var key []byte
	var pending []pendingRef
	for i := range batch {
		smp := &batch[i]
		key = seriesKey(key[:0], smp)
		s.mu.RLock()
		c, ok := s.cache[string(key)]
		s.mu.RUnlock()
		nc, err := appendSample(app, smp, c, ok)
		if err != nil {
			aerr = aerr.add(i, err)
			continue
		}
		if nc.ref != c.ref {
			pending = append(pending, pendingRef{key: string(key), c: nc})
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	if len(pending) > 0 {
		s.mu.Lock()
		if len(s.cache)+len(pending) > maxCache {
			clear(s.cache)
		}
		for _, p := range pending {
			s.cache[p.key] = p.c
		}
		s.mu.Unlock()
	}
	if rw := s.opts.RemoteWrite; rw != nil {
		if aerr == nil {
			rw.Enqueue(batch)
		} else {
			kept := make([]Sample, 0, len(batch)-aerr.Refused)
			refused := aerr.Refusals
			for i, smp := range batch {
				if len(refused) > 0 && refused[0].Index == i {
					refused = refused[1:]
					continue
				}
				kept = append(kept, smp)
			}
			rw.Enqueue(kept)
		}
	}
	if aerr != nil {
		return aerr
	}
	return nil
}

// add records that the sample at index i of a batch was refused with err,
// creating the error on the first refusal.
func (e *AppendError) add(i int, err error) *AppendError {
	if e == nil {
		e = &AppendError{First: err, Index: i}
	}
	e.Refused++
	e.Refusals = append(e.Refusals, Refusal{Index: i, Err: err})
	return e
}

// appendSample appends smp to app as a sample of series c, which is a
// cached series when ok and is otherwise built from smp's labels, and
// returns the series with the reference app gave it. Store.Append and the
// backfill share it, so both make exactly the same series.
func appendSample(app storage.Appender, smp *Sample, c cached, ok bool) (cached, error) {
	if !ok {
		lset, err := buildLabels(smp)
		if err != nil {
			return c, err
		}
		c = cached{lset: lset}
	}
	ref, err := app.Append(c.ref, c.lset, smp.T, smp.V)
	if err != nil {
		return c, mapAppendErr(err)
	}
	c.ref = ref
	return c, nil
}

type pendingRef struct {
	key string
	c   cached
}

func mapAppendErr(err error) error {
	switch {
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case errors.Is(err, storage.ErrTooOldSample), errors.Is(err, storage.ErrOutOfBounds),
		errors.Is(err, storage.ErrOutOfOrderSample):
		return fmt.Errorf("%w: %w", ErrTooOld, err)
	}
	return err
}

// seriesKey appends a key identifying the sample's series to b. Labels are
// keyed in the order given; the same labels in another order make another
// key for the same series, which only costs a cache entry.
func seriesKey(b []byte, smp *Sample) []byte {
	b = append(b, smp.Metric...)
	for _, l := range smp.Labels {
		b = append(b, 0xff)
		b = append(b, l.Name...)
		b = append(b, 0xfe)
		b = append(b, l.Value...)
	}
	return b
}

func buildLabels(smp *Sample) (labels.Labels, error) {
	if !validName(smp.Metric, true) {
		return labels.EmptyLabels(), fmt.Errorf("%w: metric name %q", ErrInvalid, smp.Metric)
	}
	b := labels.NewScratchBuilder(len(smp.Labels) + 1)
	b.Add(metricNameLabel, smp.Metric)
	for _, l := range smp.Labels {
		if l.Name == metricNameLabel || !validName(l.Name, false) {
			return labels.EmptyLabels(), fmt.Errorf("%w: label name %q", ErrInvalid, l.Name)
		}
		if l.Value == "" {
			continue // an empty label is no label, as in Prometheus
		}
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	lset := b.Labels()
	var prev string
	dup := false
	lset.Range(func(l labels.Label) {
		if l.Name == prev {
			dup = true
		}
		prev = l.Name
	})
	if dup {
		return labels.EmptyLabels(), fmt.Errorf("%w: duplicate label name %q", ErrInvalid, prev)
	}
	return lset, nil
}

// validName reports whether s is a legacy Prometheus metric name (colons
// allowed) or label name.
func validName(s string, metric bool) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		case c == ':' && metric:
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// HeadSeries returns the number of series in the in-memory head block.
func (s *Store) HeadSeries() uint64 { return s.db.Head().NumSeries() }

// Snapshot writes a consistent copy of the store (blocks and in-memory head)
// into dir, which must not be the store's own directory. The copy can be
// opened with Open. Blocks are hard-linked where the file system allows.
func (s *Store) Snapshot(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	own, err := filepath.Abs(s.db.Dir())
	if err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	if abs == own || strings.HasPrefix(abs, own+string(filepath.Separator)) {
		return fmt.Errorf("store: snapshot dir %s is inside the store", dir)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	if err := s.db.Snapshot(abs, true); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	return nil
}

// DeleteSeries deletes every sample of the series that selector (a PromQL
// series selector such as `{device="kitchen"}`) matches, and removes them
// from disk. It is what `loadwatch device delete --purge` calls.
func (s *Store) DeleteSeries(ctx context.Context, selector string) error {
	ms, err := s.parser.ParseMetricSelector(selector)
	if err != nil {
		return &QueryError{Kind: KindBadData, Err: fmt.Errorf("selector %q: %w", selector, err)}
	}
	if err := s.db.Delete(ctx, math.MinInt64, math.MaxInt64, ms...); err != nil {
		return fmt.Errorf("store: delete: %w", err)
	}
	if err := s.db.CleanTombstones(); err != nil {
		return fmt.Errorf("store: clean tombstones: %w", err)
	}
	s.mu.Lock()
	clear(s.cache)
	s.mu.Unlock()
	return nil
}

// DeleteDevice deletes every series of one device.
func (s *Store) DeleteDevice(ctx context.Context, device string) error {
	if device == "" {
		return fmt.Errorf("%w: empty device id", ErrInvalid)
	}
	return s.DeleteSeries(ctx, fmt.Sprintf("{%s=%q}", LabelDevice, device))
}

// sortedUnique sorts ss and removes duplicates.
func sortedUnique(ss []string) []string {
	slices.Sort(ss)
	return slices.Compact(ss)
}
