package otaagent

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestContentRangeStart(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int64
		want bool
	}{
		{"bytes 100-199/1000", 100, true},
		{"bytes 0-0/1", 0, true},
		{"bytes */1000", 0, false},
		{"bytes x-1/2", 0, false},
		{"items 1-2/3", 0, false},
		{"", 0, false},
	} {
		n, ok := contentRangeStart(tc.in)
		if ok != tc.want || (ok && n != tc.n) {
			t.Errorf("contentRangeStart(%q) = %d, %v", tc.in, n, ok)
		}
	}
}

func TestSignatureURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://h/ota/v1/stable/linux-arm64/update.json":                "https://h/ota/v1/stable/linux-arm64/update.json.minisig",
		"https://api.github.com/repos/o/r/contents/update.json?ref=main": "https://api.github.com/repos/o/r/contents/update.json.minisig?ref=main",
	} {
		if got := (Source{ManifestURL: in}).sigURL(); got != want {
			t.Errorf("sigURL(%s) = %s", in, got)
		}
	}
	if got := (Source{ManifestURL: "https://a/x", SignatureURL: "https://b/y"}).sigURL(); got != "https://b/y" {
		t.Errorf("explicit signature URL ignored: %s", got)
	}
}

func FuzzContentRangeStart(f *testing.F) {
	f.Add("bytes 100-199/1000")
	f.Add("bytes */5")
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := contentRangeStart(s)
		if !ok {
			return
		}
		if n < 0 {
			t.Fatalf("contentRangeStart(%q) = %d: negative offset", s, n)
		}
		if m, ok := contentRangeStart("bytes " + strconv.FormatInt(n, 10) + "-9/10"); !ok || m != n {
			t.Fatalf("round trip of %d: %d, %v", n, m, ok)
		}
	})
}

// FuzzLoadState: a damaged state file is an error, never a panic.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"current":"v1.0.0","pending":{"version":"v2.0.0","phase":"trial","boots":1}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := LoadState(dir)
		if err == nil && st.Pending != nil && st.Pending.Phase == "" {
			// A pending update with no phase is reported, not acted on blindly.
			u := &Updater{c: Config{Dir: dir, Binary: filepath.Join(dir, "bin"), MaxBoots: 1}}
			if _, err := u.reconcile(&st, true); err == nil {
				t.Fatalf("phase-less pending accepted: %+v", st.Pending)
			}
		}
	})
}

func BenchmarkLoadState(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"current":"v1.0.0","bad":["v0.9.0"],"unreported":[{"kind":"result","version":"v1.0.0","ok":true}]}`), 0o600)
	for b.Loop() {
		if _, err := LoadState(dir); err != nil {
			b.Fatal(err)
		}
	}
}
