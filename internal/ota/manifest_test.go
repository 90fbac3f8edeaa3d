package ota

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"
)

var testBinary = bytes.Repeat([]byte("\x7fELF loadwatch-agent "), 512)

// signedRelease returns update.json and its signature for version v.
func signedRelease(t testing.TB, sec SecretKey, v string, edit func(*Manifest)) ([]byte, []byte) {
	t.Helper()
	bsig, err := Sign(sec, bytes.NewReader(testBinary), "loadwatch-agent "+v)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(testBinary)
	m := Manifest{
		Schema: SchemaVersion, Version: v, URL: "bin/" + v, Size: int64(len(testBinary)),
		SHA256: hex.EncodeToString(sum[:]), Signature: string(bsig), MinVersion: "v1.0.0",
		Channel: "stable", OS: "linux", Arch: "arm64",
		Published: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Rollout: Plan{Percent: 10},
	}
	if edit != nil {
		edit(&m)
	}
	data, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	msig, err := Sign(sec, bytes.NewReader(data), "update.json "+v)
	if err != nil {
		t.Fatal(err)
	}
	return data, msig
}

func testPolicy(pub PublicKey, current string) Policy {
	return Policy{Keys: Keyring{pub}, Current: MustParseVersion(current), Channel: "stable", OS: "linux", Arch: "arm64"}
}

