package otaagent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/ota"
	"loadwatch/internal/ota/otaagent"
	"loadwatch/internal/ota/otaserver"
	"loadwatch/internal/ota/release"
)

// e2e is one device with real loadwatch-agent binaries and a server.
type e2e struct {
	t        *testing.T
	tmp      string
	builds   map[string]string // version -> built binary
	store    *release.Store
	sec      ota.SecretKey
	pubFile  string
	tokens   *otaserver.Tokens
	log      *otaserver.Log
	srv      *httptest.Server
	bin      string // installed binary
	stateDir string
	arch     string
}

func moduleRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// build links loadwatch-agent with a version and optional test faults.
func (e *e2e) build(version string, extra ...string) {
	e.t.Helper()
	out := filepath.Join(e.tmp, "build", version, "loadwatch-agent")
	ld := "-s -w -X loadwatch/internal/buildinfo.Version=" + version
	for _, x := range extra {
		ld += " -X " + x
	}
	cmd := exec.Command("go", "build", "-o", out, "-ldflags", ld, "./cmd/loadwatch-agent")
	cmd.Dir = moduleRoot(e.t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("build %s: %v\n%s", version, err, b)
	}
	e.builds[version] = out
}

func (e *e2e) publish(version string) {
	e.t.Helper()
	if _, err := e.store.Publish(release.PublishRequest{Version: version, Binary: e.builds[version], Channel: "stable",
		OS: runtime.GOOS, Arch: e.arch, Percent: 100, Key: e.sec}); err != nil {
		e.t.Fatalf("publish %s: %v", version, err)
	}
}

