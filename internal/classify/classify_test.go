package classify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/power"
	"loadwatch/internal/readingscsv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)

// synthRows is a small labelled stream of one device whose classes are far
// apart in power, so that a forest separates them with certainty.
func synthRows() []readingscsv.Row {
	levels := []struct {
		label string
		p     float64
	}{{"nothing", 1}, {"laptop", 40}, {"iron", 1500}, {"nothing", 1.5}, {"laptop", 45}, {"iron", 1450}}
	var rows []readingscsv.Row
	sec := 0
	for _, l := range levels {
		for j := 0; j < 40; j++ {
			p := l.p + float64(j%5)*0.3
			rows = append(rows, readingscsv.Row{
				Device: "d1", Label: l.label, Line: len(rows) + 2,
				Reading: power.Reading{Time: t0.Add(time.Duration(sec) * time.Second), Power: power.Watts(p), Voltage: 230, Current: power.Amperes(p / 230), PF: 1,
					Has: power.FieldPower | power.FieldVoltage | power.FieldCurrent | power.FieldPF},
			})
			sec += 2
		}
	}
	return rows
}

func trainModel(t testing.TB, set string) *forest.Model {
	t.Helper()
	rows := synthRows()
	d, err := BuildDataset(set, features.Config{}, rows)
	if err != nil {
		t.Fatal(err)
	}
	cfg := forest.DefaultConfig()
	cfg.Trees = 15
	f, err := forest.Train(context.Background(), d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &forest.Model{
		FormatVersion: forest.FormatVersion, Kind: forest.KindLoadwatch, Legacy: set == features.SetLegacy,
		FeatureSet: set, Features: d.Features, Classes: d.Classes, DataHash: forest.HashDataset(d),
		TrainedAt: time.Date(2024, 3, 2, 0, 0, 0, 0, time.UTC), Config: cfg, Forest: f,
	}
}

func saveModel(t testing.TB, m *forest.Model, path string) {
	t.Helper()
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestBuildDatasetAndLabels(t *testing.T) {
	rows := synthRows()
	d, err := BuildDataset(features.SetLW1, features.Config{}, rows)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.Classes, ",") != "iron,laptop,nothing" || d.Rows() != len(rows) {
		t.Errorf("classes %v rows %d", d.Classes, d.Rows())
	}
	rows[5].Label = ""
	if _, err := BuildDataset(features.SetLW1, features.Config{}, rows); !errors.Is(err, ErrNoLabel) {
		t.Errorf("unlabelled row: %v", err)
	}
	y, classes := Encode([]readingscsv.Row{{Label: "b"}, {Label: "zz"}}, []string{"a", "b"})
	if fmt.Sprint(y, classes) != "[1 2] [a b zz]" {
		t.Errorf("Encode = %v %v", y, classes)
	}
}

func TestMakeFolds(t *testing.T) {
	rows := synthRows() // 6 runs of 40 rows, 2 per class
	for _, scheme := range []string{SchemeRuns, SchemeClassBlocks, SchemeDeviceBlocks} {
		f, err := MakeFolds(rows, 4, scheme, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// Test blocks are contiguous in time within each (fold, label).
		for k := 0; k < 4; k++ {
			n := 0
			for i := range rows {
				if f.Test[i] == int32(k) {
					n++
					if f.Train(i, k) {
						t.Fatalf("%s: row %d trains and tests fold %d", scheme, i, k)
					}
				}
			}
			if n == 0 {
				t.Errorf("%s: fold %d tests nothing", scheme, k)
			}
		}
		if scheme == SchemeDeviceBlocks {
			continue
		}
		// Every class is in the training part of every fold.
		for k := 0; k < 4; k++ {
			seen := map[string]bool{}
			for i, r := range rows {
				if f.Train(i, k) {
					seen[r.Label] = true
				}
			}
			if len(seen) != 3 {
				t.Errorf("%s: fold %d trains on %v only", scheme, k, seen)
			}
		}
	}
	// Purge: in class-blocks the row right after a test block (same
	// label, 2 s later) is kept out of that fold's training.
	f, _ := MakeFolds(rows, 4, SchemeClassBlocks, 5*time.Second)
	// Rows are 2 s apart; the first block of "nothing" is rows 0..19.
	if f.Test[19] != 0 || f.Test[20] != 1 || f.Train(20, 0) || f.Train(21, 0) || !f.Train(22, 0) || !f.Train(20, 2) {
		t.Errorf("purge after the first block: test %v, train(20..22, 0) %v %v %v", f.Test[18:23], f.Train(20, 0), f.Train(21, 0), f.Train(22, 0))
	}
	// Runs: whole runs go to one fold; there are 2 runs per class and K=2.
	f, _ = MakeFolds(rows, 2, SchemeRuns, 0)
	for r := 0; r < 6; r++ {
		for j := 1; j < 40; j++ {
			if f.Test[r*40+j] != f.Test[r*40] {
				t.Fatalf("run %d split across folds", r)
			}
		}
	}
	if _, err := MakeFolds(rows, 1, SchemeRuns, 0); err == nil {
		t.Error("K=1 accepted")
	}
	if _, err := MakeFolds(rows, 3, "random", 0); err == nil {
		t.Error("unknown scheme accepted")
	}
}

func TestCrossValidate(t *testing.T) {
	rows := synthRows()
	d, _ := BuildDataset(features.SetLW1, features.Config{}, rows)
	f, _ := MakeFolds(rows, 2, SchemeRuns, 0)
	cfg := forest.DefaultConfig()
	cfg.Trees = 10
	res, err := CrossValidate(context.Background(), d, f, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Folds) != 2 || res.Pooled.Rows != len(rows) || res.MeanAcc < 0.95 {
		t.Errorf("result %+v", res)
	}
}

func TestHolderReloadAndRollback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.json")
	h := NewHolder(nil)
	if h.Current() != nil || !errors.Is(h.Rollback(), ErrNoModel) {
		t.Fatal("empty holder")
	}
	saveModel(t, trainModel(t, features.SetLW1), path)
	if err := h.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	first := h.Current()
	if first.SHA256 == "" || first.Model.FeatureSet != features.SetLW1 {
		t.Fatalf("loaded %+v", first)
	}
	// A corrupt file is refused and the model in use stays.
	if err := os.WriteFile(path, []byte(`{"format":"loadwatch-model","format_version":1,`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.LoadFile(path); err == nil {
		t.Fatal("corrupt model accepted")
	}
	if h.Current() != first {
		t.Fatal("corrupt model replaced the one in use")
	}
	// A model whose features do not match its set is refused.
	bad := trainModel(t, features.SetLegacy)
	bad.FeatureSet = features.SetLW1
	if err := h.Set(bad, "bad"); err == nil {
		t.Fatal("mismatched feature set accepted")
	}
	saveModel(t, trainModel(t, features.SetLegacy), path)
	if err := h.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if h.Current().Model.FeatureSet != features.SetLegacy || h.Previous() != first {
		t.Fatal("swap did not keep the old model")
	}
	if err := h.Rollback(); err != nil || h.Current() != first {
		t.Fatalf("rollback: %v", err)
	}
}

// TestReloadUnderLoad swaps models while requests run; no request may fail.
func TestReloadUnderLoad(t *testing.T) {
	h := NewHolder(nil)
	a, b := trainModel(t, features.SetLW1), trainModel(t, features.SetLW1)
	if err := h.Set(a, "a"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.PredictHandler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			m := a
			if i%2 == 1 {
				m = b
			}
			if err := h.Set(m, "swap"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 200; i++ {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"power": 1500, "voltage": 230, "current": 6.5, "pf": 1}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"class": "iron"`) {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	cancel()
	wg.Wait()
}

func TestWatchReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.json")
	saveModel(t, trainModel(t, features.SetLW1), path)
	h := NewHolder(nil)
	if err := h.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Watch(ctx, path, 10*time.Millisecond, nil) }()
	time.Sleep(30 * time.Millisecond)
	saveModel(t, trainModel(t, features.SetLegacy), path)
	deadline := time.Now().Add(10 * time.Second)
	for h.Current().Model.FeatureSet != features.SetLegacy {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not load the new file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch returned %v", err)
	}
}

// TestHandlersGolden checks whole responses against testdata/golden; run
// with -update to rewrite them after a deliberate change.
func TestHandlersGolden(t *testing.T) {
	now := func() time.Time { return t0 }
	lw := NewHolder(now)
	if err := lw.Set(trainModel(t, features.SetLW1), "lw1"); err != nil {
		t.Fatal(err)
	}
	legacy := NewHolder(now)
	if err := legacy.Set(trainModel(t, features.SetLegacy), "legacy"); err != nil {
		t.Fatal(err)
	}
	empty := NewHolder(now)
	window := `{"device":"d1","readings":[` +
		`{"ts":"2024-03-01T08:00:00Z","power":1.2,"voltage":230,"current":0.005,"pf":1},` +
		`{"ts":"2024-03-01T08:00:02Z","power":41,"voltage":230,"current":0.18,"pf":1},` +
		`{"ts":"2024-03-01T08:00:04Z","power":40.5,"voltage":230,"current":0.18,"pf":1}]}`
	cases := []struct {
		name, method, ctype, body string
		h                         http.Handler
	}{
		{"v1_single", "POST", "application/json", `{"power": 1500, "voltage": 231, "current": 6.5, "pf": 1}`, lw.PredictHandler()},
		{"v1_window", "POST", "application/json", window, lw.PredictHandler()},
		{"v1_legacy_model", "POST", "", `{"power": 41, "energy": 12}`, legacy.PredictHandler()},
		{"v1_no_power", "POST", "application/json", `{"voltage": 230}`, lw.PredictHandler()},
		{"v1_both", "POST", "application/json", `{"power": 1, "readings": [{"power": 2}]}`, lw.PredictHandler()},
		{"v1_window_no_ts", "POST", "application/json", `{"readings":[{"power":1},{"power":2}]}`, lw.PredictHandler()},
		{"v1_window_order", "POST", "application/json", `{"readings":[{"ts":"2024-03-01T08:00:02Z","power":1},{"ts":"2024-03-01T08:00:02Z","power":2}]}`, lw.PredictHandler()},
		{"v1_bad_pf", "POST", "application/json", `{"power": 10, "pf": 1.5}`, lw.PredictHandler()},
		{"v1_negative", "POST", "application/json", `{"power": -10}`, lw.PredictHandler()},
		{"v1_unknown_field", "POST", "application/json", `{"power": 10, "watts": 3}`, lw.PredictHandler()},
		{"v1_bad_json", "POST", "application/json", `{"power": `, lw.PredictHandler()},
		{"v1_text", "POST", "text/plain", `power=1`, lw.PredictHandler()},
		{"v1_get", "GET", "", ``, lw.PredictHandler()},
		{"v1_no_model", "POST", "application/json", `{"power": 10}`, empty.PredictHandler()},
		{"legacy_json", "POST", "application/json", `{"power": 1480, "energy": 3}`, legacy.LegacyHandler()},
		{"legacy_form", "POST", "application/x-www-form-urlencoded", `power=42&energy=7`, legacy.LegacyHandler()},
		{"legacy_missing_energy", "POST", "application/json", `{"power": 42}`, legacy.LegacyHandler()},
		{"legacy_refused_lw1", "POST", "application/json", `{"power": 42, "energy": 7}`, lw.LegacyHandler()},
		{"legacy_no_model", "POST", "application/json", `{"power": 42, "energy": 7}`, empty.LegacyHandler()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "/", strings.NewReader(c.body))
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			rec := httptest.NewRecorder()
			c.h.ServeHTTP(rec, req)
			got := fmt.Sprintf("%d %s\n%s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
			path := filepath.Join("testdata", "golden", c.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
			if rec.Code == 200 && !json.Valid(rec.Body.Bytes()) {
				t.Error("invalid JSON")
			}
		})
	}
}

func BenchmarkPredictHandler(b *testing.B) {
	h := NewHolder(nil)
	if err := h.Set(trainModel(b, features.SetLW1), "b"); err != nil {
		b.Fatal(err)
	}
	hd := h.PredictHandler()
	body := []byte(`{"power": 40, "voltage": 230, "current": 0.18, "pf": 1}`)
	for b.Loop() {
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		hd.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Body.String())
		}
	}
}

func TestMultiLabel(t *testing.T) {
	if got := Appliances([]string{"nothing", "fan+lamp", "lamp", "kettle"}); strings.Join(got, ",") != "fan,kettle,lamp" {
		t.Errorf("Appliances = %v", got)
	}
	rows := synthRows()
	// Make a combination: "iron" rows become "iron+laptop".
	for i := range rows {
		if rows[i].Label == "iron" {
			rows[i].Label = "iron+laptop"
		}
	}
	d, _ := BuildDataset(features.SetLW1, features.Config{}, rows)
	cfg := forest.DefaultConfig()
	cfg.Trees = 10
	ml, err := TrainMultiLabel(context.Background(), d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ml.Appliances, ",") != "iron,laptop" {
		t.Fatalf("appliances %v", ml.Appliances)
	}
	nf := d.NFeatures
	for _, i := range []int{5, 45, 85} {
		if got := ml.Predict(d.X[i*nf : (i+1)*nf]); got != rows[i].Label {
			t.Errorf("row %d: %s, want %s", i, got, rows[i].Label)
		}
	}
	f, _ := MakeFolds(rows, 2, SchemeRuns, 0)
	res, err := CrossValidateMulti(context.Background(), d, f, cfg, nil)
	if err != nil || res.Pooled.Rows != len(rows) || res.MeanAcc < 0.9 {
		t.Errorf("cv %+v %v", res, err)
	}
}

// FuzzPredictHandlers sends arbitrary bodies to both endpoints: they must
// answer 200 or a 4xx with a JSON body, never panic or 5xx.
func FuzzPredictHandlers(f *testing.F) {
	f.Add([]byte(`{"power": 1500, "voltage": 231, "current": 6.5, "pf": 1}`))
	f.Add([]byte(`{"readings":[{"ts":"2024-03-01T08:00:00Z","power":1},{"ts":"2024-03-01T08:00:01Z","power":1e308}]}`))
	f.Add([]byte(`{"power": 42, "energy": 7}`))
	lw := NewHolder(nil)
	if err := lw.Set(trainModel(f, features.SetLW1), "lw1"); err != nil {
		f.Fatal(err)
	}
	legacy := NewHolder(nil)
	if err := legacy.Set(trainModel(f, features.SetLegacy), "legacy"); err != nil {
		f.Fatal(err)
	}
	handlers := []http.Handler{lw.PredictHandler(), legacy.PredictHandler(), legacy.LegacyHandler(), lw.LegacyHandler()}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range handlers {
			req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 || !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%d %s", rec.Code, rec.Body.String())
			}
		}
	})
}
