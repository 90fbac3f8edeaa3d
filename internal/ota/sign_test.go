package ota

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/scrypt"
)

// testKey returns a deterministic key pair (fixed seed).
func testKey(t testing.TB, seed uint64) (PublicKey, SecretKey) {
	t.Helper()
	pub, sec, err := GenerateKey(rand.NewChaCha8([32]byte{byte(seed), 1, 2, 3}))
	if err != nil {
		t.Fatal(err)
	}
	return pub, sec
}

func TestSignVerifyBothKinds(t *testing.T) {
	pub, sec := testKey(t, 1)
	msg := []byte("loadwatch-agent binary bytes")
	kr := Keyring{pub}

	pre, err := Sign(sec, bytes.NewReader(msg), "v1.0.0 linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	leg, err := SignLegacy(sec, msg, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sig  []byte
		alg  Algorithm
		tcmt string
	}{{pre, Prehashed, "v1.0.0 linux-arm64"}, {leg, Legacy, "legacy"}} {
		info, err := kr.Verify(msg, tc.sig)
		if err != nil || info.Algorithm != tc.alg || info.TrustedComment != tc.tcmt || info.KeyID != pub.ID() {
			t.Fatalf("Verify = %+v, %v; want %v %q", info, err, tc.alg, tc.tcmt)
		}
		info, err = kr.VerifyReader(bytes.NewReader(msg), tc.sig, 1<<20)
		if err != nil || info.Algorithm != tc.alg {
			t.Fatalf("VerifyReader = %+v, %v", info, err)
		}
		bad := append([]byte(nil), msg...)
		bad[3] ^= 1
		if _, err := kr.Verify(bad, tc.sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%v: changed message verified: %v", tc.alg, err)
		}
		if _, err := kr.VerifyReader(bytes.NewReader(bad), tc.sig, 1<<20); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%v: changed message verified (reader): %v", tc.alg, err)
		}
		// Changing the trusted comment breaks the global signature.
		forged := bytes.Replace(tc.sig, []byte("trusted comment: "+tc.tcmt), []byte("trusted comment: v9.9.9"), 1)
		if _, err := kr.Verify(msg, forged); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%v: forged trusted comment verified: %v", tc.alg, err)
		}
	}
	if _, err := kr.VerifyReader(bytes.NewReader(msg), leg, 4); !errors.Is(err, ErrBadSignature) {
		t.Errorf("legacy signature over more than the bound accepted: %v", err)
	}
	other, _ := testKey(t, 2)
	if _, err := (Keyring{other}).Verify(msg, pre); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("other key: %v, want ErrUnknownKey", err)
	}
	if _, err := kr.Verify(msg, nil); !errors.Is(err, ErrUnsigned) {
		t.Errorf("empty signature: %v, want ErrUnsigned", err)
	}
	if _, err := Sign(sec, bytes.NewReader(msg), "two\nlines"); err == nil {
		t.Error("multi-line trusted comment accepted")
	}
}

func TestKeyFilesRoundTrip(t *testing.T) {
	pub, sec := testKey(t, 3)
	pt, err := pub.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pt), "untrusted comment: minisign public key") {
		t.Errorf("public key file %q", pt)
	}
	p2, err := ParsePublicKey(pt)
	if err != nil || p2.String() != pub.String() {
		t.Fatalf("ParsePublicKey = %v, %v", p2, err)
	}
	if _, err := ParsePublicKey([]byte(pub.String())); err != nil {
		t.Errorf("bare base64 key refused: %v", err)
	}
	if _, err := ParsePublicKey([]byte("garbage")); !errors.Is(err, ErrBadKey) {
		t.Errorf("garbage key: %v", err)
	}
	st, err := MarshalSecretKey(sec, "")
	if err != nil {
		t.Fatal(err)
	}
	if SecretKeyEncrypted(st) {
		t.Error("unencrypted key reported as encrypted")
	}
	s2, err := ParseSecretKey(st, nil)
	if err != nil || s2.ID() != sec.ID() {
		t.Fatalf("ParseSecretKey = %v, %v", s2.ID(), err)
	}
}

// encryptCheap writes an encrypted minisign secret key with a low scrypt
// cost (the file carries its cost parameters), built independently from
// the format: Ed | Sc | B2 | salt | opslimit | memlimit |
// (keyid|sk|BLAKE2b-256(Ed|keyid|sk)) XOR scrypt(password, salt).
func encryptCheap(t *testing.T, sec SecretKey, password string) []byte {
	t.Helper()
	plain, err := MarshalSecretKey(sec, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.SplitN(string(plain), "\n", 2)[1]))
	if err != nil || len(raw) != 158 {
		t.Fatalf("unencrypted key: %d bytes, %v", len(raw), err)
	}
	out := make([]byte, 158)
	copy(out, raw[:6])
	copy(out[2:4], "Sc")
	salt := bytes.Repeat([]byte{0x5a}, 32)
	copy(out[6:38], salt)
	const ops, mem = 1 << 15, 16 << 20 // -> N=1024, r=8, p=1 in minisign's conversion
	binary.LittleEndian.PutUint64(out[38:], ops)
	binary.LittleEndian.PutUint64(out[46:], mem)
	msg := append([]byte{0x45, 0x64}, raw[54:126]...)
	sum := blake2b.Sum256(msg)
	clear := append(append([]byte(nil), raw[54:126]...), sum[:]...)
	ks, err := scrypt.Key([]byte(password), salt, 1024, 8, 1, 104)
	if err != nil {
		t.Fatal(err)
	}
	for i := range clear {
		out[54+i] = clear[i] ^ ks[i]
	}
	return []byte("untrusted comment: test key\n" + base64.StdEncoding.EncodeToString(out) + "\n")
}

