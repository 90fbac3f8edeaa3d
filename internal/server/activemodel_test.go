package server

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"loadwatch/internal/labels"
)

// TestActivatedModelAtRestart: a server started on a data directory whose
// models/ACTIVE names a retrained model loads that model, not model.json,
// with model.json as its rollback target; without ACTIVE, when the file it
// names is gone or does not load, it uses model.json.
func TestActivatedModelAtRestart(t *testing.T) {
	src, err := os.ReadFile(testModel(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	models := filepath.Join(dir, ModelsDir)
	os.MkdirAll(models, 0o755)
	for _, p := range []string{filepath.Join(dir, ModelFile), filepath.Join(models, "model-v2.json")} {
		if err := os.WriteFile(p, src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var prev string
	loaded := func() string {
		t.Helper()
		var source string
		prev = ""
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := New(Config{DataDir: dir, HTTPAddr: "off", MQTTAddr: "off", Logger: testLogger(t), Out: io.Discard,
			DashboardFunc: func(_ context.Context, p Parts) (http.Handler, error) {
				source = p.Holder.Current().Source
				if l := p.Holder.Previous(); l != nil {
					prev = l.Source
				}
				return http.NotFoundHandler(), nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		select {
		case <-s.Ready():
		case err := <-done:
			t.Fatal(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return source
	}
	if got := loaded(); got != filepath.Join(dir, ModelFile) {
		t.Errorf("without ACTIVE: loaded %s", got)
	}
	os.WriteFile(filepath.Join(models, labels.ActiveFile), []byte("model-v2.json\n"), 0o644)
	if got := loaded(); got != filepath.Join(models, "model-v2.json") || prev != filepath.Join(dir, ModelFile) {
		t.Errorf("with ACTIVE: loaded %s, rollback target %q", got, prev)
	}
	os.WriteFile(filepath.Join(models, "model-v2.json"), []byte(`{"format_version": 1}`), 0o644)
	if got := loaded(); got != filepath.Join(dir, ModelFile) {
		t.Errorf("ACTIVE naming a bad model: loaded %s", got)
	}
	os.Remove(filepath.Join(models, "model-v2.json"))
	if got := loaded(); got != filepath.Join(dir, ModelFile) {
		t.Errorf("ACTIVE naming a missing file: loaded %s", got)
	}
}