// agent runs the installed binary; it may exec itself into other versions.
func (e *e2e) agent(server, token string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if len(args) == 0 {
		args = []string{"update", "--server", server, "--token", token}
	}
	if args[0] == "update" || args[0] == "ota-guard" {
		args = append(args, "--dir", e.stateDir, "--binary", e.bin, "--pubkey", e.pubFile,
			"--arch", e.arch, "--max-boots", "2", "--health-deadline", "20s", "-v")
	}
	bin := e.bin
	if args[0] == "ota-guard" {
		bin = e.bin + ".guard"
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func (e *e2e) installedVersion() string {
	e.t.Helper()
	out, err := exec.Command(e.bin, "version", "--json").Output()
	if err != nil {
		e.t.Fatalf("installed binary does not run: %v", err)
	}
	var info struct{ Version string }
	if err := json.Unmarshal(out, &info); err != nil {
		e.t.Fatal(err)
	}
	return info.Version
}

func (e *e2e) device(id string) otaserver.DeviceStatus {
	e.t.Helper()
	resp, err := http.Get(e.srv.URL + "/api/v1/ota/status?events=1000")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st otaserver.StatusReply
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		e.t.Fatal(err)
	}
	for _, d := range st.Devices {
		if d.Device == id {
			return d
		}
	}
	e.t.Fatalf("device %s not in status", id)
	return otaserver.DeviceStatus{}
}

func copyExec(t *testing.T, src, dst string) {
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestEndToEnd updates real agent binaries through the real handler:
// v1 -> v2; v3 failing its health check rolls back to v2; a tampered
// release is never run; an interrupted download resumes; a revoked token
// gets 401; (not -short) a binary crashing at start is rolled back by the
// supervisor hook.
func TestEndToEnd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("exec-based restart and the guard are Linux only")
	}
	arch := otaagent.HostArch()
	if ota.ValidArch(arch) != nil {
		t.Skipf("no releases for %s", arch)
	}
	tmp := t.TempDir()
	e := &e2e{t: t, tmp: tmp, builds: map[string]string{}, arch: arch,
		bin: filepath.Join(tmp, "opt", "bin", "loadwatch-agent"), stateDir: filepath.Join(tmp, "var", "ota")}

	start := time.Now()
	e.build("v1.0.0")
	e.build("v2.0.0")
	e.build("v3.0.0", "main.otaHealthFault=meter_not_readable")
	e.build("v3.0.1", "main.otaCrashAtStart=tampered_release_was_executed")
	e.build("v3.1.0")
	if !testing.Short() {
		e.build("v3.2.0", "main.otaCrashAtStart=1")
	}
	t.Logf("built %d agent binaries in %v", len(e.builds), time.Since(start).Round(time.Millisecond))

	pub, sec, err := ota.GenerateKey(rand.NewChaCha8([32]byte{42}))
	if err != nil {
		t.Fatal(err)
	}
	e.sec = sec
	e.pubFile = filepath.Join(tmp, "ota.pub")
	pt, _ := pub.MarshalText()
	if err := os.WriteFile(e.pubFile, pt, 0o644); err != nil {
		t.Fatal(err)
	}
	if e.store, err = release.Open(filepath.Join(tmp, "data"), nil); err != nil {
		t.Fatal(err)
	}
	e.tokens = otaserver.NewTokens(map[string]string{"tok-A": "dev-A"})
	e.log = otaserver.NewLog(0)
	h := otaserver.New(otaserver.Options{Releases: otaserver.StoreReleases{Store: e.store}, Auth: e.tokens, Recorder: e.log})
	e.srv = httptest.NewServer(h)
	defer e.srv.Close()

	if err := os.MkdirAll(filepath.Dir(e.bin), 0o755); err != nil {
		t.Fatal(err)
	}
	copyExec(t, e.builds["v1.0.0"], e.bin)
	copyExec(t, e.builds["v1.0.0"], e.bin+".guard")

	// v1 -> v2, reported.
	e.publish("v2.0.0")
	out, err := e.agent(e.srv.URL, "tok-A")
	if err != nil || !strings.Contains(out, "updated to v2.0.0: health check passed") {
		t.Fatalf("v1 -> v2: %v\n%s", err, out)
	}
	if v := e.installedVersion(); v != "v2.0.0" {
		t.Fatalf("installed %s after v1 -> v2", v)
	}
	d := e.device("dev-A")
	if d.Running != "v2.0.0" || d.LastResult == nil || !*d.LastResult.OK || d.LastResult.Version != "v2.0.0" {
		t.Fatalf("server status after v2: %+v %+v", d, d.LastResult)
	}

	// v3 fails its health check: rolled back to v2, failure reported.
	e.publish("v3.0.0")
	out, err = e.agent(e.srv.URL, "tok-A")
	if err == nil || !strings.Contains(out, "v3.0.0 failed after the update") {
		t.Fatalf("v2 -> v3 (unhealthy): %v\n%s", err, out)
	}
	if v := e.installedVersion(); v != "v2.0.0" {
		t.Fatalf("installed %s after the failed v3", v)
	}
	d = e.device("dev-A")
	if d.Running != "v2.0.0" || d.LastResult == nil || *d.LastResult.OK || d.LastResult.Version != "v3.0.0" ||
		!strings.Contains(d.LastResult.Detail, "meter_not_readable") {
		t.Fatalf("server status after v3: %+v %+v", d, d.LastResult)
	}
	// It does not try v3 again.
	if out, err = e.agent(e.srv.URL, "tok-A"); err == nil || !strings.Contains(out, "failed on this device before") {
		t.Fatalf("v3 retried: %v\n%s", err, out)
	}

	// A tampered release is refused and never executed.
	e.publish("v3.0.1")
	stored := filepath.Join(e.store.Dir(), "stable", runtime.GOOS+"-"+arch, "v3.0.1", release.BinaryName)
	b, _ := os.ReadFile(stored)
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(stored, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = e.agent(e.srv.URL, "tok-A")
	if err == nil || !strings.Contains(out, "binary does not match") || strings.Contains(out, "tampered_release_was_executed") ||
		strings.Contains(out, "crashing at start") {
		t.Fatalf("tampered v3.0.1: %v\n%s", err, out)
	}
	if v := e.installedVersion(); v != "v2.0.0" {
		t.Fatalf("installed %s after the tampered release", v)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.stateDir, "staging")); len(ents) != 0 {
		t.Fatalf("tampered download kept in staging: %v", ents)
	}
	if d = e.device("dev-A"); d.LastResult == nil || d.LastResult.Kind != otaserver.KindRefused || d.LastResult.Version != "v3.0.1" {
		t.Fatalf("refusal not reported: %+v", d.LastResult)
	}

	// An interrupted download resumes: a slow server, the agent killed
	// mid-download, then the normal server.
	e.publish("v3.1.0")
	slow := httptest.NewServer(otaserver.New(otaserver.Options{Releases: otaserver.StoreReleases{Store: e.store},
		Auth: e.tokens, Recorder: e.log, RateLimit: 1 << 20}))
	defer slow.Close()
	cmd := exec.Command(e.bin, "update", "--server", slow.URL, "--token", "tok-A", "--dir", e.stateDir, "--binary", e.bin,
		"--pubkey", e.pubFile, "--arch", arch)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	part := ""
	deadline := time.Now().Add(60 * time.Second)
	for part == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		ents, _ := os.ReadDir(filepath.Join(e.stateDir, "staging"))
		for _, en := range ents {
			if fi, err := en.Info(); err == nil && fi.Size() >= 256<<10 {
				part = filepath.Join(e.stateDir, "staging", en.Name())
			}
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if part == "" {
		t.Fatal("download never started")
	}
	fi, err := os.Stat(part)
	if err != nil || fi.Size() >= int64(len(b)) {
		t.Fatalf("partial file after kill: %v %v", fi, err)
	}
	if v := e.installedVersion(); v != "v2.0.0" {
		t.Fatalf("installed %s after the interrupted download", v)
	}
	out, err = e.agent(e.srv.URL, "tok-A")
	if err != nil || !strings.Contains(out, "updated to v3.1.0") || !strings.Contains(out, "resuming download") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	evs, _ := e.log.Events(context.Background(), "dev-A", 0)
	resumed := slices.ContainsFunc(evs, func(ev otaserver.Event) bool {
		return ev.Kind == otaserver.KindDownload && ev.Version == "v3.1.0" && ev.Offset > 0 && ev.Offset == fi.Size() && ev.Detail == "206"
	})
	if !resumed {
		t.Fatalf("no resumed (206, offset > 0) download in %+v", evs)
	}

	// Wrong and revoked tokens: 401 and no binary.
	binURL := e.srv.URL + "/ota/v1/stable/" + runtime.GOOS + "-" + arch + "/v3.1.0/loadwatch-agent"
	manURL := e.srv.URL + "/ota/v1/stable/" + runtime.GOOS + "-" + arch + "/update.json"
	get := func(u, tok string) (int, []byte) {
		req, _ := http.NewRequest("GET", u, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	for _, tok := range []string{"", "tok-wrong", "TOK-A", "tok-A2"} {
		for _, u := range []string{manURL, manURL + ".minisig", binURL} {
			if code, body := get(u, tok); code != http.StatusUnauthorized || bytes.Contains(body, []byte("ELF")) || len(body) > 100 {
				t.Errorf("token %q %s: %d, %d bytes", tok, u, code, len(body))
			}
		}
	}
	if code, body := get(binURL, "tok-A"); code != http.StatusOK || !bytes.HasPrefix(body, []byte("\x7fELF")) {
		t.Fatalf("valid token: %d", code)
	}
	e.tokens.Revoke("tok-A")
	if code, _ := get(binURL, "tok-A"); code != http.StatusUnauthorized {
		t.Errorf("revoked token: %d", code)
	}
	out, err = e.agent(e.srv.URL, "tok-A")
	if err == nil || !strings.Contains(out, "401") {
		t.Fatalf("revoked token update: %v\n%s", err, out)
	}
	e.tokens.Set("tok-A2", "dev-A")

	if testing.Short() {
		return
	}
	// A release that crashes at once: the supervisor hook (ota-guard, run
	// from the known-good copy before every start) rolls it back.
	e.publish("v3.2.0")
	out, err = e.agent(e.srv.URL, "tok-A2")
	if err == nil || !strings.Contains(out, "crashing at start") {
		t.Fatalf("v3.2.0 should crash: %v\n%s", err, out)
	}
	rolled := false
	for i := 0; i < 5 && !rolled; i++ { // what systemd does: ExecStartPre, then ExecStart
		gout, err := e.agent("", "", "ota-guard")
		if err != nil {
			t.Fatalf("guard: %v\n%s", err, gout)
		}
		rolled = strings.Contains(gout, "rolled back v3.2.0")
		if !rolled {
			if out, err := e.agent(e.srv.URL, "tok-A2"); err == nil || !strings.Contains(out, "crashing at start") {
				t.Fatalf("start %d of v3.2.0: %v\n%s", i, err, out)
			}
		}
	}
	if !rolled || e.installedVersion() != "v3.1.0" {
		t.Fatalf("crashing release not rolled back (installed %s)", e.installedVersion())
	}
	out, _ = e.agent(e.srv.URL, "tok-A2")
	d = e.device("dev-A")
	if d.LastResult == nil || *d.LastResult.OK || d.LastResult.Version != "v3.2.0" || !strings.Contains(d.LastResult.Detail, "not healthy after 2 starts") {
		t.Fatalf("crash not reported: %+v\n%s", d.LastResult, out)
	}
}
