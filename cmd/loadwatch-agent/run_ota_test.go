package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"loadwatch/internal/agent"
	"loadwatch/internal/broker"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/ota"
	"loadwatch/internal/ota/otaagent"
	"loadwatch/internal/ota/otaserver"
	"loadwatch/internal/ota/release"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"
)

// passwordAuth accepts a device whose password is "pw-" + its id.
type passwordAuth struct{}

func (passwordAuth) Authenticate(_ context.Context, user, password string) (registry.Principal, error) {
	if user == "" || password != "pw-"+user {
		return registry.Principal{}, errors.New("bad user name or password")
	}
	return registry.Principal{ID: user}, nil
}

// lockedBuffer collects a child's output.
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

func copyBinary(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// buildAgent links loadwatch-agent with a version and link-time test
// switches (-X name=value).
func buildAgent(t *testing.T, dir, version string, x ...string) string {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	out := filepath.Join(dir, version, "loadwatch-agent")
	ld := "-s -w -X loadwatch/internal/buildinfo.Version=" + version
	for _, v := range x {
		ld += " -X " + v
	}
	cmd := exec.Command("go", "build", "-o", out, "-ldflags", ld, "./cmd/loadwatch-agent")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", version, err, b)
	}
	return out
}

// TestRunOTA runs real built agents (`run --sim`) against the embedded
// broker and the OTA handler: v1 updates itself to v2 on its first
// heartbeat check and execs it; v2 passes its health check (meter read,
// broker accepted its credentials), reports v2 on the broker and an ok
// result to the OTA server. check_ota then installs v3, built to log in
// with a wrong password: its health check fails, the previous binary (v2)
// is restored and exec'd, the failure is reported with its reason, and a
// second check_ota refuses v3 as failed here before. Not -short: v3.1,
// whose meter never answers, is rolled back after the health deadline.
func TestRunOTA(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("exec-based restart is Linux only")
	}
	arch := otaagent.HostArch()
	if ota.ValidArch(arch) != nil {
		t.Skipf("no releases for %s", arch)
	}
	tmp := t.TempDir()
	start := time.Now()
	builds := map[string]string{
		"v1.0.0": buildAgent(t, filepath.Join(tmp, "build"), "v1.0.0"),
		"v2.0.0": buildAgent(t, filepath.Join(tmp, "build"), "v2.0.0"),
		"v3.0.0": buildAgent(t, filepath.Join(tmp, "build"), "v3.0.0", "main.otaTestFault=broker"),
	}
	if !testing.Short() {
		builds["v3.1.0"] = buildAgent(t, filepath.Join(tmp, "build"), "v3.1.0", "main.otaTestFault=meter")
	}
	t.Logf("built %d agents in %v", len(builds), time.Since(start).Round(time.Millisecond))

	// Release machine and OTA server.
	pub, sec, err := ota.GenerateKey(rand.NewChaCha8([32]byte{7}))
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(tmp, "ota.pub")
	pt, _ := pub.MarshalText()
	if err := os.WriteFile(pubFile, pt, 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := release.Open(filepath.Join(tmp, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(v string) {
		t.Helper()
		if _, err := store.Publish(release.PublishRequest{Version: v, Binary: builds[v], Channel: "stable",
			OS: runtime.GOOS, Arch: arch, Percent: 100, Key: sec}); err != nil {
			t.Fatalf("publish %s: %v", v, err)
		}
	}
	// The device's OTA token is its MQTT password (the --ota-token default).
	events := otaserver.NewLog(0)
	h := otaserver.New(otaserver.Options{Releases: otaserver.StoreReleases{Store: store},
		Auth: otaserver.NewTokens(map[string]string{"pw-pi1": "pi1"}), Recorder: events})
	srv := httptest.NewServer(h)
	defer srv.Close()

	// Broker checking the device's password.
	s := &sink{}
	addr := freeAddr(t)
	b, err := broker.New(broker.Config{TCPAddr: addr, DataDir: t.TempDir(), Logger: quietLog(t)}, passwordAuth{}, s)
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(bctx) }()
	defer func() {
		bcancel()
		<-bdone
	}()
	select {
	case <-b.Ready():
	case err := <-bdone:
		t.Fatalf("broker: %v", err)
	}

	// Install v1 as the supervisor layout has it.
	bin := filepath.Join(tmp, "opt", "bin", "loadwatch-agent")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	copyBinary(t, builds["v1.0.0"], bin)
	copyBinary(t, builds["v1.0.0"], bin+".guard")
	publish("v2.0.0")

	out := &lockedBuffer{}
	cmd := exec.Command(bin, "run", "--sim", "--sim-schedule", "0s:laptop", "--broker", "mqtt://"+addr,
		"--device", "pi1", "--password", "pw-pi1", "--wake", "200ms", "--heartbeat", "3000",
		"--outbox", filepath.Join(tmp, "outbox"), "--linger", "500ms", "--retry-delay", "300ms",
		"--ota-server", srv.URL, "--ota-key", pubFile, "--ota-state", filepath.Join(tmp, "ota"),
		"--ota-health-deadline", "5s")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("agent exit: %v", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Error("agent did not stop within 30 s")
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	}()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for !cond() {
			select {
			case err := <-exited:
				t.Fatalf("agent exited (%v) while waiting for %s", err, what)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	online := func(fw string) bool { // the broker saw status online from firmware fw
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, st := range s.statuses {
			if st.State == telemetry.StatusOnline && st.Firmware == fw {
				return true
			}
		}
		return false
	}
	lastResult := func(version string) *otaserver.Event {
		evs, _ := events.Events(context.Background(), "pi1", 1000)
		for i := range evs {
			if e := evs[i]; e.Kind == otaserver.KindResult && e.Version == version {
				return &evs[i]
			}
		}
		return nil
	}
	checkedBy := func(running string) int { // checks the server recorded from a version
		evs, _ := events.Events(context.Background(), "pi1", 1000)
		n := 0
		for _, e := range evs {
			if e.Kind == otaserver.KindCheck && e.Running == running {
				n++
			}
		}
		return n
	}
	installed := func() string {
		o, err := exec.Command(bin, "version", "--json").Output()
		if err != nil {
			t.Fatalf("installed binary does not run: %v", err)
		}
		var info struct{ Version string }
		json.Unmarshal(o, &info)
		return info.Version
	}

	// 1. v1 -> v2 on the heartbeat check; v2 healthy, on the broker and
	// reported to the server.
	wait("v2 online on the broker", func() bool { return online("v2.0.0") })
	wait("v2's ok result on the OTA server", func() bool { r := lastResult("v2.0.0"); return r != nil })
	if r := lastResult("v2.0.0"); r.OK == nil || !*r.OK || r.Running != "v2.0.0" {
		t.Fatalf("v2 result %+v, want ok while running v2", r)
	}
	if !online("v1.0.0") {
		t.Error("v1 was never online before updating")
	}
	// v2's own first heartbeat check (up to date) must be over before v3
	// is published, so that v3 comes through check_ota.
	wait("v2's first check", func() bool { return checkedBy("v2.0.0") >= 1 })
	t.Logf("v1 -> v2 by the heartbeat check after %v", time.Since(start).Round(time.Millisecond))

	// 2. check_ota installs v3, which cannot log in to the broker: rolled
	// back to v2, failure reported.
	publish("v3.0.0")
	send := func(id string) telemetry.CommandAck {
		t.Helper()
		c := telemetry.Command{ID: id, Kind: telemetry.CmdCheckOTA}
		if err := b.Publish(telemetry.Topic("pi1", telemetry.ChannelCmd), c.AppendJSON(nil), false, 1); err != nil {
			t.Fatal(err)
		}
		wait("the ack of "+id, func() bool { _, ok := s.ack(id); return ok })
		a, _ := s.ack(id)
		return a
	}
	if a := send("ota-1"); !a.OK || a.State != "installed v3.0.0; restarting" {
		t.Fatalf("check_ota ack %+v, want installed v3.0.0", a)
	}
	wait("v3's failed result on the OTA server", func() bool { return lastResult("v3.0.0") != nil })
	r := lastResult("v3.0.0")
	if r.OK == nil || *r.OK || r.Running != "v2.0.0" || !strings.Contains(r.Detail, "broker refused the device's credentials") {
		t.Fatalf("v3 result %+v, want failed (broker refused) and v2 running", r)
	}
	if online("v3.0.0") {
		t.Error("v3 was online on the broker with a wrong password")
	}
	if v := installed(); v != "v2.0.0" {
		t.Fatalf("installed binary is %s after the rollback, want v2.0.0", v)
	}
	t.Logf("v3 rolled back: %s", r.Detail)

	// 3. v2 runs again, connects, and does not take v3 again.
	wait("v2 back and checked in", func() bool { return checkedBy("v2.0.0") >= 2 })
	a := send("ota-2")
	if a.OK || !strings.Contains(a.Error, "refused v3.0.0") || !strings.Contains(a.Error, "failed on this device before") {
		t.Fatalf("second check_ota ack %+v, want v3 refused as failed before", a)
	}

	// 4. (not -short) v3.1 whose meter never answers: rolled back after
	// the health deadline.
	if !testing.Short() {
		publish("v3.1.0")
		if a := send("ota-3"); !a.OK || a.State != "installed v3.1.0; restarting" {
			t.Fatalf("check_ota ack %+v, want installed v3.1.0", a)
		}
		wait("v3.1's failed result", func() bool { return lastResult("v3.1.0") != nil })
		r := lastResult("v3.1.0")
		if r.OK == nil || *r.OK || !strings.Contains(r.Detail, "meter not readable") {
			t.Fatalf("v3.1 result %+v, want failed (meter not readable)", r)
		}
		if v := installed(); v != "v2.0.0" {
			t.Fatalf("installed binary is %s after the second rollback, want v2.0.0", v)
		}
		t.Logf("v3.1 rolled back: %s", r.Detail)
	}
	// The process that started as v1 is still the one running (exec keeps
	// the pid): it has not exited.
	select {
	case err := <-exited:
		t.Fatalf("agent exited: %v", err)
	default:
	}
	wait("v2 online again", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, st := range s.statuses {
			if st.State == telemetry.StatusOnline && st.Firmware == "v2.0.0" {
				n++
			}
		}
		return n >= 2
	})
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}

// TestRunOTAHealth: the health check passes with a meter read and a
// broker connection, fails at once when the broker refuses the
// credentials, and says what is missing at the deadline.
func TestRunOTAHealth(t *testing.T) {
	o := &otaRun{}
	var st agent.Stats
	stats := func() agent.Stats { return st }
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 200*time.Millisecond)
	}
	ctx, cancel := short()
	defer cancel()
	if err := o.health(stats)(ctx); err == nil || !strings.Contains(err.Error(), "meter not readable") {
		t.Errorf("no reads: %v", err)
	}
	st = agent.Stats{Reads: 3, ReadErrors: 1}
	ctx, cancel = short()
	defer cancel()
	if err := o.health(stats)(ctx); err == nil || !strings.Contains(err.Error(), "no broker connection") {
		t.Errorf("no connection: %v", err)
	}
	o.lastConn = errors.New("dial tcp: connection refused")
	ctx, cancel = short()
	defer cancel()
	if err := o.health(stats)(ctx); err == nil || !strings.Contains(err.Error(), "broker not reachable: dial tcp") {
		t.Errorf("broker down: %v", err)
	}
	// A refusal of the credentials fails before the deadline (at the
	// deadline the answer would be "broker not reachable").
	o.lastConn = &mqttc.ConnectError{ReasonCode: 0x86, Reason: "bad user name or password"}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := o.health(stats)(ctx); err == nil || !strings.Contains(err.Error(), "refused the device's credentials") {
		t.Errorf("bad password: %v", err)
	}
	// A refusal that may pass (server busy) is waited out.
	o.lastConn = &mqttc.ConnectError{ReasonCode: 0x89, Reason: "server busy"}
	ctx, cancel = short()
	defer cancel()
	if err := o.health(stats)(ctx); err == nil || !strings.Contains(err.Error(), "broker not reachable") {
		t.Errorf("server busy: %v", err)
	}
	o.conns = 1
	if err := o.health(stats)(ctx); err != nil {
		t.Errorf("healthy: %v", err)
	}
}

