package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"loadwatch/internal/ota"
	"loadwatch/internal/ota/otaserver"
	"loadwatch/internal/ota/release"
)

// otaCmd groups the operator's OTA tools. See docs/OTA.md.
type otaCmd struct {
	Keygen  otaKeygenCmd  `cmd:"" help:"Make a minisign-compatible signing key pair (ota.key, ota.pub)."`
	Publish otaPublishCmd `cmd:"" help:"Sign a binary and publish it as a release, starting a staged rollout."`
	Import  otaImportCmd  `cmd:"" help:"Add a release signed on another machine, after verifying it (the server needs no signing key)."`
	List    otaListCmd    `cmd:"" help:"List channels, platforms, rollouts and releases in a data directory."`
	Promote otaPromoteCmd `cmd:"" help:"Move a rollout to its next cohort (or --to N%); 100% makes it the stable release."`
	Halt    otaHaltCmd    `cmd:"" help:"Stop a rollout: every device is offered the stable release again."`
	Serve   otaServeCmd   `cmd:"" help:"Serve releases to devices (standalone; the main server mounts the same handler)."`
}

const passwordEnv = "LOADWATCH_OTA_PASSWORD"

// password returns the key password from the environment or a prompt.
func password(confirm bool) (string, error) {
	if pw, ok := os.LookupEnv(passwordEnv); ok {
		return pw, nil
	}
	pw, err := ota.ReadPassword("Password: ")
	if err != nil {
		return "", fmt.Errorf("the key is encrypted: set %s or run on a terminal: %w", passwordEnv, err)
	}
	if confirm {
		pw2, err := ota.ReadPassword("Password (again): ")
		if err != nil {
			return "", err
		}
		if pw != pw2 {
			return "", errors.New("passwords differ")
		}
	}
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}

type otaKeygenCmd struct {
	Out     string `required:"" type:"path" help:"Directory to write ota.key and ota.pub into."`
	Encrypt bool   `help:"Encrypt ota.key with a password (scrypt, as minisign) from $LOADWATCH_OTA_PASSWORD or a prompt."`
	Force   bool   `help:"Overwrite existing key files."`
}

func (c *otaKeygenCmd) Run() error {
	if err := os.MkdirAll(c.Out, 0o700); err != nil {
		return err
	}
	keyPath, pubPath := filepath.Join(c.Out, "ota.key"), filepath.Join(c.Out, "ota.pub")
	if !c.Force {
		for _, p := range []string{keyPath, pubPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists (use --force to overwrite)", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	pw := ""
	if c.Encrypt {
		var err error
		if pw, err = password(true); err != nil {
			return err
		}
		if pw == "" {
			return errors.New("empty password")
		}
	}
	pub, sec, err := ota.GenerateKey(nil)
	if err != nil {
		return err
	}
	st, err := ota.MarshalSecretKey(sec, pw)
	if err != nil {
		return err
	}
	pt, err := pub.MarshalText()
	if err != nil {
		return err
	}
	if err := ota.WriteFileAtomic(keyPath, st, 0o600); err != nil {
		return err
	}
	if err := ota.WriteFileAtomic(pubPath, pt, 0o644); err != nil {
		return err
	}
	fmt.Printf("key id %s\nsecret key: %s (keep it offline%s)\npublic key: %s (pin it on every device)\n",
		pub.ID(), keyPath, map[bool]string{true: ", encrypted", false: ", NOT encrypted"}[c.Encrypt], pubPath)
	return nil
}

func loadSecretKey(path string) (ota.SecretKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ota.SecretKey{}, err
	}
	return ota.ParseSecretKey(b, func() (string, error) { return password(false) })
}

// percent parses "10%", "10" or "0.5%".
type percent float64

func (p *percent) UnmarshalText(b []byte) error {
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(string(b)), "%"), 64)
	if err != nil || f < 0 || f > 100 {
		return fmt.Errorf("percentage %q: want 0-100, e.g. 10%%", b)
	}
	*p = percent(f)
	return nil
}