func TestEncryptedSecretKey(t *testing.T) {
	_, sec := testKey(t, 4)
	st := encryptCheap(t, sec, "correct horse")
	checkEncrypted(t, sec, st)
}

// TestEncryptedSecretKeyFullCost runs the scrypt cost minisign and
// keygen --encrypt use (about 1 GiB; a minute on a busy 2-core machine).
func TestEncryptedSecretKeyFullCost(t *testing.T) {
	if os.Getenv("LOADWATCH_LONG") == "" {
		t.Skip("set LOADWATCH_LONG=1: scrypt at minisign's cost takes ~1 GiB and up to a minute")
	}
	_, sec := testKey(t, 4)
	st, err := MarshalSecretKey(sec, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	checkEncrypted(t, sec, st)
}

func checkEncrypted(t *testing.T, sec SecretKey, st []byte) {
	t.Helper()
	if !SecretKeyEncrypted(st) {
		t.Fatal("encrypted key not reported as encrypted")
	}
	if _, err := ParseSecretKey(st, nil); !errors.Is(err, ErrBadKey) {
		t.Errorf("no password: %v", err)
	}
	if _, err := ParseSecretKey(st, func() (string, error) { return "wrong", nil }); !errors.Is(err, ErrBadKey) {
		t.Errorf("wrong password: %v", err)
	}
	s2, err := ParseSecretKey(st, func() (string, error) { return "correct horse", nil })
	if err != nil || s2.ID() != sec.ID() {
		t.Fatalf("decrypt: %v, %v", s2.ID(), err)
	}
}

// TestMinisignToolInterop checks both directions against the reference
// minisign tool (Debian package minisign) when it is installed.
func TestMinisignToolInterop(t *testing.T) {
	tool, err := exec.LookPath("minisign")
	if err != nil {
		t.Skip("minisign tool not installed (apt-get install minisign)")
	}
	dir := t.TempDir()
	pub, sec := testKey(t, 5)
	pt, _ := pub.MarshalText()
	st, _ := MarshalSecretKey(sec, "")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pubF, secF := write("k.pub", pt), write("k.key", st)
	msgF := write("msg", bytes.Repeat([]byte("loadwatch "), 1000))
	msg, _ := os.ReadFile(msgF)

	// Our signature, checked by the tool.
	sig, err := Sign(sec, bytes.NewReader(msg), "ours")
	if err != nil {
		t.Fatal(err)
	}
	write("msg.minisig", sig)
	if out, err := exec.Command(tool, "-Vm", msgF, "-p", pubF).CombinedOutput(); err != nil {
		t.Fatalf("minisign -V rejected our prehashed signature: %v\n%s", err, out)
	}
	leg, _ := SignLegacy(sec, msg, "ours legacy")
	write("msg.minisig", leg)
	if out, err := exec.Command(tool, "-Vm", msgF, "-p", pubF).CombinedOutput(); err != nil {
		t.Fatalf("minisign -V rejected our legacy signature: %v\n%s", err, out)
	}
	// The tool's signatures (default prehashed and -l legacy), checked by us.
	for _, args := range [][]string{{"-S"}, {"-S", "-l"}} {
		cmd := exec.Command(tool, append(args, "-s", secF, "-m", msgF, "-t", "tool comment")...)
		cmd.Stdin = strings.NewReader("\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("minisign %v: %v\n%s", args, err, out)
		}
		sig, _ := os.ReadFile(msgF + ".minisig")
		info, err := (Keyring{pub}).Verify(msg, sig)
		if err != nil || info.TrustedComment != "tool comment" {
			t.Fatalf("tool signature %v: %+v, %v", args, info, err)
		}
	}
	// A key made by the tool signs releases here.
	tp, ts := filepath.Join(dir, "t.pub"), filepath.Join(dir, "t.key")
	if out, err := exec.Command(tool, "-G", "-W", "-p", tp, "-s", ts).CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v\n%s", err, out)
	}
	tpb, _ := os.ReadFile(tp)
	tsb, _ := os.ReadFile(ts)
	tpub, err := ParsePublicKey(tpb)
	if err != nil {
		t.Fatal(err)
	}
	tsec, err := ParseSecretKey(tsb, nil)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ = Sign(tsec, bytes.NewReader(msg), "x")
	if _, err := (Keyring{tpub}).Verify(msg, sig); err != nil {
		t.Fatalf("tool key: %v", err)
	}
}

func BenchmarkVerifyPrehashed1MiB(b *testing.B) {
	pub, sec := testKey(b, 6)
	msg := bytes.Repeat([]byte{0x5a}, 1<<20)
	sig, _ := Sign(sec, bytes.NewReader(msg), "bench")
	kr := Keyring{pub}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := kr.VerifyReader(bytes.NewReader(msg), sig, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReadKeyring(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	var want Keyring
	for i := range 2 {
		pub, _ := testKey(t, uint64(10+i))
		text, err := pub.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "k"+string(rune('a'+i))+".pub")
		if err := os.WriteFile(p, text, 0o600); err != nil {
			t.Fatal(err)
		}
		paths, want = append(paths, p), append(want, pub)
	}
	kr, err := ReadKeyring(paths...)
	if err != nil || len(kr) != 2 || kr[0].ID() != want[0].ID() || kr[1].ID() != want[1].ID() {
		t.Fatalf("ReadKeyring = %v, %v; want the keys %v", kr, err, want)
	}
	if kr, err := ReadKeyring(); err != nil || len(kr) != 0 {
		t.Errorf("no paths: %v, %v", kr, err)
	}
	if _, err := ReadKeyring(paths[0], filepath.Join(dir, "none.pub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.pub")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyring(bad); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad key: %v, want ErrBadKey naming %s", err, bad)
	}
}