// TestRunOTAFlags: the OTA settings come from the config file like every
// flag, and bad OTA invocations are refused before anything runs.
func TestRunOTAFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	yaml := "broker: mqtt://broker.lan:1883\ndevice: kitchen\nota-server: https://lw.example:8443\nota-key: [/etc/k1.pub, /etc/k2.pub]\n" +
		"ota-channel: beta\nota-state: /data/ota\nota-health-deadline: 90s\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c := parseRun(t, "--config", file, "--ota-channel", "canary")
	if err := c.mergeFile(); err != nil {
		t.Fatal(err)
	}
	if c.OTAServer != "https://lw.example:8443" || len(c.OTAKey) != 2 || c.OTAChannel != "canary" ||
		c.OTAState != "/data/ota" || c.OTAHealthDeadline != 90*time.Second {
		t.Fatalf("merged %+v: want the OTA settings from the file, the channel from the flag", c)
	}

	pub, _, err := ota.GenerateKey(rand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "ota.pub")
	pt, _ := pub.MarshalText()
	os.WriteFile(keyFile, pt, 0o644)
	garbage := filepath.Join(dir, "garbage.pub")
	os.WriteFile(garbage, []byte("not a key\n"), 0o644)
	base := []string{"--sim", "--broker", "mqtt://127.0.0.1:1883", "--device", "a", "--outbox", dir, "--ota-server", "http://127.0.0.1:1", "--ota-state", dir}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"with --ota-command": {[]string{"--ota-key", keyFile, "--password", "p", "--ota-command", "true"}, "not both"},
		"no token":           {[]string{"--ota-key", keyFile}, "device token"},
		"missing key":        {[]string{"--ota-key", filepath.Join(dir, "none.pub"), "--password", "p"}, "--ota-key"},
		"bad key":            {[]string{"--ota-key", garbage, "--password", "p"}, "--ota-key"},
		// the test binary has no release version to compare releases with
		"unversioned build": {[]string{"--ota-key", keyFile, "--ota-token", "t"}, "running version"},
	} {
		c := parseRun(t, append(append([]string{}, base...), tc.args...)...)
		if err := c.Run(t.Context()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

// TestRunOTABootFailed: a version on trial whose agent cannot even be
// built fails its health check at once with that error and the previous
// binary is back; a version not on trial is left alone.
func TestRunOTABootFailed(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "loadwatch-agent")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	if err := os.WriteFile(bin, []byte("old binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "ota")
	mk := func(version string) *otaRun {
		u, err := otaagent.New(otaagent.Config{Dir: state, Binary: bin, Current: version, Channel: "stable", OS: "linux", Arch: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
		return &otaRun{u: u, binary: bin, log: quietLog(t), readyCh: make(chan struct{}), checking: make(chan struct{}, 1)}
	}
	// Not on trial: nothing happens.
	if mk("v1.0.0").bootFailed(t.Context(), errors.New("serial port missing")) {
		t.Fatal("a version not on trial was rolled back")
	}
	// Install v2 as Update would, then start v2 with a broken setup.
	staged := filepath.Join(dir, "staged")
	newBin := []byte("new binary")
	os.WriteFile(staged, newBin, 0o600)
	sum := sha256.Sum256(newBin)
	if err := mk("v1.0.0").u.Install(ota.Manifest{Version: "v2.0.0", SHA256: hex.EncodeToString(sum[:])}, staged); err != nil {
		t.Fatal(err)
	}
	if !mk("v2.0.0").bootFailed(t.Context(), errors.New("serial port missing")) {
		t.Fatal("a trial version that cannot start was not rolled back")
	}
	if b, _ := os.ReadFile(bin); string(b) != "old binary" {
		t.Fatalf("installed binary %q after the rollback", b)
	}
	st, err := otaagent.LoadState(state)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range st.Unreported {
		found = found || (r.Kind == "result" && r.Version == "v2.0.0" && !r.OK && strings.Contains(r.Detail, "cannot start: serial port missing"))
	}
	if !found || len(st.Bad) != 1 || st.Bad[0] != "v2.0.0" {
		t.Fatalf("state %+v: want v2.0.0 bad and its failure queued", st)
	}
}
