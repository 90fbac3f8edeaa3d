package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// base is a fixed, unaligned start time for the tests (ms).
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli() + 137

func openTest(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dev(id string) []Label { return []Label{{LabelDevice, id}} }

// countSamples reads every raw sample of the series matched by ms.
func countSamples(t testing.TB, s *Store, ms ...*labels.Matcher) map[int64]float64 {
	t.Helper()
	q, err := s.db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	out := map[int64]float64{}
	set := q.Select(context.Background(), false, nil, ms...)
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			ts, v := it.At()
			out[ts] = v
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendAndQuery(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	var batch []Sample
	for i := range 60 {
		ts := base + int64(i)*5000
		batch = append(batch,
			Sample{Metric: MetricPower, Labels: dev("a"), T: ts, V: float64(100 + i)},
			Sample{Metric: MetricPower, Labels: dev("b"), T: ts, V: 50},
		)
	}
	if err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(base + 59*5000)
	res, err := s.Query(ctx, `sum by (device) (`+MetricPower+`)`, at)
	if err != nil {
		t.Fatal(err)
	}
	if res.Type != TypeVector || len(res.Series) != 2 {
		t.Fatalf("got %+v", res)
	}
	got := map[string]float64{}
	for _, ser := range res.Series {
		got[ser.Labels[0].Value] = ser.Points[0].V
	}
	if got["a"] != 159 || got["b"] != 50 {
		t.Fatalf("sum by device = %v", got)
	}
	rr, err := s.QueryRange(ctx, MetricPower+`{device="a"}`, time.UnixMilli(base), at, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rr.Type != TypeMatrix || len(rr.Series) != 1 || len(rr.Series[0].Points) != 30 {
		t.Fatalf("range: %+v", rr)
	}
	if p := rr.Series[0].Points[3]; p.T != base+30000 || p.V != 106 {
		t.Fatalf("point 3 = %+v", p)
	}
	sc, err := s.Query(ctx, `1+1`, at)
	if err != nil || sc.Type != TypeScalar || sc.Scalar.V != 2 {
		t.Fatalf("scalar: %+v %v", sc, err)
	}
}

func TestQueryErrors(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	now := time.UnixMilli(base)
	for _, tc := range []struct {
		q    string
		kind ErrorKind
	}{
		{`sum(`, KindBadData},
		{`rate(x[5m]`, KindBadData},
		{`{}`, KindBadData},
	} {
		_, err := s.Query(ctx, tc.q, now)
		var qe *QueryError
		if !errors.As(err, &qe) || qe.Kind != tc.kind {
			t.Errorf("%q: err %v, want kind %s", tc.q, err, tc.kind)
		}
	}
	if _, err := s.QueryRange(ctx, `1`, now, now.Add(-time.Second), time.Second); err == nil {
		t.Error("end before start accepted")
	}
	if _, err := s.QueryRange(ctx, `1`, now, now.Add(time.Hour), 0); err == nil {
		t.Error("zero step accepted")
	}
	if _, err := s.QueryRange(ctx, `1`, now, now.Add(24*time.Hour), time.Second); err == nil {
		t.Error("86400 points accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := s.Query(cctx, `1`, now)
	var qe *QueryError
	if !errors.As(err, &qe) || qe.Kind != KindCanceled {
		t.Errorf("canceled query: %v", err)
	}
}

func TestAppendIdempotentAndConflicts(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	var batch []Sample
	for i := range 10 {
		batch = append(batch, Sample{Metric: MetricVoltage, Labels: dev("a"), T: base + int64(i)*1000, V: 230 + float64(i)})
	}
	if err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// The same batch again (a replayed outbox): harmless, no error.
	if err := s.Append(ctx, batch); err != nil {
		t.Fatalf("replay: %v", err)
	}
	m := labels.MustNewMatcher(labels.MatchEqual, "__name__", MetricVoltage)
	got := countSamples(t, s, m)
	if len(got) != 10 {
		t.Fatalf("%d samples after replay, want 10", len(got))
	}
	// Same timestamp as the newest sample, different value: refused.
	err := s.Append(ctx, []Sample{
		{Metric: MetricVoltage, Labels: dev("a"), T: base + 9000, V: 1},
		{Metric: MetricVoltage, Labels: dev("a"), T: base + 10000, V: 240},
	})
	var ae *AppendError
	if !errors.As(err, &ae) || !errors.Is(err, ErrConflict) || ae.Refused != 1 || ae.Index != 0 {
		t.Fatalf("conflict: %v", err)
	}
	got = countSamples(t, s, m)
	if got[base+9000] != 239 || got[base+10000] != 240 {
		t.Fatalf("after conflict: %v", got)
	}
	// Same timestamp as an older sample, different value: goes to the
	// out-of-order head; queries see exactly one value at that time.
	if err := s.Append(ctx, []Sample{{Metric: MetricVoltage, Labels: dev("a"), T: base + 2000, V: 1}}); err != nil {
		t.Fatalf("older conflicting sample: %v", err)
	}
	got = countSamples(t, s, m)
	if len(got) != 11 {
		t.Fatalf("%d samples, want 11", len(got))
	}
	// Out of order within the window is accepted; beyond it refused.
	err = s.Append(ctx, []Sample{
		{Metric: MetricVoltage, Labels: dev("a"), T: base - int64(time.Hour/time.Millisecond), V: 229},
		{Metric: MetricVoltage, Labels: dev("a"), T: base - int64(25*time.Hour/time.Millisecond), V: 228},
	})
	if !errors.As(err, &ae) || !errors.Is(err, ErrTooOld) || ae.Refused != 1 || ae.Index != 1 {
		t.Fatalf("too old: %v", err)
	}
	if got = countSamples(t, s, m); len(got) != 12 {
		t.Fatalf("%d samples, want 12", len(got))
	}
}

// TestAppendErrorListsEveryRefusal: a batch that mixes several devices'
// samples (as ingest's group commit appends them) reports every refused
// sample with its index and cause, and stores all the others.
func TestAppendErrorListsEveryRefusal(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	if err := s.Append(ctx, []Sample{
		{Metric: MetricPower, Labels: dev("a"), T: base, V: 1},
		{Metric: MetricPower, Labels: dev("b"), T: base, V: 2},
	}); err != nil {
		t.Fatal(err)
	}
	err := s.Append(ctx, []Sample{
		{Metric: MetricPower, Labels: dev("c"), T: base, V: 3},                                        // stored
		{Metric: MetricPower, Labels: dev("a"), T: base, V: 9},                                        // conflict
		{Metric: MetricPower, Labels: dev("d"), T: base, V: 4},                                        // stored
		{Metric: MetricPower, Labels: dev("b"), T: base - int64(25*time.Hour/time.Millisecond), V: 5}, // too old
		{Metric: "bad metric", Labels: dev("e"), T: base, V: 6},                                       // invalid
		{Metric: MetricPower, Labels: dev("b"), T: base + 1000, V: 7},                                 // stored
	})
	var ae *AppendError
	if !errors.As(err, &ae) || ae.Refused != 3 || ae.Index != 1 || !errors.Is(err, ErrConflict) {
		t.Fatalf("append: %v", err)
	}
	want := []struct {
		i   int
		err error
	}{{1, ErrConflict}, {3, ErrTooOld}, {4, ErrInvalid}}
	if len(ae.Refusals) != len(want) {
		t.Fatalf("refusals %+v, want %d", ae.Refusals, len(want))
	}
	for k, w := range want {
		if r := ae.Refusals[k]; r.Index != w.i || !errors.Is(r.Err, w.err) {
			t.Errorf("refusal %d: %+v, want index %d %v", k, r, w.i, w.err)
		}
	}
	m := labels.MustNewMatcher(labels.MatchEqual, "__name__", MetricPower)
	if got := countSamples(t, s, m); len(got) != 2 { // timestamps base and base+1000
		t.Fatalf("timestamps %v", got)
	}
	for id, n := range map[string]int{"a": 1, "b": 2, "c": 1, "d": 1} {
		if got := countSamples(t, s, m, labels.MustNewMatcher(labels.MatchEqual, LabelDevice, id)); len(got) != n {
			t.Errorf("device %s: %v, want %d samples", id, got, n)
		}
	}
}

func TestAppendInvalid(t *testing.T) {
	s := openTest(t, Options{})
	for _, smp := range []Sample{
		{Metric: "", T: base},
		{Metric: "bad metric", T: base},
		{Metric: "ok", Labels: []Label{{"__name__", "x"}}, T: base},
		{Metric: "ok", Labels: []Label{{"1x", "x"}}, T: base},
		{Metric: "ok", Labels: []Label{{"a", "x"}, {"a", "y"}}, T: base},
	} {
		err := s.Append(context.Background(), []Sample{smp})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", smp, err)
		}
	}
}

func TestOutOfOrderDisabled(t *testing.T) {
	s := openTest(t, Options{OutOfOrderWindow: -1})
	ctx := context.Background()
	if err := s.Append(ctx, []Sample{{Metric: MetricPower, Labels: dev("a"), T: base, V: 1}}); err != nil {
		t.Fatal(err)
	}
	err := s.Append(ctx, []Sample{{Metric: MetricPower, Labels: dev("a"), T: base - 1000, V: 1}})
	if !errors.Is(err, ErrTooOld) {
		t.Fatalf("out-of-order with window disabled: %v", err)
	}
}

func TestLabelsSeriesDelete(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	var batch []Sample
	for i := range 5 {
		ts := base + int64(i)*5000
		batch = append(batch,
			Sample{Metric: MetricPower, Labels: dev("a"), T: ts, V: 1},
			Sample{Metric: MetricPower, Labels: dev("b"), T: ts, V: 2},
			Sample{Metric: MetricClassConfidence, Labels: []Label{{LabelClass, "kettle"}, {LabelDevice, "a"}}, T: ts, V: 0.9},
		)
	}
	if err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	names, err := s.LabelNames(ctx, nil, time.Time{}, time.Time{})
	if err != nil || fmt.Sprint(names) != "[__name__ class device]" {
		t.Fatalf("names %v %v", names, err)
	}
	vals, err := s.LabelValues(ctx, LabelDevice, []string{MetricPower}, time.Time{}, time.Time{})
	if err != nil || fmt.Sprint(vals) != "[a b]" {
		t.Fatalf("values %v %v", vals, err)
	}
	ser, err := s.Series(ctx, []string{`{device="a"}`}, time.Time{}, time.Time{})
	if err != nil || len(ser) != 2 {
		t.Fatalf("series %v %v", ser, err)
	}
	if _, err := s.Series(ctx, []string{`{`}, time.Time{}, time.Time{}); err == nil {
		t.Fatal("bad selector accepted")
	}
	if err := s.DeleteDevice(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ser, err = s.Series(ctx, []string{`{__name__=~".+"}`}, time.Time{}, time.Time{})
	if err != nil || len(ser) != 1 || ser[0][1].Value != "b" {
		t.Fatalf("after delete: %v %v", ser, err)
	}
	// The deleted device can report again.
	if err := s.Append(ctx, []Sample{{Metric: MetricPower, Labels: dev("a"), T: base + 60000, V: 3}}); err != nil {
		t.Fatal(err)
	}
	if got := countSamples(t, s, labels.MustNewMatcher(labels.MatchEqual, LabelDevice, "a")); len(got) != 1 {
		t.Fatalf("after re-add: %v", got)
	}
}

func TestSnapshotAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var batch []Sample
	for i := range 100 {
		batch = append(batch, Sample{Metric: MetricEnergy, Labels: dev("a"), T: base + int64(i)*5000, V: float64(i)})
	}
	if err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(dir + "/snap"); err == nil {
		t.Fatal("snapshot inside the store accepted")
	}
	snap := t.TempDir() + "/snap"
	if err := s.Snapshot(snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(snap, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := countSamples(t, c, labels.MustNewMatcher(labels.MatchEqual, LabelDevice, "a")); len(got) != 100 || got[base+99*5000] != 99 {
		t.Fatalf("snapshot holds %d samples", len(got))
	}
}

// TestCrashLosesNothingAcknowledged runs a child process that appends
// batches and reports each acknowledged batch on stdout, kills it with
// SIGKILL mid-stream, reopens the store and checks every acknowledged sample.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	if dir := os.Getenv("LOADWATCH_STORE_CRASH_DIR"); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLosesNothingAcknowledged$")
	cmd.Env = append(os.Environ(), "LOADWATCH_STORE_CRASH_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked := -1
	deadline := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			continue
		}
		acked = n
		if acked >= 200 {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if acked < 200 {
		t.Fatalf("child acknowledged only %d batches", acked)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := countSamples(t, s, labels.MustNewMatcher(labels.MatchEqual, "__name__", MetricPower))
	for b := 0; b <= acked; b++ {
		for d := range 10 {
			ts := base + int64(b)*1000 + int64(d)
			if _, ok := got[ts]; !ok {
				t.Fatalf("batch %d device %d acknowledged but lost (%d samples recovered)", b, d, len(got))
			}
		}
	}
	t.Logf("acknowledged %d batches, recovered %d samples", acked+1, len(got))
}

func crashChild(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	// Never outlive a parent that failed to kill us.
	time.AfterFunc(2*time.Minute, func() { os.Exit(3) })
	for b := 0; ; b++ {
		batch := make([]Sample, 10)
		for d := range batch {
			batch[d] = Sample{Metric: MetricPower, Labels: dev(fmt.Sprint("d", d)), T: base + int64(b)*1000 + int64(d), V: float64(b)}
		}
		if err := s.Append(context.Background(), batch); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintln(w, b)
		_ = w.Flush()
	}
}

func TestOpenRefusesSecondOpenAndBadOptions(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, err := Open(dir, Options{}); err == nil {
		_ = c.Close()
		t.Fatal("a second Open of a store in use succeeded")
	}
	if _, err := Open(t.TempDir(), Options{Retention: -time.Hour}); err == nil {
		t.Fatal("negative retention accepted")
	}
	if _, err := Open(t.TempDir(), Options{MaxBytes: -1}); err == nil {
		t.Fatal("negative max bytes accepted")
	}
}

func TestRetentionByTimeAndSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"time", Options{Retention: 2 * time.Hour}},
		{"size", Options{MaxBytes: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, tc.o)
			ctx := context.Background()
			var batch []Sample
			for i := range 8 * 60 { // 8 h at 1 min
				batch = append(batch, Sample{Metric: MetricEnergy, Labels: dev("a"), T: base + int64(i)*60000, V: float64(i)})
			}
			if err := s.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if err := s.db.Compact(ctx); err != nil {
				t.Fatal(err)
			}
			got := countSamples(t, s, labels.MustNewMatcher(labels.MatchEqual, LabelDevice, "a"))
			if _, ok := got[base]; ok {
				t.Fatalf("oldest sample survived retention (%d samples, %d blocks)", len(got), len(s.db.Blocks()))
			}
			if _, ok := got[base+479*60000]; !ok || len(got) < 60 {
				t.Fatalf("newest data lost: %d samples", len(got))
			}
			t.Logf("%d of 480 samples kept, %d blocks", len(got), len(s.db.Blocks()))
		})
	}
}
