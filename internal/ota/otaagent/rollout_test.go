package otaagent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"loadwatch/internal/ota"
	"loadwatch/internal/ota/otaagent"
	"loadwatch/internal/ota/otaserver"
	"loadwatch/internal/ota/release"
)

// simDevice is an agent simulated in-process: its "binary" is a file
// whose content names its version, and a restart is a new Updater.
type simDevice struct {
	id, token, dir, bin string
}

func (d simDevice) updater(t *testing.T, srvURL, version string, keys ota.Keyring) *otaagent.Updater {
	u, err := otaagent.New(otaagent.Config{Dir: filepath.Join(d.dir, "state"), Binary: d.bin, Keys: keys, Current: version,
		Channel: "stable", OS: "linux", Arch: "arm64", Source: otaagent.ServerSource(srvURL, "stable", "linux", "arm64", d.token)})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestRolloutHaltsOnFailingCohort: 20 devices, a release for 10 % of them
// that fails its health check. The first failure report halts the rollout
// automatically; no device outside the cohort ever downloads it, and every
// device ends on the old version.
func TestRolloutHaltsOnFailingCohort(t *testing.T) {
	tmp := t.TempDir()
	pub, sec, err := ota.GenerateKey(rand.NewChaCha8([32]byte{20}))
	if err != nil {
		t.Fatal(err)
	}
	keys := ota.Keyring{pub}
	store, err := release.Open(filepath.Join(tmp, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bins := map[string][]byte{"v1.0.0": []byte("agent v1.0.0"), "v1.1.0": []byte("agent v1.1.0 (fails its health check)")}
	for _, v := range []string{"v1.0.0", "v1.1.0"} {
		p := filepath.Join(tmp, v)
		if err := os.WriteFile(p, bins[v], 0o755); err != nil {
			t.Fatal(err)
		}
		pct := 100.0
		if v == "v1.1.0" {
			pct = 10
		}
		if _, err := store.Publish(release.PublishRequest{Version: v, Binary: p, Channel: "stable", OS: "linux", Arch: "arm64",
			Percent: pct, Key: sec, FailureThreshold: 0.2, MinResults: 1}); err != nil {
			t.Fatal(err)
		}
	}
	tokens := otaserver.NewTokens(nil)
	log := otaserver.NewLog(0)
	srv := httptest.NewServer(otaserver.New(otaserver.Options{Releases: otaserver.StoreReleases{Store: store}, Auth: tokens, Recorder: log}))
	defer srv.Close()

	var devs []simDevice
	cohort := map[string]bool{}
	for i := range 20 {
		d := simDevice{id: fmt.Sprintf("meter-%02d", i), token: fmt.Sprintf("token-%02d", i), dir: filepath.Join(tmp, "dev", fmt.Sprint(i))}
		d.bin = filepath.Join(d.dir, "loadwatch-agent")
		if err := os.MkdirAll(d.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d.bin, bins["v1.0.0"], 0o755); err != nil {
			t.Fatal(err)
		}
		tokens.Set(d.token, d.id)
		devs = append(devs, d)
		if ota.InCohort(d.id, 10) {
			cohort[d.id] = true
		}
	}
	if len(cohort) == 0 || len(cohort) > 4 {
		t.Fatalf("the 10%% cohort of 20 fixed ids has %d devices; pick other ids", len(cohort))
	}
	t.Logf("cohort: %v", cohort)

	ctx := context.Background()
	installed := 0
	for _, d := range devs {
		u := d.updater(t, srv.URL, "v1.0.0", keys)
		out, err := u.Update(ctx)
		if err != nil {
			t.Fatalf("%s: %v", d.id, err)
		}
		if !out.Installed {
			if !out.UpToDate {
				t.Fatalf("%s: %+v", d.id, out)
			}
			continue
		}
		installed++
		if !cohort[d.id] {
			t.Fatalf("%s outside the cohort installed %s", d.id, out.Manifest.Version)
		}
		// The restart: v1.1.0 fails its health check and rolls back.
		res, err := d.updater(t, srv.URL, "v1.1.0", keys).Boot(ctx, func(context.Context) error { return errors.New("meter not readable") })
		if err != nil || res.RolledBack != "v1.1.0" {
			t.Fatalf("%s: boot %+v %v", d.id, res, err)
		}
		// The old version restarts and reports on its next contact.
		u = d.updater(t, srv.URL, "v1.0.0", keys)
		if _, err := u.Boot(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := u.Flush(ctx); err != nil {
			t.Fatalf("%s: report: %v", d.id, err)
		}
	}
	// Devices update in id order: the first cohort device's failure halts
	// the rollout before the rest of the cohort gets the release.
	if installed != 1 {
		t.Fatalf("%d cohort devices installed the failing release, want 1", installed)
	}
	r, err := store.Get("stable", "linux", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Halted || r.Stable != "v1.0.0" {
		t.Fatalf("rollout not halted: %+v", r)
	}
	t.Logf("halt: %s", r.HaltReason)

	// Nobody outside the cohort downloaded v1.1.0, and after the halt even
	// the cohort is offered v1.0.0 only.
	evs, _ := log.Events(ctx, "", 0)
	for _, ev := range evs {
		if ev.Kind == otaserver.KindDownload && ev.Version == "v1.1.0" && !cohort[ev.Device] {
			t.Errorf("%s outside the cohort downloaded v1.1.0", ev.Device)
		}
	}
	for _, d := range devs {
		b, _ := os.ReadFile(d.bin)
		if !bytes.Equal(b, bins["v1.0.0"]) {
			t.Errorf("%s ends on %q", d.id, b)
		}
		out, err := d.updater(t, srv.URL, "v1.0.0", keys).Update(ctx)
		if err != nil || !out.UpToDate {
			t.Errorf("%s after the halt: %+v %v", d.id, out, err)
		}
		req, _ := http.NewRequest("GET", srv.URL+"/ota/v1/stable/linux-arm64/v1.1.0/loadwatch-agent", nil)
		req.Header.Set("Authorization", "Bearer "+d.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: halted release binary: HTTP %d", d.id, resp.StatusCode)
		}
	}
}
