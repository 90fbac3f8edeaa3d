package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// FuzzQuery: any query string gets an answer or a *QueryError, never a panic.
func FuzzQuery(f *testing.F) {
	for _, q := range []string{`up`, `sum by (device) (rate(x[5m]))`, `{`, `1/0`, `"s"`, `x[5m:1m]`, `absent(nope)`, `x @ 100`} {
		f.Add(q)
	}
	s := openTest(f, Options{QueryTimeout: 2 * time.Second, MaxSamples: 100000})
	if err := s.Append(context.Background(), []Sample{{Metric: "up", Labels: dev("a"), T: base, V: 1}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q string) {
		res, err := s.Query(context.Background(), q, time.UnixMilli(base))
		var qe *QueryError
		if err != nil && !errors.As(err, &qe) {
			t.Fatalf("%q: untyped error %v", q, err)
		}
		if err == nil && res.Type == "" {
			t.Fatalf("%q: result without type", q)
		}
	})
}

// FuzzAppend: any metric and label names are stored or refused with
// ErrInvalid, never a panic.
func FuzzAppend(f *testing.F) {
	f.Add("loadwatch_power_watts", "device", "a", int64(0), 1.5)
	f.Add("", "__name__", "", int64(-1), 0.0)
	f.Add("a:b", "1x", "ü", int64(1), -1.0)
	s := openTest(f, Options{})
	f.Fuzz(func(t *testing.T, metric, name, value string, dt int64, v float64) {
		err := s.Append(context.Background(), []Sample{{Metric: metric, Labels: []Label{{name, value}}, T: base + dt%1000, V: v}})
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrConflict) {
			t.Fatalf("%q %q=%q: %v", metric, name, value, err)
		}
	})
}

// TestConcurrentAppendAndQuery exercises the series cache under -race.
func TestConcurrentAppendAndQuery(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				batch := []Sample{
					{Metric: MetricPower, Labels: dev(fmt.Sprint("g", g)), T: base + int64(i)*1000, V: float64(i)},
					{Metric: MetricPower, Labels: dev("shared"), T: base + int64(i)*1000, V: 7},
				}
				if err := s.Append(ctx, batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			if _, err := s.Query(ctx, `count(`+MetricPower+`)`, time.UnixMilli(base+100000)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	res, err := s.Query(ctx, `count_over_time(`+MetricPower+`[10m])`, time.UnixMilli(base+199000))
	if err != nil || len(res.Series) != 5 {
		t.Fatalf("%+v %v", res, err)
	}
	for _, ser := range res.Series {
		if ser.Points[0].V != 200 {
			t.Fatalf("%v: %v samples, want 200", ser.Labels, ser.Points[0].V)
		}
	}
}
