package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/agent"
	"loadwatch/internal/buildinfo"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/ota"
	"loadwatch/internal/ota/otaagent"
	"loadwatch/internal/power"
	"loadwatch/internal/telemetry"
)

// otaTestFault is a link-time switch for the end-to-end test of the run
// loop's OTA (never set in a release build): "broker" makes `run` log in
// to the broker with a wrong password, "meter" makes every meter read
// fail, so that the post-update health check fails for a real reason.
var otaTestFault string

// otaRun is the in-process updater of `loadwatch-agent run`: it implements
// agent.OTA (check_ota) and agent.OTAHeartbeat with an otaagent.Updater,
// runs Boot's health check against the running agent, and asks run to
// stop the loop and exec the binary after an install or a rollback.
type otaRun struct {
	u      *otaagent.Updater
	binary string
	log    *slog.Logger
	stop   context.CancelFunc // stops the agent loop (set by run)

	ready    atomic.Bool   // Boot finished: checks may run
	readyCh  chan struct{} // closed with ready
	checking chan struct{} // one slot: a check is running

	mu       sync.Mutex
	execWhy  string        // non-empty: exec binary once the loop stopped
	ackSeen  chan struct{} // closed when a command ack was published after an install
	lastConn error         // the last failed broker connection (for the health check)
	conns    int           // broker connections accepted
}

// otaSettings are the run flags for the in-process updater.
type otaSettings struct {
	Server         string
	Keys           []string
	Channel        string
	Token          string
	State          string
	Binary         string
	HealthDeadline time.Duration
}

func newOTARun(s otaSettings, log *slog.Logger) (*otaRun, error) {
	if len(s.Keys) == 0 {
		return nil, errors.New("--ota-server needs --ota-key (the pinned release public key)")
	}
	if s.Token == "" {
		return nil, errors.New("--ota-server needs the device token (--ota-token, or --password)")
	}
	keys, err := ota.ReadKeyring(s.Keys...)
	if err != nil {
		return nil, fmt.Errorf("--ota-key: %w", err)
	}
	bin := s.Binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		if bin, err = filepath.EvalSymlinks(exe); err != nil {
			return nil, err
		}
	}
	channel := s.Channel
	if channel == "" {
		channel = "stable"
	}
	dir := s.State
	if dir == "" {
		dir = "/var/lib/loadwatch-agent/ota"
	}
	arch := otaagent.HostArch()
	u, err := otaagent.New(otaagent.Config{
		Dir: dir, Binary: bin, Keys: keys, Current: buildinfo.Get("loadwatch-agent").Version,
		Channel: channel, OS: runtime.GOOS, Arch: arch,
		Source:         otaagent.ServerSource(s.Server, channel, runtime.GOOS, arch, s.Token),
		HealthDeadline: s.HealthDeadline, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return &otaRun{u: u, binary: bin, log: log, readyCh: make(chan struct{}), checking: make(chan struct{}, 1)}, nil
}

// health is Boot's check of a new version, run while the agent loop runs
// (so the relay protection never waits for it): the configuration was
// valid (the agent started), the meters answered at least one read, and
// the broker accepted a connection with the device's credentials. A
// refusal of the credentials fails at once; anything else is waited for
// until Boot's deadline.
func (o *otaRun) health(stats func() agent.Stats) otaagent.HealthFunc {
	return func(ctx context.Context) error {
		// Answer a little before Boot's deadline, so that the reason
		// reported is what was missing rather than "deadline exceeded".
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl.Add(-min(time.Second, time.Until(dl)/10)))
			defer cancel()
		}
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			s := stats()
			o.mu.Lock()
			conns, last := o.conns, o.lastConn
			o.mu.Unlock()
			var ce *mqttc.ConnectError
			if conns == 0 && errors.As(last, &ce) && permanentRefusal(ce.ReasonCode) {
				return fmt.Errorf("broker refused the device's credentials: %w", last)
			}
			if s.Reads > s.ReadErrors && conns > 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				switch {
				case s.Reads <= s.ReadErrors:
					return fmt.Errorf("meter not readable: %d reads, all failed", s.Reads)
				case last != nil:
					return fmt.Errorf("broker not reachable: %w", last)
				default:
					return errors.New("no broker connection yet")
				}
			case <-t.C:
			}
		}
	}
}

// permanentRefusal: CONNACK reasons that will not change by waiting
// (bad client id, bad user name or password, not authorised, banned).
func permanentRefusal(rc byte) bool {
	return rc == 0x85 || rc == 0x86 || rc == 0x87 || rc == 0x8A
}

// boot runs Updater.Boot against the running agent. When this version
// was rolled back it stops the loop so that run execs the previous
// binary; otherwise it enables the checks and sends queued results.
func (o *otaRun) boot(ctx context.Context, stats func() agent.Stats) {
	res, err := o.u.Boot(ctx, o.health(stats))
	switch {
	case err != nil && ctx.Err() != nil:
		return
	case err != nil:
		o.log.Error("ota: boot", "err", err)
	case res.RolledBack != "":
		o.log.Error("ota: this version failed its health check; restoring the previous binary", "version", res.RolledBack, "reason", res.Reason)
		o.restart("rolled back " + res.RolledBack)
		return
	case res.Committed != "":
		o.log.Info("ota: health check passed; this version is now good", "version", res.Committed)
	}
	o.ready.Store(true)
	close(o.readyCh)
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := o.u.Flush(fctx); err != nil && ctx.Err() == nil {
		o.log.Warn("ota: results not reported yet", "err", err)
	}
}

