package main

import (
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/gctune"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"", 0, false}, {"off", 0, false}, {"OFF", 0, false}, {"0", 0, false},
		{"1024", 1024, false}, {"768MiB", 768 << 20, false}, {"2GiB", 2 << 30, false},
		{"1 KiB", 1024, false}, {"1TiB", 1 << 40, false},
		{"-1", 0, true}, {"1GB", 0, true}, {"MiB", 0, true}, {"lots", 0, true},
		{"9999999999TiB", 0, true},
	} {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"", "off", "768MiB", "2GiB", "-1", "9999999999TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseSize(s); err == nil && n < 0 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
	})
}

func BenchmarkParseSize(b *testing.B) {
	for b.Loop() {
		if _, err := parseSize("768MiB"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRuntimeFlags sets the GC knobs and serves pprof until ctx ends.
func TestRuntimeFlags(t *testing.T) {
	oldGC := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(-1)
	defer func() { debug.SetGCPercent(oldGC); debug.SetMemoryLimit(oldLimit) }()

	if err := (&runtimeFlags{MemoryLimit: "lots"}).applyRuntime(context.Background(), io.Discard); err == nil {
		t.Fatal("bad --memory-limit accepted")
	}
	// auto: 90 % of this machine's (or container's) memory, said on the log.
	if os.Getenv("GOMEMLIMIT") == "" {
		var alog strings.Builder
		if err := (&runtimeFlags{MemoryLimit: "auto"}).applyRuntime(context.Background(), &alog); err != nil {
			t.Fatal(err)
		}
		want, from, err := gctune.AutoLimit(os.DirFS("/"))
		got := debug.SetMemoryLimit(-1)
		switch {
		case err != nil && got != math.MaxInt64:
			t.Errorf("auto limit %d set although AutoLimit failed: %v", got, err)
		case err == nil && (got != want || !strings.Contains(alog.String(), from)):
			t.Errorf("auto limit %d (log %q), want %d from %s", got, alog.String(), want, from)
		}
		debug.SetMemoryLimit(math.MaxInt64)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log strings.Builder
	f := runtimeFlags{GOGC: 250, MemoryLimit: "3GiB", PProf: "127.0.0.1:0"}
	if err := f.applyRuntime(ctx, &log); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != 250 {
		t.Errorf("GC percent %d, want 250", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 3<<30 {
		t.Errorf("memory limit %d, want 3 GiB", got)
	}
	line := strings.TrimSpace(log.String())
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("no pprof address in %q", line)
	}
	url := strings.Fields(line[i:])[0]
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("pprof answered %d: %.80s", resp.StatusCode, body)
	}
}
