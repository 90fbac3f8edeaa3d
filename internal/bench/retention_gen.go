package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/forest"
	"loadwatch/internal/ingest"
	"loadwatch/internal/loadsim"
	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"
)

// HistoryConfig configures a History. Zero fields mean the documented
// defaults.
type HistoryConfig struct {
	Devices  []string      // device ids (required)
	Interval time.Duration // between two readings of one device [5 s]
	Seed     int64         // of the circuits and epochs [1]
	// Schedule is the appliance schedule of every circuit
	// [loadsim.ReferenceDay, the representative day; its phase follows the
	// UTC time of day].
	Schedule *loadsim.Schedule
	// Model classifies the readings as the server's would (nil: no
	// class series, as a server with --no-model).
	Model *forest.Model
	// Workers process devices in parallel [GOMAXPROCS].
	Workers int
	// Check lists devices whose appended samples are counted by series
	// (see Counts), to verify them against the server afterwards.
	Check []string
}

// History generates past readings of a fleet and puts them through a real
// ingest pipeline (decode, ledger, features, classification, server-side
// anomaly detection), so that what it appends is exactly what ingest
// stores for a reading: its Window method is a store.BackfillFunc.
// Readings of device i are at multiples of Interval plus a phase of
// i/len(Devices) of an interval, values from loadsim circuits (a pool of
// up to 64 seeded circuits, each device at its own offset into the
// schedule).
type History struct {
	cfg  HistoryConfig
	pipe *ingest.Pipeline
	sw   switchStore
	devs []*histDevice

	readings atomic.Uint64
	origin   time.Time // UTC midnight before the first window: the circuits' day 0
	mu       sync.Mutex
	counts   map[string]map[string]uint64 // device -> series key -> samples
	check    map[string]bool
}

type histDevice struct {
	id, topic, epoch string
	meter            simMeter
	phase            time.Duration
	buf              []byte
	msg              telemetry.Message
}

// switchStore is the pipeline's store: the appender of the current window.
type switchStore struct {
	mu  sync.RWMutex
	app store.Appender
	h   *History
}

func (s *switchStore) Append(ctx context.Context, batch []store.Sample) error {
	s.mu.RLock()
	app := s.app
	s.mu.RUnlock()
	if app == nil {
		return errors.New("bench: history: no window open")
	}
	err := app.Append(ctx, batch)
	s.h.count(batch, err)
	return err
}

type fixedModel struct{ m *forest.Model }

func (f fixedModel) Model() *forest.Model { return f.m }

// NewHistory prepares the devices' circuits and an ingest pipeline.
func NewHistory(cfg HistoryConfig) (*History, error) {
	if len(cfg.Devices) == 0 {
		return nil, errors.New("bench: history: no devices")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	sched := loadsim.ReferenceDay()
	if cfg.Schedule != nil {
		sched = *cfg.Schedule
	}
	h := &History{cfg: cfg, counts: map[string]map[string]uint64{}, check: map[string]bool{}}
	h.sw.h = h
	for _, id := range cfg.Check {
		h.check[id] = true
	}
	icfg := ingest.Config{Store: &h.sw}
	if cfg.Model != nil {
		icfg.Classifier = fixedModel{cfg.Model}
	}
	p, err := ingest.New(icfg)
	if err != nil {
		return nil, fmt.Errorf("bench: history: %w", err)
	}
	h.pipe = p
	pool := make([]*loadsim.Circuit, min(len(cfg.Devices), 64))
	for i := range pool {
		pool[i] = loadsim.NewCircuit(loadsim.Config{Seed: cfg.Seed + int64(i), Schedule: sched})
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6869))
	n := len(cfg.Devices)
	for i, id := range cfg.Devices {
		if err := telemetry.ValidateDeviceID(id); err != nil {
			return nil, fmt.Errorf("bench: history: %w", err)
		}
		h.devs = append(h.devs, &histDevice{
			id: id, topic: telemetry.Topic(id, telemetry.ChannelTelemetry), epoch: fmt.Sprintf("%016x", rng.Uint64()),
			meter: newSimMeter(pool, i),
			phase: time.Duration(int64(cfg.Interval) * int64(i) / int64(n)).Truncate(time.Millisecond),
		})
	}
	return h, nil
}

