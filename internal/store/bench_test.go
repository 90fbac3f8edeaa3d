package store

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var deviceMetrics = []string{MetricVoltage, MetricCurrent, MetricPower, MetricEnergy, MetricFrequency, MetricPowerFactor}

// fleetStep returns one 5 s step of a fleet: the six meter series plus the
// class confidence of every device (7 series per device).
func fleetStep(dst []Sample, labels [][]Label, classLabels [][]Label, step int, t0 int64) []Sample {
	ts := t0 + int64(step)*5000
	for d := range labels {
		for m, name := range deviceMetrics {
			dst = append(dst, Sample{Metric: name, Labels: labels[d], T: ts + int64(d%1000), V: float64(step*(m+1)) + float64(d)/7})
		}
		dst = append(dst, Sample{Metric: MetricClassConfidence, Labels: classLabels[d], T: ts + int64(d%1000), V: 0.5 + float64(step%50)/100})
	}
	return dst
}

func fleetLabels(devices int) ([][]Label, [][]Label) {
	l := make([][]Label, devices)
	c := make([][]Label, devices)
	for d := range devices {
		id := fmt.Sprintf("dev-%05d", d)
		l[d] = []Label{{LabelDevice, id}}
		c[d] = []Label{{LabelClass, []string{"kettle", "laptop", "printer", "standby"}[d%4]}, {LabelDevice, id}}
	}
	return l, c
}