func TestPolicyCheck(t *testing.T) {
	pub, sec := testKey(t, 10)
	other, osec := testKey(t, 11)
	_ = other
	good, goodSig := signedRelease(t, sec, "v1.2.0", nil)
	old, oldSig := signedRelease(t, sec, "v1.1.0", nil)
	armv7, armv7Sig := signedRelease(t, sec, "v1.2.0", func(m *Manifest) { m.Arch = "armv7" })
	beta, betaSig := signedRelease(t, sec, "v1.2.0", func(m *Manifest) { m.Channel = "beta" })
	needs, needsSig := signedRelease(t, sec, "v1.2.0", func(m *Manifest) { m.MinVersion = "v1.1.5" })
	foreign, foreignSig := signedRelease(t, osec, "v1.2.0", nil)
	noBinSig, noBinSigSig := signedRelease(t, sec, "v1.2.0", func(m *Manifest) { m.Signature = "" })

	for _, tc := range []struct {
		name      string
		data, sig []byte
		pol       func(*Policy)
		want      error
	}{
		{"valid", good, goodSig, nil, nil},
		{"same version", good, goodSig, func(p *Policy) { p.Current = MustParseVersion("v1.2.0") }, ErrNoUpdate},
		{"replayed old manifest", old, oldSig, func(p *Policy) { p.Current = MustParseVersion("v1.1.5") }, ErrDowngrade},
		{"downgrade allowed by flag", old, oldSig, func(p *Policy) { p.Current = MustParseVersion("v1.1.9"); p.AllowDowngrade = true }, nil},
		{"downgrade without flag", old, oldSig, func(p *Policy) { p.Current = MustParseVersion("v1.1.9") }, ErrDowngrade},
		{"unsigned manifest", good, nil, nil, ErrUnsigned},
		{"unsigned binary", noBinSig, noBinSigSig, nil, ErrUnsigned},
		{"signature of another manifest", good, oldSig, nil, ErrBadSignature},
		{"unpinned key", foreign, foreignSig, nil, ErrUnknownKey},
		{"wrong arch", armv7, armv7Sig, nil, ErrWrongPlatform},
		{"wrong channel", beta, betaSig, nil, ErrWrongChannel},
		{"below min version", needs, needsSig, nil, ErrTooOld},
		{"failed here before", good, goodSig, func(p *Policy) { p.Bad = []string{"1.2.0"} }, ErrKnownBad},
		{"no pinned key", good, goodSig, func(p *Policy) { p.Keys = nil }, ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy(pub, "v1.1.0")
			if tc.pol != nil {
				tc.pol(&p)
			}
			_, err := p.Check(tc.data, tc.sig)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestEveryByteOfManifestCounts flips each byte of a signed manifest (and
// of its signature's base64 lines) in turn: none may be accepted.
func TestEveryByteOfManifestCounts(t *testing.T) {
	pub, sec := testKey(t, 12)
	data, sig := signedRelease(t, sec, "v1.2.0", nil)
	p := testPolicy(pub, "v1.1.0")
	if _, err := p.Check(data, sig); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		d := bytes.Clone(data)
		d[i] ^= 0x01
		if _, err := p.Check(d, sig); err == nil {
			t.Fatalf("manifest with byte %d changed accepted", i)
		}
	}
	lines := strings.SplitAfter(string(sig), "\n")
	for _, li := range []int{1, 2, 3} { // signature, trusted comment, global signature
		off := len(strings.Join(lines[:li], ""))
		for i := 0; i < len(lines[li])-1; i++ {
			s := bytes.Clone(sig)
			s[off+i] ^= 0x01
			if _, err := p.Check(data, s); err == nil {
				t.Fatalf("signature line %d byte %d changed accepted", li, i)
			}
		}
	}
}

func TestVerifyBinary(t *testing.T) {
	pub, sec := testKey(t, 13)
	data, sig := signedRelease(t, sec, "v1.2.0", nil)
	m, err := testPolicy(pub, "v1.0.0").Check(data, sig)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bin")
	write := func(b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(testBinary)
	if err := m.VerifyBinary(Keyring{pub}, path); err != nil {
		t.Fatalf("good binary: %v", err)
	}
	for _, i := range []int{0, len(testBinary) / 2, len(testBinary) - 1} {
		b := bytes.Clone(testBinary)
		b[i] ^= 0x80
		write(b)
		if err := m.VerifyBinary(Keyring{pub}, path); !errors.Is(err, ErrBinaryMismatch) {
			t.Errorf("binary with byte %d changed: %v", i, err)
		}
	}
	write(testBinary[:len(testBinary)-1])
	if err := m.VerifyBinary(Keyring{pub}, path); !errors.Is(err, ErrBinaryMismatch) {
		t.Errorf("truncated binary: %v", err)
	}
	// Right digest but a signature by another key: refused.
	_, osec := testKey(t, 14)
	write(testBinary)
	forged := m
	s, _ := Sign(osec, bytes.NewReader(testBinary), "x")
	forged.Signature = string(s)
	if err := forged.VerifyBinary(Keyring{pub}, path); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("binary signed by another key: %v", err)
	}
}

func TestParseManifestRejects(t *testing.T) {
	_, sec := testKey(t, 15)
	for _, tc := range []struct {
		name string
		edit func(*Manifest)
	}{
		{"schema", func(m *Manifest) { m.Schema = 2 }},
		{"version", func(m *Manifest) { m.Version = "latest" }},
		{"min version", func(m *Manifest) { m.MinVersion = "1" }},
		{"url", func(m *Manifest) { m.URL = "" }},
		{"size", func(m *Manifest) { m.Size = 0 }},
		{"sha", func(m *Manifest) { m.SHA256 = "abc" }},
		{"channel path", func(m *Manifest) { m.Channel = "../x" }},
		{"os", func(m *Manifest) { m.OS = "" }},
		{"arch", func(m *Manifest) { m.Arch = "mips" }},
		{"published", func(m *Manifest) { m.Published = time.Time{} }},
		{"rollout", func(m *Manifest) { m.Rollout.Percent = 0 }},
	} {
		data, _ := signedRelease(t, sec, "v1.0.0", tc.edit)
		if _, err := ParseManifest(data); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: %v, want ErrBadManifest", tc.name, err)
		}
	}
	for _, s := range []string{"", "{", "[]", `{"schema":1} {}`, "null"} {
		if _, err := ParseManifest([]byte(s)); err == nil {
			t.Errorf("ParseManifest(%q) accepted", s)
		}
	}
}

func TestCohortIsStableAndNested(t *testing.T) {
	// Pinned: changing the hash would move devices between cohorts of a
	// rollout in progress.
	for id, want := range map[string]int{"meter-00": 9398, "meter-02": 849, "kitchen.1": 9694, "": 2318} {
		if got := Bucket(id); got != want {
			t.Errorf("Bucket(%q) = %d, want %d", id, got, want)
		}
	}
	in10, in50 := 0, 0
	for i := range 2000 {
		id := "dev-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + hex.EncodeToString([]byte{byte(i), byte(i >> 8)})
		a, b := InCohort(id, 10), InCohort(id, 50)
		if a && !b {
			t.Fatalf("%s in 10%% but not in 50%%", id)
		}
		if a {
			in10++
		}
		if b {
			in50++
		}
		if !InCohort(id, 100) || InCohort(id, 0) {
			t.Fatalf("%s: 100%%/0%% wrong", id)
		}
	}
	if in10 < 140 || in10 > 260 || in50 < 900 || in50 > 1100 {
		t.Errorf("cohort sizes of 2000: 10%% -> %d, 50%% -> %d", in10, in50)
	}
}

func FuzzParseManifest(f *testing.F) {
	_, sec := testKey(f, 16)
	data, _ := signedRelease(f, sec, "v1.0.0", nil)
	f.Add(data)
	f.Add([]byte(`{"schema":1,"version":"v1.0.0","url":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseManifest(enc); err != nil {
			t.Fatalf("re-encoded manifest refused: %v", err)
		}
	})
}

// FuzzCheckMutation changes one byte of a signed manifest or its
// signature: the result must never be accepted.
func FuzzCheckMutation(f *testing.F) {
	pub, sec := testKey(f, 17)
	data, sig := signedRelease(f, sec, "v1.2.0", nil)
	p := testPolicy(pub, "v1.1.0")
	f.Add(uint(0), byte(1), false)
	f.Add(uint(40), byte(0x20), true)
	f.Fuzz(func(t *testing.T, pos uint, x byte, inSig bool) {
		if x == 0 {
			return
		}
		d, s := bytes.Clone(data), bytes.Clone(sig)
		target := d
		if inSig {
			target = s
		}
		target[pos%uint(len(target))] ^= x
		if _, err := p.Check(d, s); err == nil {
			// Harmless changes only: in the unsigned first line of the
			// signature (the untrusted comment), or base64 slack that
			// decodes to the same signature bytes (unused trailing bits).
			var a, b minisign.Signature
			if !inSig || a.UnmarshalText(sig) != nil || b.UnmarshalText(s) != nil || !a.Equal(b) {
				t.Fatalf("mutation at %d (sig=%v) accepted", pos, inSig)
			}
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	pub, sec := testKey(b, 18)
	data, sig := signedRelease(b, sec, "v1.2.0", nil)
	p := testPolicy(pub, "v1.1.0")
	for b.Loop() {
		if _, err := p.Check(data, sig); err != nil {
			b.Fatal(err)
		}
	}
}
