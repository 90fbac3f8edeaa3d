package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"loadwatch/internal/buildinfo"
	"loadwatch/internal/ota"
	"loadwatch/internal/ota/otaagent"
)

// Link-time fault switches for the OTA end-to-end test (never set in a
// release build): a binary built with
// -X main.otaHealthFault=reason fails its post-update health check, and
// one built with -X main.otaCrashAtStart=1 exits at once, as a broken
// release would.
var (
	otaHealthFault  string
	otaCrashAtStart string
)

// otaFlags are shared by update and ota-guard.
type otaFlags struct {
	Dir            string        `default:"/var/lib/loadwatch-agent/ota" help:"OTA state directory (state.json, staging/)."`
	Binary         string        `help:"Installed binary that the supervisor starts (default: this executable)."`
	Pubkey         []string      `default:"/etc/loadwatch-agent/ota.pub" help:"Pinned minisign public key file(s); releases must be signed by one of them."`
	Server         string        `env:"LOADWATCH_OTA_SERVER" help:"loadwatch server base URL (https://host:port); the device's token authenticates everything." xor:"source"`
	Token          string        `env:"LOADWATCH_OTA_TOKEN" help:"This device's bearer token for --server (prefer the env var or --token-file)."`
	TokenFile      string        `env:"LOADWATCH_OTA_TOKEN_FILE" help:"File holding the device token."`
	ManifestURL    string        `name:"manifest-url" env:"LOADWATCH_OTA_MANIFEST_URL" help:"Generic HTTPS source: URL of update.json (signature at the same URL plus .minisig)." xor:"source"`
	SignatureURL   string        `name:"signature-url" help:"Generic source: URL of update.json.minisig when not beside update.json."`
	ManifestBearer string        `env:"LOADWATCH_OTA_MANIFEST_TOKEN" help:"Generic source: bearer token for the manifest and its signature."`
	BinaryBearer   string        `env:"LOADWATCH_OTA_BINARY_TOKEN" help:"Generic source: bearer token for the binary."`
	BinaryBasic    string        `env:"LOADWATCH_OTA_BINARY_BASIC" help:"Generic source: user:password (HTTP Basic) for the binary."`
	Header         []string      `help:"Extra 'Name: value' header for manifest requests (repeatable)." sep:"none"`
	BinaryHeader   []string      `help:"Extra 'Name: value' header for binary requests (repeatable)." sep:"none"`
	Channel        string        `default:"stable" env:"LOADWATCH_OTA_CHANNEL" help:"Release channel this device follows."`
	Arch           string        `help:"Release architecture (arm64, armv7, amd64; default: this binary's)."`
	MaxBoots       int           `default:"3" help:"Supervised starts a new version gets to become healthy before ota-guard rolls it back."`
	HealthDeadline time.Duration `default:"2m" help:"Deadline of the new version's health check."`
	Verbose        bool          `short:"v" help:"Log every step."`
}

func parseHeaders(hs []string) (http.Header, error) {
	h := http.Header{}
	for _, s := range hs {
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("header %q: want 'Name: value'", s)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h, nil
}

func (f *otaFlags) updater(allowDowngrade, needKeys bool) (*otaagent.Updater, error) {
	level := slog.LevelWarn
	if f.Verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	bin := f.Binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		if bin, err = filepath.EvalSymlinks(exe); err != nil {
			return nil, err
		}
		// The guard runs from Binary.guard; it looks after Binary.
		bin = strings.TrimSuffix(bin, ".guard")
	}
	var keys ota.Keyring
	if needKeys { // the guard verifies nothing
		var err error
		if keys, err = ota.ReadKeyring(f.Pubkey...); err != nil {
			return nil, fmt.Errorf("pinned key: %w", err)
		}
	}
	arch := f.Arch
	if arch == "" {
		arch = otaagent.HostArch()
	}
	token := f.Token
	if f.TokenFile != "" {
		b, err := os.ReadFile(f.TokenFile)
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(b))
	}
	var src otaagent.Source
	switch {
	case f.Server != "":
		if token == "" {
			return nil, errors.New("--server needs the device token (--token, --token-file or LOADWATCH_OTA_TOKEN)")
		}
		src = otaagent.ServerSource(f.Server, f.Channel, runtime.GOOS, arch, token)
	case f.ManifestURL != "":
		src = otaagent.Source{ManifestURL: f.ManifestURL, SignatureURL: f.SignatureURL,
			ManifestAuth: otaagent.Auth{Bearer: f.ManifestBearer}, BinaryAuth: otaagent.Auth{Bearer: f.BinaryBearer}}
		if f.BinaryBasic != "" {
			u, p, _ := strings.Cut(f.BinaryBasic, ":")
			src.BinaryAuth = otaagent.Auth{User: u, Password: p}
		}
	default:
		// ota-guard needs no source.
	}
	var err error
	if src.Header, err = parseHeaders(f.Header); err != nil {
		return nil, err
	}
	if src.BinaryHeader, err = parseHeaders(f.BinaryHeader); err != nil {
		return nil, err
	}
	return otaagent.New(otaagent.Config{
		Dir: f.Dir, Binary: bin, Keys: keys, Current: buildinfo.Get("loadwatch-agent").Version,
		Channel: f.Channel, OS: runtime.GOOS, Arch: arch, Source: src, AllowDowngrade: allowDowngrade,
		HealthDeadline: f.HealthDeadline, MaxBoots: f.MaxBoots, Logger: log,
	})
}