type otaPublishCmd struct {
	Version    string  `required:"" help:"Semantic version of the binary (it must report the same)."`
	File       string  `required:"" type:"existingfile" help:"The built loadwatch-agent binary."`
	OS         string  `name:"os" default:"linux" help:"Target OS."`
	Arch       string  `required:"" enum:"arm64,armv7,amd64" help:"Target architecture: arm64, armv7 or amd64."`
	Channel    string  `default:"stable" help:"Release channel."`
	Rollout    percent `default:"100%" help:"First cohort, percent of devices (e.g. 10%); 100% makes it stable at once."`
	MinVersion string  `help:"Devices below this version must update to an intermediate release first."`
	Notes      string  `help:"Release notes (signed into the manifest)."`
	URL        string  `name:"url" help:"Binary URL written into update.json (default: served by loadwatch, relative to the manifest)."`
	Threshold  percent `default:"20%" help:"Halt the rollout automatically when more than this share of reporting devices fail."`
	MinResults int     `default:"1" help:"Results needed before the automatic halt may trigger."`
	Key        string  `required:"" type:"existingfile" help:"Secret key (ota.key)."`
	Data       string  `required:"" type:"path" help:"Release data directory."`
}

func (c *otaPublishCmd) Run() error {
	sec, err := loadSecretKey(c.Key)
	if err != nil {
		return err
	}
	st, err := release.Open(c.Data, nil)
	if err != nil {
		return err
	}
	m, err := st.Publish(release.PublishRequest{
		Version: c.Version, Binary: c.File, Channel: c.Channel, OS: c.OS, Arch: c.Arch,
		Percent: float64(c.Rollout), MinVersion: c.MinVersion, Notes: c.Notes, URL: c.URL, Key: sec,
		FailureThreshold: float64(c.Threshold) / 100, MinResults: c.MinResults,
	})
	if err != nil {
		return err
	}
	fmt.Printf("published %s for %s on %s: %d bytes, sha256 %s, rollout %v%%, signed by %s\n",
		m.Version, m.Platform(), m.Channel, m.Size, m.SHA256, m.Rollout.Percent, sec.ID())
	return nil
}

type otaImportCmd struct {
	Release    string   `required:"" type:"existingdir" help:"Release directory written by publish (update.json, update.json.minisig, loadwatch-agent)."`
	Pubkey     []string `required:"" help:"Public key(s) the release must be signed with (ota.pub)."`
	Rollout    percent  `help:"First cohort (default: the rollout signed into the manifest)."`
	Threshold  percent  `default:"20%" help:"Halt the rollout automatically when more than this share of reporting devices fail."`
	MinResults int      `default:"1" help:"Results needed before the automatic halt may trigger."`
	Data       string   `required:"" type:"path" help:"Release data directory."`
}

func (c *otaImportCmd) Run() error {
	keys, err := ota.ReadKeyring(c.Pubkey...)
	if err != nil {
		return err
	}
	st, err := release.Open(c.Data, nil)
	if err != nil {
		return err
	}
	m, err := st.Import(c.Release, keys, float64(c.Rollout), float64(c.Threshold)/100, c.MinResults)
	if err != nil {
		return err
	}
	r, err := st.Get(m.Channel, m.OS, m.Arch)
	if err != nil {
		return err
	}
	fmt.Printf("imported %s for %s (signature verified)\n", m.Version, m.Platform())
	printRollout(r)
	return nil
}

type otaListCmd struct {
	Data string `required:"" type:"existingdir" help:"Release data directory."`
	JSON bool   `help:"Print JSON."`
}