// Readings is how many readings were ingested so far.
func (h *History) Readings() uint64 { return h.readings.Load() }

// Counts returns, for each device of HistoryConfig.Check, the samples
// stored per series (key: metric name and labels as
// SeriesKey(name, labels) makes it).
func (h *History) Counts() map[string]map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]map[string]uint64, len(h.counts))
	for d, m := range h.counts {
		c := make(map[string]uint64, len(m))
		for k, v := range m {
			c[k] = v
		}
		out[d] = c
	}
	return out
}

func (h *History) count(batch []store.Sample, err error) {
	if len(h.check) == 0 {
		return
	}
	var refused map[int]bool
	var ae *store.AppendError
	if errors.As(err, &ae) {
		refused = map[int]bool{}
		for _, r := range ae.Refusals {
			refused[r.Index] = true
		}
	} else if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range batch {
		s := &batch[i]
		dev := ""
		for _, l := range s.Labels {
			if l.Name == store.LabelDevice {
				dev = l.Value
			}
		}
		if !h.check[dev] || refused[i] {
			continue
		}
		m := h.counts[dev]
		if m == nil {
			m = map[string]uint64{}
			h.counts[dev] = m
		}
		ls := map[string]string{}
		for _, l := range s.Labels {
			if l.Value != "" {
				ls[l.Name] = l.Value
			}
		}
		m[SeriesKey(s.Metric, ls)]++
	}
}

// SeriesKey is a canonical key of a series: its metric name and its labels
// (without __name__) sorted by name.
func SeriesKey(metric string, labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		if k != "__name__" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	b := []byte(metric)
	b = append(b, '{')
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%s=%q", k, labels[k])
	}
	return string(append(b, '}'))
}

// Window ingests every device's readings of [from, to) and appends what
// ingest stores to app. It is a store.BackfillFunc: windows must come in
// increasing time order.
func (h *History) Window(ctx context.Context, from, to time.Time, app store.Appender) error {
	if h.origin.IsZero() {
		h.origin = from.UTC().Truncate(24 * time.Hour)
	}
	h.sw.mu.Lock()
	h.sw.app = app
	h.sw.mu.Unlock()
	defer func() {
		h.sw.mu.Lock()
		h.sw.app = nil
		h.sw.mu.Unlock()
	}()
	next := make(chan *histDevice)
	errc := make(chan error, h.cfg.Workers)
	var wg sync.WaitGroup
	for range h.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range next {
				if err := h.ingestWindow(ctx, d, from, to); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, d := range h.devs {
		select {
		case next <- d:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// ingestWindow sends d's readings of [from, to) in replay batches of
// MaxReplay readings, as an agent replaying its outbox would.
func (h *History) ingestWindow(ctx context.Context, d *histDevice, from, to time.Time) error {
	iv := h.cfg.Interval
	// First reading time >= from on d's grid (multiples of iv plus phase).
	k := from.Add(-d.phase).UnixNano() / int64(iv)
	t := time.Unix(0, k*int64(iv)).Add(d.phase)
	for t.Before(from) {
		t = t.Add(iv)
	}
	day := h.origin
	for t.Before(to) {
		d.msg = telemetry.Message{Epoch: d.epoch, Batch: true, Readings: d.msg.Readings[:0]}
		for len(d.msg.Readings) < MaxReplay && t.Before(to) {
			d.msg.Readings = append(d.msg.Readings, d.read(t, day))
			t = t.Add(iv)
		}
		d.buf = d.msg.AppendJSON(d.buf[:0])
		code, err := h.pipe.Ingest(ctx, d.id, d.topic, d.buf)
		if err != nil || code != ingest.CodeOK {
			return fmt.Errorf("bench: history: device %s: ingest answered 0x%02x: %w", d.id, code, err)
		}
		h.readings.Add(uint64(len(d.msg.Readings)))
	}
	return nil
}

// read is d's reading at ts, as the fleet's simulated agents take it.
func (d *histDevice) read(ts time.Time, day time.Time) telemetry.Telemetry {
	ts = ts.Truncate(time.Millisecond).UTC()
	return d.meter.read(ts, ts.Sub(day))
}