type updateCmd struct {
	otaFlags
	AllowDowngrade bool          `help:"Accept a release older than the running version."`
	NoRestart      bool          `help:"Install but do not restart; the new version runs its health check on its next start."`
	Timeout        time.Duration `default:"10m" help:"Give up after this long."`
	RestartMarker  string        `help:"Create this file when a new version has passed its health check (the systemd update unit restarts the agent service when it exists)."`
}

// Run checks the source now and applies an update: download (resumable),
// verify, swap, restart by exec. A version that starts after an update
// first proves itself healthy (the source answers with this device's
// token) or restores the previous binary and restarts it.
func (c *updateCmd) Run(ctx context.Context) error {
	if otaCrashAtStart != "" {
		fmt.Fprintln(os.Stderr, "loadwatch-agent: crashing at start (test build)")
		os.Exit(3)
	}
	if c.Server == "" && c.ManifestURL == "" {
		return errors.New("give --server or --manifest-url")
	}
	u, err := c.updater(c.AllowDowngrade, true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	health := func(ctx context.Context) error {
		if otaHealthFault != "" {
			return errors.New(otaHealthFault)
		}
		return u.Reachable(ctx)
	}
	version := buildinfo.Get("loadwatch-agent").Version
	res, err := u.Boot(ctx, health)
	if err != nil {
		return err
	}
	bin := c.binaryPath()
	switch {
	case res.RolledBack != "":
		fmt.Printf("%s failed after the update (%s); restored the previous binary, restarting it\n", res.RolledBack, res.Reason)
		return otaagent.Exec(bin, os.Args[1:])
	case res.Committed != "":
		fmt.Printf("updated to %s: health check passed\n", res.Committed)
		if c.RestartMarker != "" {
			if err := ota.WriteFileAtomic(c.RestartMarker, []byte(res.Committed+"\n"), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "restart marker:", err)
			}
		}
	}
	ferr := u.Flush(ctx)
	out, err := u.Update(ctx)
	switch {
	case err != nil:
		u.Flush(ctx)
		return fmt.Errorf("update (running %s): %w", version, err)
	case out.NoRelease:
		fmt.Printf("running %s; no release is offered to this device\n", version)
	case out.UpToDate:
		fmt.Printf("running %s; up to date\n", version)
	case out.Installed:
		u.Flush(ctx)
		if c.NoRestart {
			fmt.Printf("installed %s; it runs its health check on the next start\n", out.Manifest.Version)
			return nil
		}
		fmt.Printf("installed %s; restarting\n", out.Manifest.Version)
		return otaagent.Exec(bin, os.Args[1:])
	}
	if err := u.Flush(ctx); err != nil {
		return fmt.Errorf("report results: %w", errors.Join(ferr, err))
	}
	return nil
}

func (f *otaFlags) binaryPath() string {
	if f.Binary != "" {
		return f.Binary
	}
	exe, _ := os.Executable()
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	return strings.TrimSuffix(exe, ".guard")
}

type otaGuardCmd struct {
	otaFlags
}

// Run is the supervisor's pre-start hook (systemd ExecStartPre). It
// finishes an update step a crash interrupted and rolls back a new
// version that was started --max-boots times without becoming healthy.
// It never fails the start: problems are printed and it exits 0.
func (c *otaGuardCmd) Run(ctx context.Context) error {
	u, err := c.updater(false, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ota-guard:", err)
		return nil
	}
	res, err := u.Guard()
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "ota-guard:", err)
	case res.RolledBack != "":
		fmt.Printf("ota-guard: rolled back %s: %s\n", res.RolledBack, res.Reason)
	}
	return nil
}
