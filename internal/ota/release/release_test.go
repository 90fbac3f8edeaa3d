package release

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"loadwatch/internal/ota"
)

func newStore(t *testing.T) (*Store, ota.PublicKey, ota.SecretKey, string) {
	t.Helper()
	pub, sec, err := ota.GenerateKey(rand.NewChaCha8([32]byte{7}))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("\x7fELF pretend agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	s, err := Open(filepath.Join(dir, "data"), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return s, pub, sec, bin
}

func publish(t *testing.T, s *Store, sec ota.SecretKey, bin, v string, pct float64) ota.Manifest {
	t.Helper()
	m, err := s.Publish(PublishRequest{Version: v, Binary: bin, Channel: "stable", OS: "linux", Arch: "arm64", Percent: pct, Key: sec})
	if err != nil {
		t.Fatalf("publish %s: %v", v, err)
	}
	return m
}

func TestPublishStoresVerifiableRelease(t *testing.T) {
	s, pub, sec, bin := newStore(t)
	m := publish(t, s, sec, bin, "1.0.0", 100)
	if m.Version != "v1.0.0" || m.URL != "v1.0.0/loadwatch-agent" {
		t.Fatalf("manifest %+v", m)
	}
	data, err := s.ReadFile("stable", "linux", "arm64", "v1.0.0", "update.json")
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := s.ReadFile("stable", "linux", "arm64", "v1.0.0", "update.json.minisig")
	p := ota.Policy{Keys: ota.Keyring{pub}, Current: ota.MustParseVersion("v0.9.0"), Channel: "stable", OS: "linux", Arch: "arm64"}
	got, err := p.Check(data, sig)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := s.File("stable", "linux", "arm64", "v1.0.0", BinaryName)
	f.Close()
	if err := got.VerifyBinary(ota.Keyring{pub}, f.Name()); err != nil {
		t.Fatal(err)
	}
	r, _ := s.Get("stable", "linux", "arm64")
	if r.Stable != "v1.0.0" || r.Candidate != "" {
		t.Fatalf("rollout %+v", r)
	}
	if _, err := s.Publish(PublishRequest{Version: "v1.0.0", Binary: bin, Channel: "stable", OS: "linux", Arch: "arm64", Percent: 10, Key: sec}); !errors.Is(err, ErrExists) {
		t.Errorf("republish: %v", err)
	}
	if _, err := s.Publish(PublishRequest{Version: "v0.9.0", Binary: bin, Channel: "stable", OS: "linux", Arch: "arm64", Percent: 10, Key: sec}); !errors.Is(err, ErrNotNewer) {
		t.Errorf("older: %v", err)
	}
	for _, bad := range []PublishRequest{
		{Version: "v2", Binary: bin, Channel: "stable", OS: "linux", Arch: "arm64", Percent: 10, Key: sec},
		{Version: "v2.0.0", Binary: bin, Channel: "../x", OS: "linux", Arch: "arm64", Percent: 10, Key: sec},
		{Version: "v2.0.0", Binary: bin, Channel: "stable", OS: "linux", Arch: "mips", Percent: 10, Key: sec},
		{Version: "v2.0.0", Binary: bin, Channel: "stable", OS: "linux", Arch: "arm64", Percent: 0, Key: sec},
	} {
		if _, err := s.Publish(bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("publish %+v: %v, want ErrBadRequest", bad, err)
		}
	}
	if _, err := s.File("stable", "linux", "arm64", "v1.0.0", "../../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("path escape: %v", err)
	}
}

func TestPromoteHaltAutoHalt(t *testing.T) {
	s, _, sec, bin := newStore(t)
	publish(t, s, sec, bin, "v1.0.0", 100)
	publish(t, s, sec, bin, "v1.1.0", 10)
	r, err := s.Promote("stable", "linux", "arm64", 0, false)
	if err != nil || r.Percent != 25 || r.Candidate != "v1.1.0" {
		t.Fatalf("promote: %+v %v", r, err)
	}
	// Results: one good does not halt; 1 of 2 failing is above 20 %.
	if _, h, _ := s.RecordResult("stable", "linux", "arm64", "a", "v1.1.0", true); h {
		t.Fatal("halted on a success")
	}
	if _, h, _ := s.RecordResult("stable", "linux", "arm64", "z", "v1.0.0", false); h {
		t.Fatal("halted on a result for another version")
	}
	r, h, err := s.RecordResult("stable", "linux", "arm64", "b", "v1.1.0", false)
	if err != nil || !h || !r.Halted {
		t.Fatalf("auto halt: %+v %v %v", r, h, err)
	}
	if r.Offer("a") != "v1.0.0" {
		t.Errorf("halted rollout offers %s", r.Offer("a"))
	}
	if _, err := s.Promote("stable", "linux", "arm64", 0, false); !errors.Is(err, ErrHalted) {
		t.Errorf("promote halted: %v", err)
	}
	r, err = s.Promote("stable", "linux", "arm64", 100, true)
	if err != nil || r.Stable != "v1.1.0" || r.Previous != "v1.0.0" || r.Candidate != "" {
		t.Fatalf("resume to 100: %+v %v", r, err)
	}
	if _, err := s.Halt("stable", "linux", "arm64", "x"); !errors.Is(err, ErrNoRollout) {
		t.Errorf("halt without candidate: %v", err)
	}
	publish(t, s, sec, bin, "v1.2.0", 50)
	r, err = s.Halt("stable", "linux", "arm64", "operator")
	if err != nil || !r.Halted || r.HaltReason != "operator" {
		t.Fatalf("halt: %+v %v", r, err)
	}
	ls, err := s.List()
	if err != nil || len(ls) != 1 || len(ls[0].Releases) != 3 || ls[0].Releases[2].Version != "v1.2.0" {
		t.Fatalf("list: %+v %v", ls, err)
	}
}

func TestImportVerifies(t *testing.T) {
	src, pub, sec, bin := newStore(t)
	publish(t, src, sec, bin, "v1.0.0", 10)
	dir := filepath.Join(src.Dir(), "stable", "linux-arm64", "v1.0.0")
	dst, err := Open(filepath.Join(t.TempDir(), "server"), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := ota.GenerateKey(rand.NewChaCha8([32]byte{8}))
	if _, err := dst.Import(dir, ota.Keyring{other}, 0, 0, 0); !errors.Is(err, ota.ErrUnknownKey) {
		t.Fatalf("import with the wrong key: %v", err)
	}
	// A changed binary is refused.
	b, _ := os.ReadFile(filepath.Join(dir, BinaryName))
	bad := t.TempDir()
	for _, n := range []string{"update.json", "update.json.minisig"} {
		c, _ := os.ReadFile(filepath.Join(dir, n))
		os.WriteFile(filepath.Join(bad, n), c, 0o644)
	}
	b2 := append([]byte(nil), b...)
	b2[0] ^= 1
	os.WriteFile(filepath.Join(bad, BinaryName), b2, 0o644)
	if _, err := dst.Import(bad, ota.Keyring{pub}, 0, 0, 0); !errors.Is(err, ota.ErrBinaryMismatch) {
		t.Fatalf("import of a changed binary: %v", err)
	}
	m, err := dst.Import(dir, ota.Keyring{pub}, 0, 0, 0)
	if err != nil || m.Version != "v1.0.0" {
		t.Fatalf("import: %+v %v", m, err)
	}
	r, _ := dst.Get("stable", "linux", "arm64")
	if r.Candidate != "v1.0.0" || r.Percent != 10 {
		t.Fatalf("imported rollout %+v", r)
	}
}