func (c *otaListCmd) Run() error {
	st, err := release.Open(c.Data, nil)
	if err != nil {
		return err
	}
	ls, err := st.List()
	if err != nil {
		return err
	}
	if c.JSON {
		for i := range ls {
			for j := range ls[i].Releases {
				ls[i].Releases[j].Signature = ""
			}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ls)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tPLATFORM\tSTABLE\tCANDIDATE\tCOHORT\tSTATE\tRESULTS\tRELEASES")
	for _, l := range ls {
		state := "-"
		if l.Candidate != "" {
			state = "rolling out"
			if l.Halted {
				state = "HALTED: " + l.HaltReason
			}
		}
		failed, total := l.Failures()
		var vs []string
		for _, m := range l.Releases {
			vs = append(vs, m.Version)
		}
		cohort := "-"
		if l.Candidate != "" {
			cohort = strconv.FormatFloat(l.Percent, 'f', -1, 64) + "%"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d failed / %d\t%s\n", l.Channel, l.Platform(), dash(l.Stable),
			dash(l.Candidate), cohort, state, failed, total, strings.Join(vs, " "))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type otaTarget struct {
	Channel string `default:"stable" help:"Release channel."`
	OS      string `name:"os" default:"linux" help:"Target OS."`
	Arch    string `required:"" enum:"arm64,armv7,amd64" help:"Target architecture."`
	Data    string `required:"" type:"existingdir" help:"Release data directory."`
}

func printRollout(r release.Rollout) {
	failed, total := r.Failures()
	switch {
	case r.Candidate == "":
		fmt.Printf("%s %s: stable %s, no rollout\n", r.Channel, r.Platform(), dash(r.Stable))
	default:
		fmt.Printf("%s %s: stable %s, candidate %s at %v%%, halted=%v %s (%d of %d failed)\n", r.Channel, r.Platform(),
			dash(r.Stable), r.Candidate, r.Percent, r.Halted, r.HaltReason, failed, total)
	}
}

type otaPromoteCmd struct {
	otaTarget
	To     percent `help:"Cohort to move to (default: the next of 1, 10, 25, 50, 100%)."`
	Resume bool    `help:"Resume a halted rollout (clears its failure tally)."`
}

func (c *otaPromoteCmd) Run() error {
	st, err := release.Open(c.Data, nil)
	if err != nil {
		return err
	}
	r, err := st.Promote(c.Channel, c.OS, c.Arch, float64(c.To), c.Resume)
	if err != nil {
		return err
	}
	printRollout(r)
	return nil
}

type otaHaltCmd struct {
	otaTarget
	Reason string `default:"halted by operator" help:"Why (shown in list and the API)."`
}

func (c *otaHaltCmd) Run() error {
	st, err := release.Open(c.Data, nil)
	if err != nil {
		return err
	}
	r, err := st.Halt(c.Channel, c.OS, c.Arch, c.Reason)
	if err != nil {
		return err
	}
	printRollout(r)
	return nil
}

type otaServeCmd struct {
	Data      string `required:"" type:"existingdir" help:"Release data directory."`
	Listen    string `default:"127.0.0.1:8480" help:"Address to listen on."`
	Tokens    string `required:"" type:"existingfile" help:"JSON file {\"token\": \"device-id\", ...} until the registry provides device tokens."`
	Events    string `help:"Append-only JSON-lines event log (default: DATA/events.jsonl)."`
	Rate      int64  `default:"1048576" help:"Per-download rate limit, bytes/s (0: none)."`
	Downloads int    `default:"16" help:"Concurrent downloads."`
	TLSCert   string `name:"tls-cert" help:"TLS certificate (PEM); use TLS for anything beyond a lab."`
	TLSKey    string `name:"tls-key" help:"TLS key (PEM)."`
}

func (c *otaServeCmd) Run(ctx context.Context) error {
	st, err := release.Open(c.Data, nil)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(c.Tokens)
	if err != nil {
		return err
	}
	var toks map[string]string
	if err := json.Unmarshal(b, &toks); err != nil {
		return fmt.Errorf("%s: %w", c.Tokens, err)
	}
	if c.Events == "" {
		c.Events = filepath.Join(c.Data, "events.jsonl")
	}
	lg, err := otaserver.OpenLog(c.Events, 0)
	if err != nil {
		return err
	}
	defer lg.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	h := otaserver.New(otaserver.Options{Releases: otaserver.StoreReleases{Store: st}, Auth: otaserver.NewTokens(toks),
		Recorder: lg, RateLimit: c.Rate, MaxDownloads: c.Downloads, Logger: log})
	mux := http.NewServeMux()
	mux.Handle("/ota/v1/", h.DeviceHandler())
	// Status only: promote/halt stay on the CLI here (no operator auth).
	mux.Handle("GET /api/v1/ota/status", h.APIHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	log.Info("ota: serving", "addr", ln.Addr().String(), "data", c.Data)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if c.TLSCert != "" {
		err = srv.ServeTLS(ln, c.TLSCert, c.TLSKey)
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
