// Package otaagent is the device side of OTA: check a source for a signed
// release, download it resumably to a staging file, verify it against the
// pinned public keys, swap it in atomically keeping the previous binary,
// and after the restart let the new version prove itself healthy within a
// deadline or roll back. Guard is the supervisor hook that rolls back a
// binary that crashes before it can run its health check. Every step is
// safe against power loss; see docs/OTA.md for the reasoning.
package otaagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"loadwatch/internal/ota"
)

// Config configures an Updater. Zero values mean the documented defaults.
type Config struct {
	Dir     string // state directory: state.json and staging/
	Binary  string // the installed binary the supervisor starts
	Keys    ota.Keyring
	Current string // version of the running binary
	Channel string
	OS      string
	Arch    string
	Source  Source
	// AllowDowngrade accepts a release older than Current.
	AllowDowngrade bool
	// HealthDeadline bounds the new version's health check (0: 2 min).
	HealthDeadline time.Duration
	// MaxBoots is how many supervised starts a new version gets to mark
	// itself good before Guard restores the previous binary (0: 3).
	MaxBoots int
	Logger   *slog.Logger
	Now      func() time.Time
}

// Updater updates one installed binary.
type Updater struct {
	c   Config
	cur ota.Version
}

// New checks the configuration.
func New(c Config) (*Updater, error) {
	if c.Dir == "" || c.Binary == "" {
		return nil, errors.New("ota: state dir and binary path are required")
	}
	cur, err := ota.ParseVersion(c.Current)
	if err != nil {
		return nil, fmt.Errorf("ota: running version %q: %w (build with -ldflags -X loadwatch/internal/buildinfo.Version=vX.Y.Z)", c.Current, err)
	}
	c.Current = cur.String()
	if c.HealthDeadline <= 0 {
		c.HealthDeadline = 2 * time.Minute
	}
	if c.MaxBoots <= 0 {
		c.MaxBoots = 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "staging"), 0o700); err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	return &Updater{c: c, cur: cur}, nil
}

