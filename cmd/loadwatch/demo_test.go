package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/demo"
	"loadwatch/internal/readingscsv"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runDemo runs `loadwatch demo` on ephemeral ports until every scenario
// device has reported at least minReadings readings, then stops it as
// Ctrl-C does, and returns the data directory it used.
func runDemo(t *testing.T, data string, minReadings uint64) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedBuffer{}
	got := make(chan string, 1)
	c := &demoCmd{HTTP: "127.0.0.1:0", MQTT: "127.0.0.1:0", Data: data, out: out, LogLevel: slog.LevelWarn,
		onReady: func(d *demo.Demo, dir string) {
			base := "http://" + d.Server().HTTPAddr()
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				var devs []struct {
					ID       string   `json:"id"`
					Power    *float64 `json:"power"`
					Readings uint64   `json:"readings"`
				}
				if resp, err := http.Get(base + "/api/v1/devices"); err == nil {
					json.NewDecoder(resp.Body).Decode(&devs)
					resp.Body.Close()
				}
				n := 0
				for _, dv := range devs {
					if dv.Power != nil && dv.Readings >= minReadings {
						n++
					}
				}
				if n == len(demo.Scenario()) {
					// The dashboard is mounted (open reads): its pages and
					// the API they read.
					for _, path := range []string{"/", "/device/studio", "/ui/api/v1/devices/studio"} {
						resp, err := http.Get(base + path)
						if err != nil {
							t.Errorf("GET %s: %v", path, err)
							continue
						}
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 || path != "/ui/api/v1/devices/studio" && !strings.Contains(string(b), "<html") ||
							path == "/ui/api/v1/devices/studio" && !strings.Contains(string(b), `"id":"studio"`) {
							t.Errorf("GET %s: %s %.300q", path, resp.Status, b)
						}
					}
					got <- dir
					cancel()
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			got <- ""
			cancel()
		}}
	err := c.Run(ctx)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	dir := <-got
	if dir == "" {
		t.Fatalf("the devices did not report %d readings each within 60 s:\n%s", minReadings, out.String())
	}
	if !strings.Contains(out.String(), "loadwatch demo: stopped") {
		t.Errorf("no stop message:\n%s", out.String())
	}
	return dir
}

func TestDemoCommandRemovesTempDir(t *testing.T) {
	dir := runDemo(t, "", 1)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temporary data dir %s still there after stop: %v", dir, err)
	}
}

// TestDemoDataRoundTrips keeps the demo's data, exports a device, imports
// the file into a new data directory, backs the first one up and
// restores it: each export of the copies equals the original.
func TestDemoDataRoundTrips(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	runDemo(t, data, 2)
	if _, err := os.Stat(filepath.Join(data, "tsdb")); err != nil {
		t.Fatal("--data was not kept:", err)
	}

	exportCSV := func(dir string) string {
		t.Helper()
		var b bytes.Buffer
		c := &exportCmd{Device: "studio", From: "1h", To: "now", Data: dir, stdout: &b}
		if err := c.Run(ctx); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	orig := exportCSV(data)
	rows, err := readingscsv.ReadAll(strings.NewReader(orig))
	if err != nil || len(rows) < 2 {
		t.Fatalf("export of the demo: %d rows, %v\n%s", len(rows), err, orig)
	}
	labelled := 0
	for _, r := range rows {
		if r.Label != "" {
			labelled++
		}
	}
	if labelled == 0 {
		t.Errorf("no row carries the stored class:\n%s", orig)
	}

	// --out writes the same file.
	file := filepath.Join(tmp, "studio.csv")
	if err := (&exportCmd{Device: "studio", From: "1h", To: "now", Data: data, Out: file}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	// Import it twice into a new data directory.
	imported := filepath.Join(tmp, "imported")
	for range 2 {
		var msg bytes.Buffer
		if err := (&importCmd{Data: imported, Files: []string{file}, out: &msg}).Run(ctx); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(msg.String(), "refused") {
			t.Errorf("import: %s", msg.String())
		}
	}
	if got := exportCSV(imported); got != orig {
		t.Errorf("export after import:\n%s\nwant\n%s", got, orig)
	}

	// Backup as a directory and as a tar file; restore both.
	for _, out := range []string{filepath.Join(tmp, "bk"), filepath.Join(tmp, "bk.tar")} {
		var msg bytes.Buffer
		if err := (&backupCmd{Data: data, Out: out, out: &msg}).Run(ctx); err != nil {
			t.Fatal(err)
		}
		restored := filepath.Join(tmp, "restored-"+filepath.Base(out))
		if err := (&restoreCmd{Data: restored, Backup: out, out: &msg}).Run(ctx); err != nil {
			t.Fatal(err)
		}
		if got := exportCSV(restored); got != orig {
			t.Errorf("export after restore of %s differs", out)
		}
		if err := (&restoreCmd{Data: restored, Backup: out, out: &msg}).Run(ctx); err == nil {
			t.Error("restore into a non-empty data dir succeeded")
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"now":                       now,
		"24h":                       now.Add(-24 * time.Hour),
		"-90m":                      now.Add(-90 * time.Minute),
		"2026-11-28":                time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC),
		"2026-11-28T10:00:00.5Z":    time.Date(2026, 11, 28, 10, 0, 0, 5e8, time.UTC),
		"2026-11-28T10:00:00+01:00": time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-13-01", "1d"} {
		if _, err := parseWhen(in, now); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestExportImportErrors(t *testing.T) {
	ctx := context.Background()
	if err := (&exportCmd{Device: "x", From: "1h", To: "now"}).Run(ctx); err == nil || !strings.Contains(err.Error(), "--data") {
		t.Errorf("no source: %v", err)
	}
	if err := (&exportCmd{Device: "x", From: "1h", To: "now", Data: t.TempDir()}).Run(ctx); err == nil || !strings.Contains(err.Error(), "no store") {
		t.Errorf("empty data dir: %v", err)
	}
	if err := (&backupCmd{Data: t.TempDir(), Out: filepath.Join(t.TempDir(), "b")}).Run(ctx); err == nil {
		t.Error("backup of an empty data dir succeeded")
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(bad, []byte("timestamp,device,power\n2026-11-29T10:00:00Z,k,-1\n"), 0o600)
	var msg bytes.Buffer
	if err := (&importCmd{Data: t.TempDir(), Files: []string{bad}, out: &msg}).Run(ctx); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad file: %v", err)
	}
}
