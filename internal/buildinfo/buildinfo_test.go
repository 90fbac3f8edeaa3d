package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestGetUsesLinkerValues(t *testing.T) {
	oldV, oldC, oldD := Version, Commit, Date
	t.Cleanup(func() { Version, Commit, Date = oldV, oldC, oldD })
	Version, Commit, Date = "v9.8.7", "abc123", "2026-11-29T00:00:00Z"

	got := Get("loadwatch")
	if got.Version != "v9.8.7" || got.Commit != "abc123" || got.Date != "2026-11-29T00:00:00Z" {
		t.Fatalf("Get = %+v, want linker values", got)
	}
	if got.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", got.GoVersion, runtime.Version())
	}
	s := got.String()
	for _, want := range []string{"loadwatch", "v9.8.7", "abc123", "2026-11-29", runtime.Version()} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q, missing %q", s, want)
		}
	}
}

func TestGetFallsBackWhenUnset(t *testing.T) {
	oldV, oldC, oldD := Version, Commit, Date
	t.Cleanup(func() { Version, Commit, Date = oldV, oldC, oldD })
	Version, Commit, Date = "", "", ""

	got := Get("x")
	if got.Version == "" || got.Commit == "" || got.Date == "" {
		t.Fatalf("Get = %+v: empty fields must be filled with a fallback", got)
	}
}
