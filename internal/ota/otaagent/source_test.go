package otaagent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/ota"
	"loadwatch/internal/ota/otaagent"
)

// TestGenericHTTPSSource is the original's private-GitHub setup: the
// manifest from the contents API with a bearer token and an Accept
// header, the binary from a release asset with HTTP Basic.
func TestGenericHTTPSSource(t *testing.T) {
	pub, sec, err := ota.GenerateKey(rand.NewChaCha8([32]byte{33}))
	if err != nil {
		t.Fatal(err)
	}
	bin := bytes.Repeat([]byte("new agent "), 1000)
	bsig, _ := ota.Sign(sec, bytes.NewReader(bin), "loadwatch-agent v1.1.0")
	sum := sha256.Sum256(bin)
	var srvURL string
	m := ota.Manifest{Schema: 1, Version: "v1.1.0", Size: int64(len(bin)), SHA256: hex.EncodeToString(sum[:]),
		Signature: string(bsig), Channel: "stable", OS: "linux", Arch: "arm64",
		Published: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), Rollout: ota.Plan{Percent: 100}}
	var manifest, msig []byte
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repos/me/fw/contents/{file}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer ghp_manifest" || r.Header.Get("Accept") != "application/vnd.github.raw+json" {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		switch r.PathValue("file") {
		case "update.json":
			w.Write(manifest)
		case "update.json.minisig":
			w.Write(msig)
		default:
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("GET /releases/download/v1.1.0/agent", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "x-access-token" || p != "ghp_binary" {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(bin))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	srvURL = srv.URL
	m.URL = srvURL + "/releases/download/v1.1.0/agent" // absolute, as the original
	manifest, _ = m.Encode()
	msig, _ = ota.Sign(sec, bytes.NewReader(manifest), "update.json v1.1.0")

	dir := t.TempDir()
	binPath := filepath.Join(dir, "loadwatch-agent")
	os.WriteFile(binPath, []byte("old agent"), 0o755)
	src := otaagent.Source{
		ManifestURL:  srvURL + "/repos/me/fw/contents/update.json",
		ManifestAuth: otaagent.Auth{Bearer: "ghp_manifest"},
		BinaryAuth:   otaagent.Auth{User: "x-access-token", Password: "ghp_binary"},
		Header:       http.Header{"Accept": {"application/vnd.github.raw+json"}},
	}
	mk := func(s otaagent.Source) *otaagent.Updater {
		u, err := otaagent.New(otaagent.Config{Dir: filepath.Join(dir, "state"), Binary: binPath, Keys: ota.Keyring{pub},
			Current: "v1.0.0", Channel: "stable", OS: "linux", Arch: "arm64", Source: s})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	bad := src
	bad.BinaryAuth.Password = "wrong"
	if _, err := mk(bad).Update(context.Background()); !errors.Is(err, otaagent.ErrUnauthorized) {
		t.Fatalf("wrong binary password: %v", err)
	}
	bad = src
	bad.ManifestAuth.Bearer = "wrong"
	if _, err := mk(bad).Update(context.Background()); !errors.Is(err, otaagent.ErrUnauthorized) || strings.Contains(err.Error(), "ghp_") {
		t.Fatalf("wrong manifest token: %v", err)
	}
	out, err := mk(src).Update(context.Background())
	if err != nil || !out.Installed {
		t.Fatalf("update: %+v %v", out, err)
	}
	if b, _ := os.ReadFile(binPath); !bytes.Equal(b, bin) {
		t.Fatal("binary not installed")
	}
	// Without a report URL the results are only logged; Flush empties the queue.
	if err := mk(src).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := otaagent.LoadState(filepath.Join(dir, "state")); len(st.Unreported) != 0 {
		t.Fatalf("reports left: %+v", st.Unreported)
	}
}
