package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/classify"
	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/ingest"
	"loadwatch/internal/loadsim"
	"loadwatch/internal/power"
	"loadwatch/internal/readingscsv"
	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"
)

func TestBlockWindows(t *testing.T) {
	h := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		name, from, to string
		want           []string
	}{
		{"aligned", "2026-03-01T12:00:00Z", "2026-03-01T16:00:00Z", []string{"12:00:00.000-14:00:00.000", "14:00:00.000-16:00:00.000"}},
		{"unaligned ends", "2026-03-01T11:30:00.137Z", "2026-03-01T14:00:00.001Z", []string{"11:30:00.137-12:00:00.000", "12:00:00.000-14:00:00.000", "14:00:00.000-14:00:00.001"}},
		{"inside one", "2026-03-01T12:10:00Z", "2026-03-01T12:20:00Z", []string{"12:10:00.000-12:20:00.000"}},
		{"odd hour start", "2026-03-01T13:00:00Z", "2026-03-01T15:00:00Z", []string{"13:00:00.000-14:00:00.000", "14:00:00.000-15:00:00.000"}},
		{"empty", "2026-03-01T13:00:00Z", "2026-03-01T13:00:00Z", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, w := range store.BlockWindows(h(c.from), h(c.to)) {
				got = append(got, w[0].UTC().Format("15:04:05.000")+"-"+w[1].UTC().Format("15:04:05.000"))
			}
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("windows %v, want %v", got, c.want)
			}
		})
	}
}

