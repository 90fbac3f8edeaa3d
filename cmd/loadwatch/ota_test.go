package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"loadwatch/internal/ota/release"
)

// runOta parses and runs one `loadwatch ota ...` command line in-process.
func runOta(t *testing.T, args ...string) error {
	t.Helper()
	var c struct {
		Ota otaCmd `cmd:""`
	}
	p, err := kong.New(&c, kong.BindTo(context.Background(), (*context.Context)(nil)), kong.Exit(func(int) { t.Fatal("exit") }))
	if err != nil {
		t.Fatal(err)
	}
	k, err := p.Parse(append([]string{"ota"}, args...))
	if err != nil {
		return err
	}
	return k.Run()
}

func TestOtaCommands(t *testing.T) {
	tmp := t.TempDir()
	keys, data, relDir, srv := filepath.Join(tmp, "keys"), filepath.Join(tmp, "data"), filepath.Join(tmp, "rel"), filepath.Join(tmp, "srv")
	bin := filepath.Join(tmp, "agent")
	if err := os.WriteFile(bin, []byte("\x7fELF pretend agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(args ...string) {
		t.Helper()
		if err := runOta(t, args...); err != nil {
			t.Fatalf("ota %s: %v", strings.Join(args, " "), err)
		}
	}
	must("keygen", "--out", keys)
	if err := runOta(t, "keygen", "--out", keys); err == nil {
		t.Error("keygen overwrote existing keys")
	}
	if fi, err := os.Stat(filepath.Join(keys, "ota.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ota.key: %v %v", fi, err)
	}
	key, pub := filepath.Join(keys, "ota.key"), filepath.Join(keys, "ota.pub")
	must("publish", "--version", "v1.0.0", "--file", bin, "--arch", "arm64", "--key", key, "--data", data)
	must("publish", "--version", "v1.1.0", "--file", bin, "--arch", "arm64", "--rollout", "10%", "--key", key, "--data", data)
	if err := runOta(t, "publish", "--version", "v1.2.0", "--file", bin, "--arch", "mips", "--key", key, "--data", data); err == nil {
		t.Error("publish for arch mips accepted")
	}
	if err := runOta(t, "publish", "--version", "v1.2.0", "--file", bin, "--arch", "arm64", "--rollout", "150%", "--key", key, "--data", data); err == nil {
		t.Error("rollout 150% accepted")
	}
	must("list", "--data", data)
	must("promote", "--arch", "arm64", "--data", data, "--to", "50%")
	must("halt", "--arch", "arm64", "--data", data, "--reason", "test")
	st, _ := release.Open(data, nil)
	r, err := st.Get("stable", "linux", "arm64")
	if err != nil || r.Candidate != "v1.1.0" || r.Percent != 50 || !r.Halted || r.HaltReason != "test" {
		t.Fatalf("rollout after promote and halt: %+v %v", r, err)
	}
	// Sign on one machine, import on the server.
	must("publish", "--version", "v2.0.0", "--file", bin, "--arch", "armv7", "--rollout", "25", "--key", key, "--data", relDir)
	must("import", "--release", filepath.Join(relDir, "stable", "linux-armv7", "v2.0.0"), "--pubkey", pub, "--data", srv)
	st2, _ := release.Open(srv, nil)
	if r, err := st2.Get("stable", "linux", "armv7"); err != nil || r.Candidate != "v2.0.0" || r.Percent != 25 {
		t.Fatalf("imported rollout %+v %v", r, err)
	}
}