// BenchmarkAppend measures batch ingest: one op appends one 5 s step of
// 1,000 devices (7,000 samples) in one call, as ingest does with a batch.
func BenchmarkAppend(b *testing.B) {
	s := openTest(b, Options{})
	labels, classes := fleetLabels(1000)
	ctx := context.Background()
	batch := fleetStep(nil, labels, classes, 0, base)
	if err := s.Append(ctx, batch); err != nil { // create the series
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	step := 1
	for b.Loop() {
		batch = fleetStep(batch[:0], labels, classes, step, base)
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
		step++
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkAppendParallel is BenchmarkAppend with 100-sample batches from
// concurrent callers (ingest workers each storing a few readings).
func BenchmarkAppendParallel(b *testing.B) {
	s := openTest(b, Options{})
	labels, classes := fleetLabels(1000)
	ctx := context.Background()
	if err := s.Append(ctx, fleetStep(nil, labels, classes, 0, base)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var total int64
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine owns different devices so its series stay in order.
		g := int(time.Now().UnixNano() % 1000)
		batch := make([]Sample, 0, 100)
		step := 1
		for pb.Next() {
			batch = batch[:0]
			for i := range 100 / 7 {
				d := (g + i) % 1000
				batch = fleetStep(batch, labels[d:d+1], classes[d:d+1], step, base)
			}
			err := s.Append(ctx, batch)
			if err != nil && !strings.Contains(err.Error(), "refused") {
				b.Error(err)
				return
			}
			step++
		}
		_ = total
	})
	b.ReportMetric(float64(b.N*98)/b.Elapsed().Seconds(), "samples/s")
}

// queryFixture holds 100 devices with one hour of 5 s data.
func queryFixture(b *testing.B) *Store {
	s := openTest(b, Options{})
	labels, classes := fleetLabels(100)
	ctx := context.Background()
	var batch []Sample
	for step := range 720 {
		batch = fleetStep(batch[:0], labels, classes, step, base)
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkQuery: an instant dashboard query over 100 devices.
func BenchmarkQuery(b *testing.B) {
	s := queryFixture(b)
	at := time.UnixMilli(base + 719*5000)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		r, err := s.Query(ctx, `sum by (device) (rate(`+MetricEnergy+`[5m]))`, at)
		if err != nil || len(r.Series) != 100 {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueryRange: one hour of one device's power at 15 s resolution
// (240 points), the device page's default chart.
func BenchmarkQueryRange(b *testing.B) {
	s := queryFixture(b)
	ctx := context.Background()
	start, end := time.UnixMilli(base), time.UnixMilli(base+719*5000)
	b.ResetTimer()
	for b.Loop() {
		r, err := s.QueryRange(ctx, `avg_over_time(`+MetricPower+`{device="dev-00042"}[15s])`, start, end, 15*time.Second)
		if err != nil || len(r.Series) != 1 {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueryRangeFleet: one hour of the whole fleet's summed power at
// 15 s resolution.
func BenchmarkQueryRangeFleet(b *testing.B) {
	s := queryFixture(b)
	ctx := context.Background()
	start, end := time.UnixMilli(base), time.UnixMilli(base+719*5000)
	b.ResetTimer()
	for b.Loop() {
		r, err := s.QueryRange(ctx, `sum(avg_over_time(`+MetricPower+`[1m]))`, start, end, 15*time.Second)
		if err != nil || len(r.Series) != 1 {
			b.Fatal(err)
		}
	}
}

// procStatus returns a field of /proc/self/status in bytes.
func procStatus(t testing.TB, field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// memSample: Go heap in use, resident anonymous memory (what cannot be
// evicted) and resident file pages (memory-mapped chunks and blocks, which
// the kernel can drop and re-read).
type memSample struct{ heap, rss, file int64 }

func measure(t testing.TB) memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: int64(ms.HeapInuse), rss: procStatus(t, "RssAnon"), file: procStatus(t, "RssFile")}
}

// TestMemoryPerSeriesAndSample measures the store's memory. The short form
// (always run) uses 50 devices for 10 minutes and only checks that the
// measurement works; LOADWATCH_LONG=1 runs 1,000 devices (7,000 series) for
// 3 hours of 5 s data, compacts the first 2 hours into a block, and logs the
// figures used in docs/STORAGE.md.
func TestMemoryPerSeriesAndSample(t *testing.T) {
	devices, steps := 50, 120
	if os.Getenv("LOADWATCH_LONG") != "" {
		devices, steps = 1000, 3*720+120 // 3 h 10 min: the head then compacts
	}
	before := measure(t)
	s := openTest(t, Options{})
	baseline := measure(t) // an empty open store
	labels, classes := fleetLabels(devices)
	ctx := context.Background()
	batch := fleetStep(nil, labels, classes, 0, base)
	if err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	series := len(batch)
	afterSeries := measure(t)
	start := time.Now()
	for step := 1; step < steps; step++ {
		batch = fleetStep(batch[:0], labels, classes, step, base)
		if err := s.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if step%12 == 0 {
			// The TSDB moves full head chunks to memory-mapped files about
			// every minute of wall time; this test writes an hour of data
			// in seconds, so it does that every minute of data time.
			s.db.ForceHeadMMap()
		}
	}
	elapsed := time.Since(start)
	samples := int64(series) * int64(steps)
	full := measure(t)
	if got := s.HeadSeries(); got != uint64(series) {
		t.Fatalf("head holds %d series, want %d", got, series)
	}
	perSeries := float64(afterSeries.heap-baseline.heap) / float64(series)
	perSample := float64(full.heap-afterSeries.heap) / float64(samples-int64(series))
	t.Logf("%d devices, %d series, %d samples appended in %v (%.0f samples/s)", devices, series, samples, elapsed.Round(time.Millisecond), float64(samples)/elapsed.Seconds())
	t.Logf("empty store: heap %.1f MiB, anon rss %.1f MiB (fixed cost)", mib(baseline.heap-before.heap), mib(baseline.rss-before.rss))
	t.Logf("heap: baseline %.1f MiB, with series %.1f MiB, full head %.1f MiB", mib(baseline.heap), mib(afterSeries.heap), mib(full.heap))
	t.Logf("anon rss: baseline %.1f MiB, with series %.1f MiB, full head %.1f MiB", mib(baseline.rss), mib(afterSeries.rss), mib(full.rss))
	t.Logf("file rss: baseline %.1f MiB, with series %.1f MiB, full head %.1f MiB", mib(baseline.file), mib(afterSeries.file), mib(full.file))
	t.Logf("per series %.0f B heap, %.0f B anon rss; per head sample %.2f B heap, %.2f B anon rss", perSeries,
		float64(afterSeries.rss-baseline.rss)/float64(series), perSample, float64(full.rss-afterSeries.rss)/float64(samples-int64(series)))
	if perSeries <= 0 || full.heap <= baseline.heap {
		t.Fatalf("memory did not grow with data: %+v %+v %+v", baseline, afterSeries, full)
	}
	if err := s.db.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	compacted := measure(t)
	blocks := len(s.db.Blocks())
	t.Logf("after compaction: %d block(s), head %d series; heap %.1f MiB, anon rss %.1f MiB, file rss %.1f MiB",
		blocks, s.HeadSeries(), mib(compacted.heap), mib(compacted.rss), mib(compacted.file))
	for _, b := range s.db.Blocks() {
		m := b.Meta()
		t.Logf("block %v..%v: %d samples, %d series, %.1f MiB on disk (%.2f B/sample)",
			time.UnixMilli(m.MinTime).UTC().Format(time.TimeOnly), time.UnixMilli(m.MaxTime).UTC().Format(time.TimeOnly),
			m.Stats.NumSamples, m.Stats.NumSeries, mib(b.Size()), float64(b.Size())/float64(m.Stats.NumSamples))
	}
	if os.Getenv("LOADWATCH_LONG") != "" && blocks == 0 {
		t.Fatal("3 hours of data were not compacted into a block")
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