// tinyModel is a 3-tree classifier over loadsim's labelled dataset: enough
// for ingest to write class series.
func tinyModel(t testing.TB) *forest.Model {
	t.Helper()
	var rows []readingscsv.Row
	err := loadsim.Dataset(loadsim.DatasetConfig{Seed: 1}, func(r loadsim.Row) error {
		rows = append(rows, readingscsv.Row{Device: "loadsim", Reading: r.Reading, Label: r.Label, Line: len(rows) + 2})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := classify.BuildDataset(features.SetLW1, features.Config{}, rows)
	if err != nil {
		t.Fatal(err)
	}
	f, err := forest.Train(context.Background(), d, forest.Config{Trees: 3, MinSamplesLeaf: 5, MinSamplesSplit: 2, Bootstrap: true, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return &forest.Model{FormatVersion: forest.FormatVersion, Kind: forest.KindLoadwatch, FeatureSet: features.SetLW1,
		Features: d.Features, Classes: d.Classes, Forest: f}
}

type model struct{ m *forest.Model }

func (m model) Model() *forest.Model { return m.m }

// ingestGen puts simulated readings of a few devices through a real ingest
// pipeline whose store is the window's appender.
type ingestGen struct {
	t        testing.TB
	pipe     *ingest.Pipeline
	app      store.Appender
	circ     []*loadsim.Circuit
	interval time.Duration
	seq      []uint64
	energy   []float64
}

func (g *ingestGen) Append(ctx context.Context, b []store.Sample) error { return g.app.Append(ctx, b) }

func newIngestGen(t testing.TB, devices int, interval time.Duration, m *forest.Model) *ingestGen {
	g := &ingestGen{t: t, interval: interval, seq: make([]uint64, devices), energy: make([]float64, devices)}
	cfg := ingest.Config{Store: g}
	if m != nil {
		cfg.Classifier = model{m}
	}
	p, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.pipe = p
	for i := range devices {
		g.circ = append(g.circ, loadsim.NewCircuit(loadsim.Config{Seed: int64(i + 1), Schedule: loadsim.ReferenceSchedule()}))
	}
	return g
}

func (g *ingestGen) window(ctx context.Context, from, to time.Time, app store.Appender) error {
	g.app = app
	first := time.UnixMilli((store.Millis(from) + g.interval.Milliseconds() - 1) / g.interval.Milliseconds() * g.interval.Milliseconds())
	for i, c := range g.circ {
		m := telemetry.Message{Epoch: fmt.Sprintf("epoch%d", i), Batch: true}
		for ts := first; ts.Before(to); ts = ts.Add(g.interval) {
			r := loadsim.Quantise(c.At(loadsim.DefaultStart.Add(ts.Sub(time.UnixMilli(0)) % time.Hour)))
			g.energy[i] += float64(r.Power) * g.interval.Hours()
			r.Time = ts.UTC()
			g.seq[i]++
			m.Readings = append(m.Readings, telemetry.Telemetry{Seq: g.seq[i], Reading: r, EnergyTotal: power.WattHours(g.energy[i]), HasEnergyTotal: true, State: telemetry.StateHeartbeat})
			if len(m.Readings) == 64 {
				if err := g.send(ctx, i, &m); err != nil {
					return err
				}
			}
		}
		if err := g.send(ctx, i, &m); err != nil {
			return err
		}
	}
	return nil
}

func (g *ingestGen) send(ctx context.Context, i int, m *telemetry.Message) error {
	if len(m.Readings) == 0 {
		return nil
	}
	dev := fmt.Sprintf("dev-%d", i)
	code, err := g.pipe.Ingest(ctx, dev, telemetry.Topic(dev, telemetry.ChannelTelemetry), m.AppendJSON(nil))
	m.Readings = m.Readings[:0]
	if err != nil || code != 0 {
		return fmt.Errorf("ingest 0x%02x: %w", code, err)
	}
	return nil
}

// dump returns every raw sample of the store in [from, to) by series.
func dump(t testing.TB, s *store.Store, from, to time.Time) map[string][]store.Point {
	t.Helper()
	res, err := s.Query(context.Background(), fmt.Sprintf(`{__name__=~".+"}[%dms]`, to.Sub(from).Milliseconds()), to.Add(-time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]store.Point{}
	for _, se := range res.Series {
		var parts []string
		for _, l := range se.Labels {
			parts = append(parts, l.Name+"="+l.Value)
		}
		out[strings.Join(parts, ",")] = se.Points
	}
	return out
}

// TestBackfillAsIngest backfills what a real ingest pipeline stores for
// simulated readings (meter series, energy ledger, class confidence,
// server-side events) and checks that the blocks open and hold exactly the
// series, labels and samples that the same pipeline appending to a live
// store holds.
func TestBackfillAsIngest(t *testing.T) {
	ctx := context.Background()
	m := tinyModel(t)
	from := time.Date(2026, 3, 1, 11, 20, 0, 137e6, time.UTC)
	to := from.Add(5 * time.Hour)

	dir := t.TempDir()
	st, err := store.Backfill(ctx, dir, from, to, newIngestGen(t, 3, 5*time.Second, m).window, store.BackfillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 11:20 .. 12:00, 12 .. 14, 14 .. 16, 16 .. 16:20.
	if st.Blocks != 4 {
		t.Errorf("%d blocks written, want 4", st.Blocks)
	}
	blocks, err := store.Blocks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 4 {
		t.Fatalf("%d blocks on disk, want 4", len(blocks))
	}
	var sum uint64
	for i, b := range blocks {
		w := store.BlockWindows(from, to)[i]
		if b.MinTime.Before(w[0]) || b.MaxTime.After(w[1]) || b.Level != 1 || b.IndexBytes == 0 || b.Bytes <= b.IndexBytes {
			t.Errorf("block %d: %v .. %v level %d, %d bytes; window %v .. %v", i, b.MinTime, b.MaxTime, b.Level, b.Bytes, w[0], w[1])
		}
		sum += b.Samples
	}
	if sum != st.Samples {
		t.Errorf("blocks hold %d samples, Backfill says %d", sum, st.Samples)
	}

	// The same readings through the same pipeline into a live store.
	live, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	g := newIngestGen(t, 3, 5*time.Second, m)
	for _, w := range store.BlockWindows(from, to) {
		if err := g.window(ctx, w[0], w[1], live); err != nil {
			t.Fatal(err)
		}
	}
	want := dump(t, live, from, to)

	bf, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	got := dump(t, bf, from, to)

	var n uint64
	kinds := map[string]int{}
	for k, pts := range want {
		kinds[strings.SplitN(k, ",", 2)[0]]++
		n += uint64(len(pts))
		gp, ok := got[k]
		if !ok {
			t.Errorf("series %s missing from the backfilled store", k)
			continue
		}
		if len(gp) != len(pts) {
			t.Errorf("series %s: %d samples backfilled, %d live", k, len(gp), len(pts))
			continue
		}
		for i := range pts {
			if gp[i].T != pts[i].T || math.Float64bits(gp[i].V) != math.Float64bits(pts[i].V) {
				t.Errorf("series %s sample %d: backfilled %v, live %v", k, i, gp[i], pts[i])
				break
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("series %s only in the backfilled store", k)
		}
	}
	if n != st.Samples {
		t.Errorf("live store holds %d samples, Backfill wrote %d", n, st.Samples)
	}
	// Every family ingest writes is there: the five meter series, the
	// ledger, classes and events.
	var names []string
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, f := range []string{store.MetricVoltage, store.MetricCurrent, store.MetricPower, store.MetricFrequency,
		store.MetricPowerFactor, store.MetricEnergy, store.MetricClassConfidence, store.MetricEvents} {
		if kinds["__name__="+f] == 0 {
			t.Errorf("no %s series; families: %v", f, names)
		}
	}
}

// TestBackfillDay: a day and more of one device gives one 2 h block per
// window (the store never merges blocks) and every sample is queryable.
func TestBackfillDay(t *testing.T) {
	ctx := context.Background()
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(26 * time.Hour)
	dir := t.TempDir()
	var last store.BackfillProgress
	st, err := store.Backfill(ctx, dir, from, to, newIngestGen(t, 1, time.Minute, nil).window,
		store.BackfillOptions{Progress: func(p store.BackfillProgress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 13 || last.Done != 13 || last.Windows != 13 || last.Samples != st.Samples {
		t.Errorf("%d blocks written, progress %+v; want 13", st.Blocks, last)
	}
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n uint64
	perReading := 0
	for k, pts := range dump(t, s, from, to) {
		n += uint64(len(pts))
		if !strings.HasPrefix(k, "__name__="+store.MetricEvents+",") {
			perReading++
			if len(pts) != 26*60 { // 26 h of a reading a minute
				t.Errorf("series %s: %d samples, want %d", k, len(pts), 26*60)
			}
		}
	}
	if n != st.Samples || perReading != 6 { // no model: no class series
		t.Errorf("queried %d samples in %d per-reading series, %d written; want 6 series", n, perReading, st.Samples)
	}
	blocks, err := store.Blocks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 13 {
		t.Errorf("%d blocks after the store opened them, want 13", len(blocks))
	}
}

func TestBackfillRefusals(t *testing.T) {
	ctx := context.Background()
	from := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	gen := func(ctx context.Context, wf, wt time.Time, app store.Appender) error {
		return app.Append(ctx, []store.Sample{
			{Metric: store.MetricPower, Labels: store.DeviceLabels("a"), T: store.Millis(wf), V: 1},
			{Metric: store.MetricPower, Labels: store.DeviceLabels("a"), T: store.Millis(wt), V: 2},        // outside
			{Metric: "bad name", Labels: store.DeviceLabels("a"), T: store.Millis(wf), V: 3},               // invalid
			{Metric: store.MetricPower, Labels: store.DeviceLabels("a"), T: store.Millis(wf) + 1000, V: 4}, // kept
		})
	}
	_, err := store.Backfill(ctx, t.TempDir(), from, from.Add(time.Hour), gen, store.BackfillOptions{})
	var ae *store.AppendError
	if !errors.As(err, &ae) || !errors.Is(err, store.ErrOutsideWindow) || ae.Refused != 2 {
		t.Fatalf("err %v, want 2 refusals, the first outside the window", err)
	}
	if !errors.Is(ae.Refusals[1].Err, store.ErrInvalid) {
		t.Errorf("second refusal %v, want ErrInvalid", ae.Refusals[1].Err)
	}
	// A generator that tolerates refusals gets its other samples written.
	dir := t.TempDir()
	st, err := store.Backfill(ctx, dir, from, from.Add(time.Hour), func(ctx context.Context, wf, wt time.Time, app store.Appender) error {
		if err := gen(ctx, wf, wt, app); !errors.As(err, &ae) {
			return err
		}
		return nil
	}, store.BackfillOptions{})
	if err != nil || st.Samples != 2 || st.Blocks != 1 {
		t.Fatalf("stats %+v, err %v; want 2 samples in 1 block", st, err)
	}
	if _, err := store.Backfill(ctx, dir, from, from, gen, store.BackfillOptions{}); err == nil {
		t.Error("empty range accepted")
	}
	if _, err := store.Backfill(ctx, dir, from, from.Add(time.Hour), nil, store.BackfillOptions{}); err == nil {
		t.Error("nil generator accepted")
	}
}

// TestBlocksMerge: compaction merges 2 h blocks into larger ones (up to a
// tenth of the retention, as Prometheus does) and loses no sample.
func TestBlocksMerge(t *testing.T) {
	for _, c := range []struct{ retention, want time.Duration }{
		{15 * 24 * time.Hour, 36 * time.Hour},
		{time.Hour, 2 * time.Hour},
		{365 * 24 * time.Hour, 31 * 24 * time.Hour},
	} {
		if got := store.MaxBlockDuration(c.retention); got != c.want {
			t.Errorf("retention %v: largest block %v, want %v", c.retention, got, c.want)
		}
	}
	ctx := context.Background()
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(26 * time.Hour)
	dir := t.TempDir()
	st, err := store.Backfill(ctx, dir, from, to, newIngestGen(t, 1, time.Minute, nil).window, store.BackfillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(dir, store.Options{Retention: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := dump(t, s, from, to)
	if err := store.Compact(ctx, s); err != nil {
		t.Fatal(err)
	}
	blocks, err := store.Blocks(dir)
	if err != nil {
		t.Fatal(err)
	}
	longest := time.Duration(0)
	for _, b := range blocks {
		longest = max(longest, b.MaxTime.Sub(b.MinTime))
	}
	if len(blocks) >= int(st.Blocks) || longest <= 2*time.Hour {
		t.Errorf("%d blocks after compaction (longest %v), %d before: nothing merged", len(blocks), longest, st.Blocks)
	}
	after := dump(t, s, from, to)
	if len(after) != len(before) {
		t.Fatalf("%d series after compaction, %d before", len(after), len(before))
	}
	for k, pts := range before {
		if len(after[k]) != len(pts) {
			t.Errorf("series %s: %d samples after compaction, %d before", k, len(after[k]), len(pts))
		}
	}
}