// bootFailed runs Boot with a health check that fails with err: a version
// on trial that cannot even start its loop rolls back at once. It returns
// whether the previous binary was restored.
func (o *otaRun) bootFailed(ctx context.Context, err error) bool {
	res, berr := o.u.Boot(ctx, func(context.Context) error { return fmt.Errorf("cannot start: %w", err) })
	if berr != nil {
		o.log.Error("ota: boot", "err", berr)
	}
	return res.RolledBack != ""
}

// restart asks run to stop the loop and exec the installed binary.
func (o *otaRun) restart(why string) {
	o.mu.Lock()
	o.execWhy = why
	o.mu.Unlock()
	o.stop()
}

// execPending says why the loop stopped for an exec ("" if not).
func (o *otaRun) execPending() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.execWhy
}

// CheckNow is the check_ota command: report, check, install. The ack says
// what happened; after an install the loop stops once the ack is
// published (at most 10 s later) and the new binary is exec'd.
func (o *otaRun) CheckNow(ctx context.Context) (string, error) {
	out, err := o.check(ctx, true)
	if err != nil {
		return "", err
	}
	if !out.Installed {
		return describe(out), nil
	}
	ch := make(chan struct{})
	o.mu.Lock()
	o.ackSeen = ch
	o.mu.Unlock()
	go func() {
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		o.restart("installed " + out.Manifest.Version)
	}()
	return describe(out), nil
}

// Heartbeat is the periodic check (agent.OTAHeartbeat). The first one
// comes with the first report, usually before Boot has finished: it waits
// for Boot (the agent skips heartbeats meanwhile).
func (o *otaRun) Heartbeat(ctx context.Context) {
	select {
	case <-o.readyCh:
	case <-ctx.Done():
		return
	}
	out, err := o.check(ctx, false)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			o.log.Warn("ota: heartbeat check", "err", err)
		}
	case out.Installed:
		o.restart("installed " + out.Manifest.Version)
	default:
		o.log.Debug("ota: heartbeat check", "outcome", describe(out))
	}
}

func describe(out otaagent.Outcome) string {
	switch {
	case out.Installed:
		return "installed " + out.Manifest.Version + "; restarting"
	case out.UpToDate:
		return "up to date " + buildinfo.Get("loadwatch-agent").Version
	case out.NoRelease:
		return "no release offered"
	}
	return "nothing done"
}

// refusals are the policy errors of a release the device will not take.
var refusals = []error{ota.ErrBadManifest, ota.ErrWrongPlatform, ota.ErrWrongChannel, ota.ErrDowngrade,
	ota.ErrTooOld, ota.ErrKnownBad, ota.ErrBinaryMismatch, ota.ErrUnsigned, ota.ErrBadSignature, ota.ErrUnknownKey}

// check runs one Flush + Update + Flush. A command (wait) waits for a
// heartbeat check that is running and then checks itself; a heartbeat
// never waits.
func (o *otaRun) check(ctx context.Context, wait bool) (otaagent.Outcome, error) {
	if !o.ready.Load() {
		return otaagent.Outcome{}, errors.New("not yet: this version's health check is still running")
	}
	select {
	case o.checking <- struct{}{}:
	default:
		if !wait {
			return otaagent.Outcome{}, errors.New("an update check is already running")
		}
		select {
		case o.checking <- struct{}{}:
		case <-ctx.Done():
			return otaagent.Outcome{}, ctx.Err()
		}
	}
	defer func() { <-o.checking }()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := o.u.Flush(ctx); err != nil {
		o.log.Warn("ota: results not reported yet", "err", err)
	}
	out, err := o.u.Update(ctx)
	if ferr := o.u.Flush(ctx); ferr != nil { // the refusal or the apply
		o.log.Warn("ota: results not reported yet", "err", ferr)
	}
	if err != nil {
		for _, r := range refusals {
			if errors.Is(err, r) {
				return out, fmt.Errorf("refused %s: %s", out.Manifest.Version, strings.TrimPrefix(err.Error(), "ota: "))
			}
		}
		return out, fmt.Errorf("update failed: %w", err)
	}
	if out.Installed {
		o.log.Info("ota: installed; restarting", "version", out.Manifest.Version)
	}
	return out, nil
}

// dialer wraps the agent's Dialer: it remembers whether the broker
// accepted the device (for the health check) and sees command acks
// published (to restart only once check_ota's ack is out).
func (o *otaRun) dialer(d agent.Dialer) agent.Dialer { return otaDialer{d, o} }

type otaDialer struct {
	agent.Dialer
	o *otaRun
}

func (d otaDialer) Dial(ctx context.Context, opts agent.DialOptions) (agent.Session, error) {
	s, err := d.Dialer.Dial(ctx, opts)
	d.o.mu.Lock()
	if err != nil {
		d.o.lastConn = err
	} else {
		d.o.conns++
	}
	d.o.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return otaSession{s, d.o}, nil
}

type otaSession struct {
	agent.Session
	o *otaRun
}

func (s otaSession) Publish(ctx context.Context, topic string, payload []byte, retain bool) (byte, error) {
	r, err := s.Session.Publish(ctx, topic, payload, retain)
	if err == nil && r < 0x80 {
		if _, ch, perr := telemetry.ParseTopic(topic); perr == nil && ch == telemetry.ChannelCmdAck {
			s.o.mu.Lock()
			if s.o.ackSeen != nil {
				close(s.o.ackSeen)
				s.o.ackSeen = nil
			}
			s.o.mu.Unlock()
		}
	}
	return r, err
}

// faultySensor fails every read (otaTestFault=meter).
type faultySensor struct{}

func (faultySensor) Read(context.Context, uint8) (power.Reading, error) {
	return power.Reading{}, errors.New("test build: meter fault")
}
