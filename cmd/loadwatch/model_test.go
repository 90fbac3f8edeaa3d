package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loadwatch/internal/forest"
	"loadwatch/internal/readingscsv"
)

// TestModelTrainEvalPredict trains on the first kehkok device, evaluates on
// the second and classifies it, through the commands themselves.
func TestModelTrainEvalPredict(t *testing.T) {
	dir := t.TempDir()
	rows, err := readingscsv.ReadAll(mustOpen(t, filepath.Join("..", "..", "datasets", "kehkok.csv")))
	if err != nil {
		t.Fatal(err)
	}
	// Split the file by device into train and test files.
	files := map[string]*bytes.Buffer{}
	writers := map[string]*readingscsv.Writer{}
	for _, r := range rows {
		name := "train.csv"
		if r.Device == "kehkok-kvw-train" {
			name = "test.csv"
		}
		if writers[name] == nil {
			files[name] = &bytes.Buffer{}
			writers[name] = readingscsv.NewWriter(files[name])
		}
		if err := writers[name].Write(r.Device, r.Reading, r.Label); err != nil {
			t.Fatal(err)
		}
	}
	for name, w := range writers {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), files[name].Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	train, test, model := filepath.Join(dir, "train.csv"), filepath.Join(dir, "test.csv"), filepath.Join(dir, "m.json")
	ctx := context.Background()
	tc := modelTrainCmd{Data: []string{train}, Out: model, CV: 3}
	tc.Trees, tc.Seed, tc.MinLeaf, tc.Features, tc.MaxGap = 20, 1, 5, "lw1", 30e9
	if err := tc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := readModel(model)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != forest.KindLoadwatch || m.Legacy || m.FeatureSet != "lw1" || len(m.Classes) != 4 || !strings.Contains(string(m.Report), `"mean_accuracy"`) {
		t.Errorf("model %s %v %s %v", m.Kind, m.Legacy, m.FeatureSet, m.Classes)
	}

	var out bytes.Buffer
	ec := modelEvalCmd{Model: model, Data: []string{test}, JSON: true, MaxGap: 30e9, stdout: &out}
	if err := ec.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var rep map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rows", "accuracy", "macro_f1", "per_class", "confusion"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("eval --json lacks %q", k)
		}
	}
	var r forest.Report
	json.Unmarshal(out.Bytes(), &r)
	// The test device has classes the model never saw (water heater):
	// they are counted as errors, not dropped.
	if r.Rows != 621 || len(r.Confusion.Classes) != 8 {
		t.Errorf("rows %d classes %v", r.Rows, r.Confusion.Classes)
	}

	pred := filepath.Join(dir, "pred.csv")
	pc := modelPredictCmd{Model: model, Data: test, Out: pred, MaxGap: 30e9}
	if err := pc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pred)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 622 || lines[0] != "timestamp,device,voltage,current,power,energy,frequency,pf,label,predicted,confidence" {
		t.Fatalf("%d lines, header %q", len(lines), lines[0])
	}
	if !strings.HasPrefix(lines[1], "2022-11-22T") || strings.Count(lines[1], ",") != 10 {
		t.Errorf("first row %q", lines[1])
	}

	// A corrupt model is refused with the file named.
	if err := os.WriteFile(model, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readModel(model); err == nil || !strings.Contains(err.Error(), model) {
		t.Errorf("corrupt model: %v", err)
	}
	// An unlabelled row is refused by train with its line.
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("timestamp,device,power\n2024-01-01T00:00:00Z,d,1\n"), 0o644)
	tc.Data = []string{bad}
	if err := tc.Run(ctx); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("unlabelled: %v", err)
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