// lockFile takes an flock on DIR/name: blocking for the state (held for
// short read-modify-writes), or failing with ErrBusy when try is set.
func (u *Updater) lockFile(name string, try bool) (func(), error) {
	f, err := os.OpenFile(filepath.Join(u.c.Dir, name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ota: lock: %w", err)
	}
	how := syscall.LOCK_EX
	if try {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("ota: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// ErrBusy: another process is updating this binary right now.
var ErrBusy = errors.New("ota: another update is in progress")

// withState runs fn on the loaded state under the state lock.
func (u *Updater) withState(fn func(*State) error) error {
	unlock, err := u.lockFile(".state.lock", false)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := LoadState(u.c.Dir)
	if err != nil {
		return err
	}
	return fn(&st)
}

func (u *Updater) prevPath() string  { return u.c.Binary + ".prev" }
func (u *Updater) newPath() string   { return u.c.Binary + ".new" }
func (u *Updater) guardPath() string { return u.c.Binary + ".guard" }

func (u *Updater) report(st *State, kind, version string, ok bool, detail string) {
	u.reportAs(st, u.c.Current, kind, version, ok, detail)
}

// reportAs queues a report naming the version that runs afterwards.
func (u *Updater) reportAs(st *State, running, kind, version string, ok bool, detail string) {
	r := Report{Kind: kind, Channel: u.c.Channel, OS: u.c.OS, Arch: u.c.Arch, Running: running,
		Version: version, OK: ok, Detail: detail, Time: u.c.Now().UTC().Format(time.RFC3339)}
	for _, q := range st.Unreported { // one report per refusal is enough
		if q.Kind == kind && q.Version == version && q.Detail == detail && q.OK == ok {
			return
		}
	}
	st.Unreported = append(st.Unreported, r)
}

// queue adds a failure report under the state lock.
func (u *Updater) queue(kind, version, detail string) error {
	return u.withState(func(st *State) error {
		u.report(st, kind, version, false, detail)
		return saveState(u.c.Dir, *st)
	})
}

// ErrNoRelease means the source offers this device no release.
var ErrNoRelease = errNoRelease

// Check fetches and verifies the manifest. It returns ota.ErrNoUpdate
// (with the manifest) when the offered release is the running one, and
// ErrNoRelease when none is offered. A refused release (bad signature,
// downgrade, wrong platform, ...) is queued as a report.
func (u *Updater) Check(ctx context.Context) (ota.Manifest, error) {
	data, err := u.c.Source.fetchSmall(ctx, u.c.Source.ManifestURL, u.c.Current)
	if err != nil {
		return ota.Manifest{}, err
	}
	sig, err := u.c.Source.fetchSmall(ctx, u.c.Source.sigURL(), u.c.Current)
	if errors.Is(err, errNoRelease) {
		sig, err = nil, nil // refused below as unsigned
	}
	if err != nil {
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusNotFound {
			return ota.Manifest{}, err
		}
		sig = nil // no signature file: refused as unsigned
	}
	st, err := LoadState(u.c.Dir)
	if err != nil {
		return ota.Manifest{}, err
	}
	pol := ota.Policy{Keys: u.c.Keys, Current: u.cur, Channel: u.c.Channel, OS: u.c.OS, Arch: u.c.Arch,
		AllowDowngrade: u.c.AllowDowngrade, Bad: st.Bad}
	m, err := pol.Check(data, sig)
	switch {
	case err == nil, errors.Is(err, ota.ErrNoUpdate), errors.Is(err, ota.ErrKnownBad):
		return m, err
	}
	u.c.Logger.Warn("ota: release refused", "version", m.Version, "err", err)
	if serr := u.queue("refused", m.Version, err.Error()); serr != nil {
		return m, errors.Join(err, serr)
	}
	return m, err
}

// Download fetches the binary of an accepted manifest into the staging
// directory, resuming a partial download with an HTTP Range request, and
// verifies size, SHA-256 and signature. It returns the staged path.
func (u *Updater) Download(ctx context.Context, m ota.Manifest) (string, error) {
	part := filepath.Join(u.c.Dir, "staging", m.SHA256+".part")
	u.cleanStaging(filepath.Base(part))
	f, err := os.OpenFile(part, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", fmt.Errorf("ota: staging: %w", err)
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", fmt.Errorf("ota: staging: %w", err)
	}
	if have > m.Size {
		if err := f.Truncate(0); err != nil {
			return "", err
		}
		have, _ = f.Seek(0, io.SeekStart)
	}
	if have < m.Size {
		if err := u.fetchRange(ctx, m, f, have); err != nil {
			f.Sync() // keep what arrived for the next attempt
			return "", err
		}
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("ota: fsync staging: %w", err)
	}
	if err := m.VerifyBinary(u.c.Keys, part); err != nil {
		os.Remove(part) // never keep, never resume, never run
		return "", errors.Join(err, u.queue("refused", m.Version, err.Error()))
	}
	return part, nil
}

// cleanStaging removes staged files of other releases.
func (u *Updater) cleanStaging(keep string) {
	ents, _ := os.ReadDir(filepath.Join(u.c.Dir, "staging"))
	for _, e := range ents {
		if e.Name() != keep {
			os.Remove(filepath.Join(u.c.Dir, "staging", e.Name()))
		}
	}
}

func (u *Updater) fetchRange(ctx context.Context, m ota.Manifest, f *os.File, have int64) error {
	bu, err := u.c.Source.binaryURL(m.URL)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, bu, nil)
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	for k, vs := range u.c.Source.BinaryHeader {
		req.Header[k] = vs
	}
	req.Header.Set("X-Loadwatch-Version", u.c.Current)
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	u.c.Source.BinaryAuth.apply(req)
	resp, err := u.c.Source.client().Do(req)
	if err != nil {
		return fmt.Errorf("ota: GET %s: %w", redact(bu), err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			return fmt.Errorf("ota: GET %s: Content-Range %q, asked from %d", redact(bu), resp.Header.Get("Content-Range"), have)
		}
		u.c.Logger.Info("ota: resuming download", "version", m.Version, "from", have)
	case http.StatusOK:
		if err := f.Truncate(0); err != nil {
			return err
		}
		have = 0
	case http.StatusRequestedRangeNotSatisfiable:
		f.Truncate(0)
		return fmt.Errorf("ota: GET %s: range not satisfiable; restarting next time", redact(bu))
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return &HTTPError{URL: bu, Status: resp.StatusCode, Body: string(b)}
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return err
	}
	// Never take more than the manifest's size: a hostile server cannot
	// fill the disk.
	n, err := io.Copy(f, io.LimitReader(resp.Body, m.Size-have))
	if err != nil {
		return fmt.Errorf("ota: download %s after %d bytes: %w", m.Version, have+n, err)
	}
	if have+n != m.Size {
		return fmt.Errorf("ota: download %s: got %d of %d bytes", m.Version, have+n, m.Size)
	}
	return nil
}

func contentRangeStart(h string) (int64, bool) {
	spec, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}

// crashHook, when set by a test, is called after each named step of
// Install, Rollback and Commit; returning an error stops there, as a power
// loss would.
var crashHook func(step string) error

func step(name string) error {
	if crashHook != nil {
		return crashHook(name)
	}
	return nil
}

// Install swaps a verified staged binary in. After it returns, the
// binary at Config.Binary is the new version in trial; restart it (Exec)
// so that it can run its health check (Boot).
func (u *Updater) Install(m ota.Manifest, staged string) error {
	return u.withState(func(st *State) error { return u.install(st, m, staged) })
}

func (u *Updater) install(st *State, m ota.Manifest, staged string) error {
	if st.Pending != nil {
		return fmt.Errorf("ota: update to %s is still pending", st.Pending.Version)
	}
	prevSum, err := fileSHA256(u.c.Binary)
	if err != nil {
		return fmt.Errorf("ota: installed binary: %w", err)
	}
	// 1. The verified binary becomes Binary.new (executable, durable).
	if err := os.Chmod(staged, 0o755); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	if err := os.Rename(staged, u.newPath()); err != nil {
		// The staging directory may be on another filesystem.
		if err := linkOver(staged, u.newPath()); err != nil {
			return fmt.Errorf("ota: stage %s: %w", u.newPath(), err)
		}
		os.Remove(staged)
	}
	if err := ota.SyncDir(filepath.Dir(u.c.Binary)); err != nil {
		return err
	}
	if err := step("staged"); err != nil {
		return err
	}
	// 2. Keep the running binary as Binary.prev.
	if err := linkOver(u.c.Binary, u.prevPath()); err != nil {
		return err
	}
	if err := step("kept-previous"); err != nil {
		return err
	}
	// 3. Record the intent.
	st.Pending = &Pending{Version: m.Version, From: u.c.Current, Phase: PhaseSwap, SHA256: m.SHA256,
		PrevSHA256: prevSum, Started: u.c.Now().UTC().Format(time.RFC3339)}
	if err := saveState(u.c.Dir, *st); err != nil {
		return err
	}
	if err := step("intent"); err != nil {
		return err
	}
	// 4. The atomic swap.
	if err := os.Rename(u.newPath(), u.c.Binary); err != nil {
		return fmt.Errorf("ota: swap: %w", err)
	}
	if err := ota.SyncDir(filepath.Dir(u.c.Binary)); err != nil {
		return err
	}
	if err := step("swapped"); err != nil {
		return err
	}
	// 5. Trial.
	st.Pending.Phase = PhaseTrial
	u.report(st, "apply", m.Version, true, "installed; restarting for the health check")
	if err := saveState(u.c.Dir, *st); err != nil {
		return err
	}
	u.c.Logger.Info("ota: installed", "version", m.Version, "previous", u.c.Current)
	return step("trial")
}

// Outcome of Update.
type Outcome struct {
	Manifest  ota.Manifest
	Installed bool // restart now
	UpToDate  bool
	NoRelease bool
}

// Update is Check, Download and Install.
func (u *Updater) Update(ctx context.Context) (Outcome, error) {
	unlock, err := u.lockFile(".update.lock", true)
	if err != nil {
		return Outcome{}, err
	}
	defer unlock()
	m, err := u.Check(ctx)
	switch {
	case errors.Is(err, ErrNoRelease):
		return Outcome{NoRelease: true}, nil
	case errors.Is(err, ota.ErrNoUpdate):
		return Outcome{Manifest: m, UpToDate: true}, nil
	case err != nil:
		return Outcome{Manifest: m}, err
	}
	staged, err := u.Download(ctx, m)
	if err != nil {
		return Outcome{Manifest: m}, err
	}
	if err := u.Install(m, staged); err != nil {
		return Outcome{Manifest: m}, err
	}
	return Outcome{Manifest: m, Installed: true}, nil
}

// HealthFunc tells whether the running agent works: for the agent's run
// loop, the meter answers, the broker is reachable and the config is
// valid. It must return within ctx's deadline.
type HealthFunc func(ctx context.Context) error

// BootResult says what Boot did.
type BootResult struct {
	Committed  string // this version passed its health check and is now good
	RolledBack string // this version failed; the previous binary is back: Exec it
	Reason     string
}

// Boot must run first when the agent starts. If this binary is an update
// on trial it runs health within HealthDeadline and either marks itself
// good or restores the previous binary (then the caller must Exec
// Config.Binary). It also finishes any step a crash interrupted.
func (u *Updater) Boot(ctx context.Context, health HealthFunc) (BootResult, error) {
	var (
		res BootResult
		p   Pending
		try bool
	)
	err := u.withState(func(st *State) error {
		var err error
		if res, err = u.reconcile(st, false); err != nil || res.RolledBack != "" {
			return err
		}
		if st.Pending == nil || st.Pending.Phase != PhaseTrial || st.Pending.Version != u.c.Current {
			if st.Pending == nil && st.Current != u.c.Current { // first start, or installed by hand
				st.Current = u.c.Current
				return saveState(u.c.Dir, *st)
			}
			return nil
		}
		p, try = *st.Pending, true
		return nil
	})
	if err != nil || !try {
		return res, err
	}
	// The health check runs without the lock: it may take minutes.
	hctx, cancel := context.WithTimeout(ctx, u.c.HealthDeadline)
	herr := runHealth(hctx, health)
	cancel()
	if herr != nil && ctx.Err() != nil { // stopped, not unhealthy: decide on the next start
		return res, ctx.Err()
	}
	err = u.withState(func(st *State) error {
		if st.Pending == nil || st.Pending.Version != p.Version || st.Pending.Phase != PhaseTrial {
			return nil // another process finished it meanwhile
		}
		var err error
		if herr != nil {
			u.c.Logger.Error("ota: health check failed; rolling back", "version", p.Version, "err", herr)
			res, err = u.rollback(st, "health check failed: "+herr.Error())
		} else {
			res, err = u.commit(st)
		}
		return err
	})
	return res, err
}

func runHealth(ctx context.Context, health HealthFunc) error {
	if health == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- health(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("not healthy within the deadline: %w", ctx.Err())
	}
}

func (u *Updater) commit(st *State) (BootResult, error) {
	p := st.Pending
	st.Current, st.Pending = p.Version, nil
	u.reportAs(st, p.Version, "result", p.Version, true, fmt.Sprintf("healthy after %d start(s); previous %s kept", max(p.Boots, 1), p.From))
	if err := saveState(u.c.Dir, *st); err != nil {
		return BootResult{}, err
	}
	if err := step("committed"); err != nil {
		return BootResult{}, err
	}
	// The guard copy is always a version that passed its health check.
	if err := linkOver(u.c.Binary, u.guardPath()); err != nil {
		u.c.Logger.Warn("ota: update guard copy", "err", err)
	}
	u.c.Logger.Info("ota: update good", "version", p.Version)
	return BootResult{Committed: p.Version}, nil
}

// rollback restores Binary.prev. Every step can be repeated after a crash.
func (u *Updater) rollback(st *State, reason string) (BootResult, error) {
	p := st.Pending
	if p.Phase != PhaseRollback {
		p.Phase, p.Reason = PhaseRollback, reason
		if err := saveState(u.c.Dir, *st); err != nil {
			return BootResult{}, err
		}
	}
	if err := step("rollback-intent"); err != nil {
		return BootResult{}, err
	}
	if sum, _ := fileSHA256(u.c.Binary); sum != p.PrevSHA256 {
		if psum, err := fileSHA256(u.prevPath()); err != nil || psum != p.PrevSHA256 {
			return BootResult{}, fmt.Errorf("ota: cannot roll back %s: previous binary %s missing or changed", p.Version, u.prevPath())
		}
		if err := linkOver(u.prevPath(), u.c.Binary); err != nil {
			return BootResult{}, err
		}
	}
	if err := step("restored"); err != nil {
		return BootResult{}, err
	}
	if !slices.Contains(st.Bad, p.Version) {
		st.Bad = append(st.Bad, p.Version)
	}
	st.Current, st.Pending = p.From, nil
	u.reportAs(st, p.From, "result", p.Version, false, p.Reason)
	if err := saveState(u.c.Dir, *st); err != nil {
		return BootResult{}, err
	}
	return BootResult{RolledBack: p.Version, Reason: p.Reason}, nil
}

// reconcile finishes what a crash interrupted; guard counts a start.
func (u *Updater) reconcile(st *State, guard bool) (BootResult, error) {
	p := st.Pending
	if p == nil {
		os.Remove(u.newPath())
		return BootResult{}, nil
	}
	switch p.Phase {
	case PhaseSwap:
		sum, _ := fileSHA256(u.c.Binary)
		if sum != p.SHA256 { // power lost before the rename: nothing changed
			u.c.Logger.Warn("ota: update interrupted before the swap; discarded", "version", p.Version)
			os.Remove(u.newPath())
			st.Pending = nil
			u.report(st, "apply", p.Version, false, "interrupted before the swap; will retry")
			return BootResult{}, saveState(u.c.Dir, *st)
		}
		p.Phase = PhaseTrial
		if err := saveState(u.c.Dir, *st); err != nil {
			return BootResult{}, err
		}
		fallthrough
	case PhaseTrial:
		if !guard {
			return BootResult{}, nil
		}
		p.Boots++
		if p.Boots > u.c.MaxBoots {
			return u.rollback(st, fmt.Sprintf("not healthy after %d starts (crashed or hung before its health check)", u.c.MaxBoots))
		}
		return BootResult{}, saveState(u.c.Dir, *st)
	case PhaseRollback:
		return u.rollback(st, p.Reason)
	}
	return BootResult{}, fmt.Errorf("ota: state: unknown phase %q", p.Phase)
}

// Guard runs before every supervised start (systemd ExecStartPre, from
// the known-good copy Binary.guard). It finishes interrupted steps and,
// when a new version has been started MaxBoots times without marking
// itself good, restores the previous binary.
func (u *Updater) Guard() (BootResult, error) {
	var res BootResult
	err := u.withState(func(st *State) error {
		var err error
		res, err = u.reconcile(st, true)
		return err
	})
	return res, err
}

// Flush sends queued reports (results, refusals, applies) to the source's
// report URL; without one they are logged and dropped. Unsent reports stay
// queued for the next contact.
func (u *Updater) Flush(ctx context.Context) error {
	st, err := LoadState(u.c.Dir)
	if err != nil || len(st.Unreported) == 0 {
		return err
	}
	done := 0 // sent, or refused for good by the server
	var ferr error
	for _, r := range st.Unreported {
		if u.c.Source.ReportURL == "" {
			u.c.Logger.Info("ota: result", "kind", r.Kind, "version", r.Version, "ok", r.OK, "detail", r.Detail)
		} else if err := u.c.Source.post(ctx, r); err != nil {
			var he *HTTPError
			if !errors.As(err, &he) || he.Status/100 != 4 || he.Status == 401 || he.Status == 408 || he.Status == 429 {
				ferr = err
				break
			}
			u.c.Logger.Warn("ota: report refused by the server; dropped", "kind", r.Kind, "version", r.Version, "err", err)
		}
		done++
	}
	// Reports queued meanwhile stay.
	return errors.Join(ferr, u.withState(func(st *State) error {
		st.Unreported = st.Unreported[min(done, len(st.Unreported)):]
		return saveState(u.c.Dir, *st)
	}))
}

// Reachable reports whether the source answers the manifest request with
// this device's credentials: the health check of the update command, and
// a part of the agent's.
func (u *Updater) Reachable(ctx context.Context) error {
	_, err := u.c.Source.fetchSmall(ctx, u.c.Source.ManifestURL, u.c.Current)
	if errors.Is(err, errNoRelease) {
		return nil
	}
	return err
}

// HostArch is this binary's architecture as releases name it: GOARCH,
// with 32-bit arm as "armv" plus GOARM (armv7).
func HostArch() string {
	if runtime.GOARCH != "arm" {
		return runtime.GOARCH
	}
	goarm := "7"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" && s.Value != "" {
				goarm = strings.SplitN(s.Value, ",", 2)[0]
			}
		}
	}
	return "armv" + goarm
}

// Exec replaces the running process with binary (same pid, so a
// supervisor keeps tracking it), passing args (without argv[0]).
func Exec(binary string, args []string) error {
	return syscall.Exec(binary, append([]string{binary}, args...), os.Environ())
}
