package labels

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"loadwatch/internal/classify"
	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/power"
	"loadwatch/internal/readingscsv"
	"loadwatch/internal/store"
)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func rd(ts time.Time, p float64) power.Reading {
	return power.Reading{Time: ts, Power: power.Watts(p), Voltage: 230, Current: power.Amperes(p / 230), PF: 0.95, Frequency: 50,
		Has: power.FieldPower | power.FieldVoltage | power.FieldCurrent | power.FieldPF | power.FieldFrequency}
}

// bundled is a small labelled stream: nothing (1 W) and laptop (40 W).
func bundled() []readingscsv.Row {
	var rows []readingscsv.Row
	for i := 0; i < 240; i++ {
		l, p := "nothing", 1.0
		if (i/40)%2 == 1 {
			l, p = "laptop", 40
		}
		rows = append(rows, readingscsv.Row{Device: "b", Label: l, Line: i + 2, Reading: rd(t0.Add(time.Duration(i)*2*time.Second), p+float64(i%5)*0.2)})
	}
	return rows
}

func baseModel(t *testing.T) *forest.Model {
	d, err := classify.BuildDataset(features.SetLW1, features.Config{}, bundled())
	if err != nil {
		t.Fatal(err)
	}
	cfg := forest.DefaultConfig()
	cfg.Trees = 5
	f, err := forest.Train(context.Background(), d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &forest.Model{FormatVersion: forest.FormatVersion, Kind: forest.KindLoadwatch, FeatureSet: features.SetLW1,
		Features: d.Features, Classes: d.Classes, TrainedAt: t0, Config: cfg, Forest: f}
}

// TestRetrainActivateRollback stores a kettle (2000 W) the base model has
// never seen, labels it, retrains, and checks the evaluation, the
// activation through the holder and the rollback.
func TestRetrainActivateRollback(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "tsdb"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var samples []store.Sample
	lab := []store.Label{{Name: store.LabelDevice, Value: "kitchen"}}
	start := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
	for i := 0; i < 600; i++ { // 10 min at 1 s: 5 min kettle, then 5 min nothing
		p := 2000.0 + float64(i%7)
		if i >= 300 {
			p = 1 + float64(i%3)*0.1
		}
		ts := store.Millis(start.Add(time.Duration(i) * time.Second))
		samples = append(samples, store.Sample{Metric: store.MetricPower, Labels: lab, T: ts, V: p},
			store.Sample{Metric: store.MetricVoltage, Labels: lab, T: ts, V: 230})
	}
	if err := st.Append(ctx, samples); err != nil {
		t.Fatal(err)
	}
	h := classify.NewHolder(nil)
	if err := h.Set(baseModel(t), "bundled"); err != nil {
		t.Fatal(err)
	}
	spans, _ := Open(filepath.Join(dir, "labels.json"), nil)
	svc, err := New(Config{Spans: spans, Q: st, Holder: h, ModelDir: filepath.Join(dir, "models"),
		Bundled: func(context.Context) ([]readingscsv.Row, error) { return bundled(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, "alice"); !errors.Is(err, ErrNoLabels) {
		t.Fatalf("start without labels: %v", err)
	}
	if _, err := svc.Activate(); !errors.Is(err, ErrNothingToActivate) {
		t.Fatalf("activate without a job: %v", err)
	}
	if _, err := spans.Add(Span{Device: "kitchen", From: start.Add(-time.Second), To: start.Add(299 * time.Second), Label: "kettle"}); err != nil {
		t.Fatal(err)
	}
	if _, err := spans.Add(Span{Device: "kitchen", From: start.Add(299 * time.Second), To: start.Add(599 * time.Second), Label: "nothing"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	svc.Wait()
	st1 := svc.Status()
	j := st1.Job
	if j == nil || j.State != JobDone || j.Progress != 1 || j.Evaluation == nil {
		t.Fatalf("job %+v", j)
	}
	ev := j.Evaluation
	if ev.TestRows != 150 || ev.Current == nil || ev.Candidate == nil {
		t.Fatalf("evaluation %+v", ev)
	}
	// The base model cannot say "kettle"; the new one learnt it.
	if ev.Candidate.Accuracy < 0.9 || ev.Current.Accuracy > 0.6 {
		t.Errorf("accuracy: candidate %.2f (want >= 0.9), current %.2f (want <= 0.6)", ev.Candidate.Accuracy, ev.Current.Accuracy)
	}
	m, err := svc.Activate()
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "v1" || h.Current().Model.Classes[0] != "kettle" {
		t.Errorf("activated %+v, classes %v", m, h.Current().Model.Classes)
	}
	if p, ok := ActiveModel(filepath.Join(dir, "models")); !ok || filepath.Base(p) != "model-v1.json" {
		t.Errorf("ACTIVE: %q %v", p, ok)
	}
	if _, err := svc.Activate(); !errors.Is(err, ErrNothingToActivate) {
		t.Errorf("second activation: %v", err)
	}
	if m, err := svc.Rollback(); err != nil || m.Version != "base" {
		t.Errorf("rollback: %+v %v", m, err)
	}
	if _, ok := ActiveModel(filepath.Join(dir, "models")); ok {
		t.Errorf("ACTIVE still names a model after the rollback to the base model")
	}
}
