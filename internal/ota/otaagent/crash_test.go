package otaagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"loadwatch/internal/ota"
)

var (
	oldBin = []byte("#!old binary v1.0.0\n")
	newBin = []byte("#!new binary v2.0.0\n")
)

type rig struct {
	t              *testing.T
	dir, bin       string
	stateDir       string
	newManifest    ota.Manifest
	oldSum, newSum string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, dir: dir, bin: filepath.Join(dir, "bin", "loadwatch-agent"), stateDir: filepath.Join(dir, "state")}
	if err := os.MkdirAll(filepath.Dir(r.bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.bin, oldBin, 0o755); err != nil {
		t.Fatal(err)
	}
	o, n := sha256.Sum256(oldBin), sha256.Sum256(newBin)
	r.oldSum, r.newSum = hex.EncodeToString(o[:]), hex.EncodeToString(n[:])
	r.newManifest = ota.Manifest{Version: "v2.0.0", SHA256: r.newSum, Size: int64(len(newBin))}
	return r
}

// updater is the process of version v starting.
func (r *rig) updater(v string) *Updater {
	u, err := New(Config{Dir: r.stateDir, Binary: r.bin, Current: v, Channel: "stable", OS: "linux", Arch: "arm64",
		MaxBoots: 2, HealthDeadline: 5 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	return u
}

func (r *rig) stage() string {
	p := filepath.Join(r.stateDir, "staging", r.newSum+".part")
	if err := os.WriteFile(p, newBin, 0o600); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// installed returns which binary is in place; anything else fails: the
// agent must be runnable at every point.
func (r *rig) installed() string {
	b, err := os.ReadFile(r.bin)
	if err != nil {
		r.t.Fatalf("binary missing: %v", err)
	}
	switch {
	case bytes.Equal(b, oldBin):
		return "v1.0.0"
	case bytes.Equal(b, newBin):
		return "v2.0.0"
	}
	r.t.Fatalf("binary is neither version: %q", b)
	return ""
}

func (r *rig) state() State {
	st, err := LoadState(r.stateDir)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// restart is what the supervisor does after a power loss: the guard,
// then whichever binary is installed, which runs Boot.
func (r *rig) restart(health HealthFunc) BootResult {
	r.t.Helper()
	if _, err := r.updater("v1.0.0").Guard(); err != nil {
		r.t.Fatalf("guard: %v", err)
	}
	res, err := r.updater(r.installed()).Boot(context.Background(), health)
	if err != nil {
		r.t.Fatalf("boot: %v", err)
	}
	return res
}

func crashAt(t *testing.T, at string) {
	crashHook = func(s string) error {
		if s == at {
			return errors.New("power lost at " + s)
		}
		return nil
	}
	t.Cleanup(func() { crashHook = nil })
}

func healthy(context.Context) error { return nil }

func unhealthy(context.Context) error { return errors.New("meter not readable") }

// TestInstallCrashPoints loses power after each step of Install. After
// the restart the installed binary is one of the two whole versions, and
// the update either completes or can be retried.
func TestInstallCrashPoints(t *testing.T) {
	for _, at := range []string{"staged", "kept-previous", "intent", "swapped", "trial"} {
		t.Run(at, func(t *testing.T) {
			r := newRig(t)
			u := r.updater("v1.0.0")
			if _, err := u.Boot(context.Background(), healthy); err != nil {
				t.Fatal(err)
			}
			crashAt(t, at)
			if err := u.Install(r.newManifest, r.stage()); err == nil {
				t.Fatal("no crash")
			}
			crashHook = nil
			res := r.restart(healthy)
			st := r.state()
			if st.Pending != nil {
				t.Fatalf("still pending after restart: %+v", st.Pending)
			}
			switch at {
			case "staged", "kept-previous", "intent":
				if got := r.installed(); got != "v1.0.0" || res.Committed != "" {
					t.Fatalf("installed %s, result %+v; want the old binary untouched", got, res)
				}
				if _, err := os.Stat(r.bin + ".new"); err == nil {
					t.Error("stray .new left behind")
				}
				// A retry succeeds.
				if err := r.updater("v1.0.0").Install(r.newManifest, r.stage()); err != nil {
					t.Fatalf("retry: %v", err)
				}
				if res := r.restart(healthy); res.Committed != "v2.0.0" {
					t.Fatalf("retry result %+v", res)
				}
			default:
				if res.Committed != "v2.0.0" {
					t.Fatalf("result %+v; want v2.0.0 committed", res)
				}
			}
			if got := r.installed(); got != "v2.0.0" || r.state().Current != "v2.0.0" {
				t.Fatalf("end: installed %s, state %+v", got, r.state())
			}
			if b, _ := os.ReadFile(r.bin + ".prev"); !bytes.Equal(b, oldBin) {
				t.Error("previous binary not kept")
			}
			if b, _ := os.ReadFile(r.bin + ".guard"); !bytes.Equal(b, newBin) {
				t.Error("guard copy not updated to the good version")
			}
		})
	}
}

// TestRollbackCrashPoints: a failed health check, with power lost during
// the rollback, still ends on the old binary with the failure recorded.
func TestRollbackCrashPoints(t *testing.T) {
	for _, at := range []string{"rollback-intent", "restored"} {
		t.Run(at, func(t *testing.T) {
			r := newRig(t)
			if err := r.updater("v1.0.0").Install(r.newManifest, r.stage()); err != nil {
				t.Fatal(err)
			}
			crashAt(t, at)
			if _, err := r.updater("v2.0.0").Boot(context.Background(), unhealthy); err == nil {
				t.Fatal("no crash")
			}
			crashHook = nil
			r.restart(healthy)
			st := r.state()
			if got := r.installed(); got != "v1.0.0" || st.Pending != nil || !slices.Contains(st.Bad, "v2.0.0") {
				t.Fatalf("installed %s, state %+v", got, st)
			}
			if n := len(st.Unreported); n == 0 || st.Unreported[n-1].OK || st.Unreported[n-1].Version != "v2.0.0" {
				t.Fatalf("failure not queued for report: %+v", st.Unreported)
			}
		})
	}
}

func TestHealthFailureRollsBack(t *testing.T) {
	r := newRig(t)
	if err := r.updater("v1.0.0").Install(r.newManifest, r.stage()); err != nil {
		t.Fatal(err)
	}
	res, err := r.updater("v2.0.0").Boot(context.Background(), unhealthy)
	if err != nil || res.RolledBack != "v2.0.0" {
		t.Fatalf("Boot = %+v, %v", res, err)
	}
	if r.installed() != "v1.0.0" {
		t.Fatal("not rolled back")
	}
	// The old version starts: nothing pending, it stays.
	if res := r.restart(healthy); res != (BootResult{}) {
		t.Fatalf("second start: %+v", res)
	}
}

func TestHealthDeadline(t *testing.T) {
	r := newRig(t)
	if err := r.updater("v1.0.0").Install(r.newManifest, r.stage()); err != nil {
		t.Fatal(err)
	}
	u := r.updater("v2.0.0")
	u.c.HealthDeadline = 50 * time.Millisecond
	hang := func(ctx context.Context) error { <-ctx.Done(); time.Sleep(10 * time.Millisecond); return nil }
	res, err := u.Boot(context.Background(), hang)
	if err != nil || res.RolledBack != "v2.0.0" {
		t.Fatalf("Boot = %+v, %v", res, err)
	}
}

// TestGuardRollsBackCrashingBinary: the new binary never reaches Boot;
// the guard counts supervised starts and restores the old one.
func TestGuardRollsBackCrashingBinary(t *testing.T) {
	r := newRig(t)
	if err := r.updater("v1.0.0").Install(r.newManifest, r.stage()); err != nil {
		t.Fatal(err)
	}
	g := r.updater("v1.0.0") // the guard copy is the old good version
	for i := 1; i <= 2; i++ {
		res, err := g.Guard()
		if err != nil || res.RolledBack != "" || r.installed() != "v2.0.0" {
			t.Fatalf("start %d: %+v %v, installed %s", i, res, err, r.installed())
		}
	}
	res, err := g.Guard()
	if err != nil || res.RolledBack != "v2.0.0" || r.installed() != "v1.0.0" {
		t.Fatalf("start 3: %+v %v, installed %s", res, err, r.installed())
	}
	if st := r.state(); !slices.Contains(st.Bad, "v2.0.0") || st.Current != "v1.0.0" {
		t.Fatalf("state %+v", st)
	}
}

func TestConcurrentUpdateIsRefused(t *testing.T) {
	r := newRig(t)
	unlock, err := r.updater("v1.0.0").lockFile(".update.lock", true)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := r.updater("v1.0.0").Update(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("second update: %v, want ErrBusy", err)
	}
}
