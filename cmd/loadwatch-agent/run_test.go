package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"loadwatch/internal/agent"
	"loadwatch/internal/broker"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/outbox"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"
)

// childEnv makes the test binary run `loadwatch-agent` with the arguments
// it holds (separated by \x1f): the SIGKILL test re-executes itself.
const childEnv = "LOADWATCH_AGENT_TEST_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		os.Exit(runChild(strings.Split(args, "\x1f")))
	}
	os.Exit(m.Run())
}

func runChild(args []string) int {
	ctx, stop := signalContext()
	defer stop()
	var c cli
	p, err := kong.New(&c, kong.Name("loadwatch-agent"), kong.BindTo(ctx, (*context.Context)(nil)))
	if err == nil {
		var k *kong.Context
		if k, err = p.Parse(args); err == nil {
			err = k.Run()
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signalNotify(ch)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// outage is how long the broker is down in the outage tests: 60 s with
// LOADWATCH_LONG, 3 s otherwise; LOADWATCH_OUTAGE (a duration) overrides.
func outage(t *testing.T) time.Duration {
	if s := os.Getenv("LOADWATCH_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("LOADWATCH_OUTAGE: %v", err)
		}
		return d
	}
	if os.Getenv("LOADWATCH_LONG") != "" {
		return 60 * time.Second
	}
	return 3 * time.Second
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func quietLog(t *testing.T) *slog.Logger {
	if testing.Verbose() && os.Getenv("LOADWATCH_AGENT_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// reading is one reading as the broker side saw it.
type reading struct {
	epoch string
	seq   uint64
	ts    time.Time
	state telemetry.State
}

// sink collects what reached the broker.
type sink struct {
	mu          sync.Mutex
	readings    []reading
	messages    int
	batches     int
	acks        []telemetry.CommandAck
	events      []telemetry.Event
	statuses    []telemetry.Status
	newSessions int           // observer connections that found no session
	connects    int           // observer connections
	refuse      atomic.Uint32 // a reason code to refuse telemetry with (0: accept)
}

func (s *sink) take(topic string, payload []byte) byte {
	_, ch, err := telemetry.ParseTopic(topic)
	if err != nil {
		return 0x99
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ch {
	case telemetry.ChannelTelemetry:
		if r := s.refuse.Load(); r != 0 {
			return byte(r)
		}
		m, err := telemetry.DecodeTelemetry(payload, time.Time{}, telemetry.Limits{})
		if err != nil {
			return 0x99
		}
		s.messages++
		if m.Batch {
			s.batches++
		}
		for _, r := range m.Readings {
			s.readings = append(s.readings, reading{epoch: m.Epoch, seq: r.Seq, ts: r.Reading.Time, state: r.State})
		}
	case telemetry.ChannelCmdAck:
		a, err := telemetry.DecodeCommandAck(payload, telemetry.Limits{})
		if err != nil {
			return 0x99
		}
		s.acks = append(s.acks, a)
	case telemetry.ChannelEvent:
		e, err := telemetry.DecodeEvent(payload, time.Time{}, telemetry.Limits{})
		if err != nil {
			return 0x99
		}
		s.events = append(s.events, e)
	case telemetry.ChannelStatus:
		st, err := telemetry.DecodeStatus(payload, time.Time{}, telemetry.Limits{})
		if err != nil {
			return 0x99
		}
		s.statuses = append(s.statuses, st)
	}
	return 0
}

func (s *sink) Ingest(_ context.Context, _, topic string, payload []byte) (byte, error) {
	if r := s.take(topic, payload); r != 0 {
		return r, fmt.Errorf("refused with 0x%02x", r)
	}
	return 0, nil
}

func (s *sink) snapshot() (rs []reading, msgs, batches int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]reading(nil), s.readings...), s.messages, s.batches
}

func (s *sink) ack(id string) (telemetry.CommandAck, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.acks {
		if a.ID == id {
			return a, true
		}
	}
	return telemetry.CommandAck{}, false
}

// checkStream asserts the wire contract's delivery guarantees over what
// arrived: within an epoch the first arrivals are in seq order without a
// gap from 1, and a (epoch, seq) never names two different readings.
// It returns the highest seq per epoch. The embedded broker's ingest sees
// the agent's publishes in the order they came; a subscriber behind an
// external broker may get messages the broker held in flight across its
// own restart after newer ones, so for it sortFirst checks completeness
// and uniqueness on the sorted arrivals instead.
func checkStream(t *testing.T, rs []reading, sortFirst ...bool) map[string]uint64 {
	t.Helper()
	if len(sortFirst) > 0 && sortFirst[0] {
		rs = append([]reading(nil), rs...)
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].epoch == rs[j].epoch && rs[i].seq < rs[j].seq })
	}
	first := map[string]uint64{}
	seen := map[string]map[uint64]time.Time{}
	var epochs []string
	for _, r := range rs {
		if seen[r.epoch] == nil {
			seen[r.epoch] = map[uint64]time.Time{}
			epochs = append(epochs, r.epoch)
		}
		if ts, dup := seen[r.epoch][r.seq]; dup {
			if !ts.Equal(r.ts) {
				t.Fatalf("epoch %s seq %d used for two readings (%v and %v)", r.epoch, r.seq, ts, r.ts)
			}
			continue // a redelivery (QoS 1 is at least once)
		}
		if r.seq != first[r.epoch]+1 {
			var all []uint64
			for _, x := range rs {
				all = append(all, x.seq)
			}
			t.Logf("arrival order: %v", all)
			t.Fatalf("epoch %s: seq %d arrived after %d (lost or out of order)", r.epoch, r.seq, first[r.epoch])
		}
		first[r.epoch] = r.seq
		seen[r.epoch][r.seq] = r.ts
	}
	if len(epochs) > 1 {
		t.Logf("epochs seen: %v", epochs)
	}
	return first
}

// embedded runs the embedded broker on a fixed address with sessions on
// disk, so that it can be stopped and started again (an outage).
type embedded struct {
	t      *testing.T
	addr   string
	dir    string
	sink   *sink
	b      *broker.Broker
	cancel context.CancelFunc
	done   chan error
}

type anyDevice struct{}

func (anyDevice) Authenticate(_ context.Context, user, _ string) (registry.Principal, error) {
	if user == "" {
		return registry.Principal{}, errors.New("no user")
	}
	return registry.Principal{ID: user}, nil
}

func startEmbedded(t *testing.T) *embedded {
	e := &embedded{t: t, addr: freeAddr(t), dir: t.TempDir(), sink: &sink{}}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *embedded) start() {
	e.t.Helper()
	b, err := broker.New(broker.Config{TCPAddr: e.addr, DataDir: e.dir, Logger: quietLog(e.t)}, anyDevice{}, e.sink)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		cancel()
		e.t.Fatalf("broker did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		e.t.Fatal("broker did not start within 20 s")
	}
	e.b, e.cancel, e.done = b, cancel, done
}

func (e *embedded) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	select {
	case <-e.done:
	case <-time.After(20 * time.Second):
		e.t.Error("broker did not stop within 20 s")
	}
	e.cancel = nil
}

func (e *embedded) url() string { return "mqtt://" + e.addr }

// running is an agent run in-process.
type running struct {
	a      *agent.Agent
	sim    *simBus
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, args ...string) *running {
	t.Helper()
	var c cli
	p, err := kong.New(&c, kong.Name("loadwatch-agent"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(append([]string{"run"}, args...)); err != nil {
		t.Fatal(err)
	}
	r := &running{done: make(chan error, 1)}
	started := make(chan struct{})
	c.Run.onStart = func(a *agent.Agent, sim *simBus) { r.a, r.sim = a, sim; close(started) }
	c.Run.LogLevel = "error"
	if testing.Verbose() && os.Getenv("LOADWATCH_AGENT_DEBUG") != "" {
		c.Run.LogLevel = "debug"
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- c.Run.Run(ctx) }()
	select {
	case <-started:
	case err := <-r.done:
		cancel()
		t.Fatalf("agent did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not start within 20 s")
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("agent did not stop within 30 s")
	}
}

// fastArgs make a reading every 200 ms and report every one of them.
func fastArgs(brokerURL, outboxDir string) []string {
	return []string{"--sim", "--sim-schedule", "0s:laptop", "--broker", brokerURL, "--device", "pi1",
		"--wake", "200ms", "--heartbeat", "1", "--outbox", outboxDir, "--linger", "300ms",
		"--retry-delay", "300ms", "--publish-timeout", "3s", "--session-expiry", "1h"}
}

// outageScenario runs an agent, takes the broker away for outage(t),
// brings it back and checks that every reading arrives, once per seq, in
// order, with a batch replay.
func outageScenario(t *testing.T, url string, readings func() ([]reading, int, int), down, up func(), external bool, newSessions func() int) {
	dir := t.TempDir()
	r := startAgent(t, fastArgs(url, dir)...)
	waitFor(t, "10 readings before the outage", 30*time.Second, func() bool { rs, _, _ := readings(); return len(rs) >= 10 })
	down()
	d := outage(t)
	st0 := r.a.Stats()
	t.Logf("broker down for %v", d)
	time.Sleep(d)
	// A backlog of several readings, so that the replay uses batches
	// (a loaded machine may read slower than the 200 ms asked for).
	waitFor(t, "3 readings waiting in the outbox", 60*time.Second, func() bool {
		ob, _ := r.a.OutboxStats("pi1")
		return ob.Pending >= 3
	})
	ob, _ := r.a.OutboxStats("pi1")
	st1 := r.a.Stats()
	t.Logf("during the outage: %d reads, %d reports, %d connection attempts failed", st1.Reads-st0.Reads, st1.Reports-st0.Reports, st1.ConnectErrors-st0.ConnectErrors)
	if ob.Pending == 0 {
		t.Fatalf("no reading waited in the outbox during the outage: %+v", ob)
	}
	backlog := ob.Pending
	up()
	target := ob.NextSeq - 1
	missing := func() []uint64 {
		rs, _, _ := readings()
		got := map[uint64]bool{}
		for _, x := range rs {
			got[x.seq] = true
		}
		var m []uint64
		for s := uint64(1); s <= target; s++ {
			if !got[s] {
				m = append(m, s)
			}
		}
		return m
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(missing()) > 0 {
		if time.Now().After(deadline) {
			rs, _, _ := readings()
			var order []uint64
			for _, x := range rs {
				order = append(order, x.seq)
			}
			t.Fatalf("after the outage, seqs %v never arrived (arrival order %v; agent %+v; observer sessions started %d)", missing(), order, r.a.Stats(), newSessions())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stop(t)
	rs, msgs, batches := readings()
	last := checkStream(t, rs, external)
	final, _ := r.a.OutboxStats("pi1")
	if len(last) != 1 || last[final.Epoch] < final.Acked || last[final.Epoch] > final.NextSeq-1 {
		t.Fatalf("arrived up to %v; outbox epoch %s acked %d next %d", last, final.Epoch, final.Acked, final.NextSeq)
	}
	if final.Dropped != 0 || final.DeadLettered != 0 {
		t.Fatalf("outbox dropped %d, dead-lettered %d", final.Dropped, final.DeadLettered)
	}
	if batches == 0 {
		t.Fatalf("the backlog of %d readings was not replayed in batch form (%d messages)", backlog, msgs)
	}
	t.Logf("%d readings in %d messages (%d batches); backlog after the outage %d; outbox %+v", len(rs), msgs, batches, backlog, final)
}

func TestOutageEmbedded(t *testing.T) {
	e := startEmbedded(t)
	outageScenario(t, e.url(), e.sink.snapshot, e.stop, e.start, false, func() int { return 0 })
}

// mosquitto runs Debian's Mosquitto on an ephemeral port with a temporary
// config and persistence (so that the observer's session survives the
// restart), stopped by PID.
type mosquitto struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

func startMosquitto(t *testing.T) *mosquitto {
	const bin = "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("Debian's mosquitto is not installed (apt-get install mosquitto)")
	}
	m := &mosquitto{t: t, addr: freeAddr(t), dir: t.TempDir()}
	_, port, _ := net.SplitHostPort(m.addr)
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 100000\n", port, m.dir)
	if err := os.WriteFile(filepath.Join(m.dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *mosquitto) start() {
	m.t.Helper()
	m.cmd = exec.Command("/usr/sbin/mosquitto", "-c", filepath.Join(m.dir, "mosquitto.conf"))
	m.cmd.Stderr = io.Discard
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	waitFor(m.t, "mosquitto to listen", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", m.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (m *mosquitto) stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM) // mosquitto saves its sessions on SIGTERM
	done := make(chan struct{})
	go func() { m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		m.cmd.Process.Kill()
		<-done
	}
	m.cmd = nil
}

// observer subscribes to every telemetry topic with a persistent session
// and reconnects until the test ends.
func observe(t *testing.T, url string) *sink {
	s := &sink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	cfg := mqttc.Config{Broker: url, ClientID: "observer", SessionExpiry: time.Hour, ConnectTimeout: 2 * time.Second,
		Subscribe: []string{"loadwatch/v1/+/telemetry", "loadwatch/v1/+/cmd/ack", "loadwatch/v1/+/event", "loadwatch/v1/+/status"},
		OnMessage: func(m mqttc.Message) { s.take(m.Topic, m.Payload) }}
	first := make(chan struct{})
	go func() {
		defer close(done)
		once := sync.Once{}
		for ctx.Err() == nil {
			c, err := mqttc.Dial(ctx, cfg)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			s.mu.Lock()
			s.connects++
			if !c.SessionPresent() {
				s.newSessions++
			}
			s.mu.Unlock()
			once.Do(func() { close(first) })
			select {
			case <-ctx.Done():
				c.Close(context.Background())
			case <-c.Done():
			}
		}
	}()
	select {
	case <-first:
	case <-time.After(20 * time.Second):
		t.Fatal("observer could not connect")
	}
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// TestOutageMosquitto restarts Mosquitto under the agent. The agent
// reaches it through a gate that opens only once the observer is back, so
// that what the observer did not get is the agent's fault and not a
// message published before the observer had reconnected.
func TestOutageMosquitto(t *testing.T) {
	m := startMosquitto(t)
	obs := observe(t, "mqtt://"+m.addr)
	g := newGate(t, m.addr)
	connects := func() int { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.connects }
	var before int
	down := func() { g.Close(); before = connects(); m.stop() }
	up := func() {
		m.start()
		waitFor(t, "the observer to reconnect", 30*time.Second, func() bool { return connects() > before })
		g.Open()
	}
	outageScenario(t, "mqtt://"+g.l.Addr().String(), obs.snapshot, down, up, true,
		func() int { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.newSessions })
}

// gate forwards TCP to target while open; closing it drops every
// connection and refuses new ones.
type gate struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	open   bool
	conns  []net.Conn
}

func newGate(t *testing.T, target string) *gate {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{l: l, target: target, open: true}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			if !g.open {
				g.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				g.mu.Unlock()
				c.Close()
				continue
			}
			g.conns = append(g.conns, c, up)
			g.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); g.Close() })
	return g
}

func (g *gate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = false
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

func (g *gate) Open() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

// TestSIGKILLRestart kills the agent process while readings wait in its
// outbox (the broker refuses them with 0x97, which the agent retries) and
// restarts it: nothing that reached the outbox is lost and no seq names
// two readings.
func TestSIGKILLRestart(t *testing.T) {
	e := startEmbedded(t)
	dir := t.TempDir()
	args := append([]string{"run"}, fastArgs(e.url(), dir)...)
	args = append(args, "--log-level", "error")
	spawn := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\x1f"))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	child := spawn()
	waitFor(t, "5 readings from the child", 30*time.Second, func() bool { rs, _, _ := e.sink.snapshot(); return len(rs) >= 5 })
	e.sink.refuse.Store(0x97) // quota exceeded: retried, so the outbox fills
	time.Sleep(1500 * time.Millisecond)
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()

	// What reached the outbox, read from a copy (opening the original
	// would mark it cleanly closed).
	cp := t.TempDir()
	if err := exec.Command("cp", "-a", filepath.Join(dir, "pi1", "telemetry"), cp).Run(); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(filepath.Join(cp, "telemetry"), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	killed := ob.Stats()
	ob.Close()
	if killed.Pending == 0 {
		t.Fatalf("nothing was pending at the kill: %+v", killed)
	}
	t.Logf("at SIGKILL: outbox epoch %s acked %d next %d pending %d (new epoch on open: %v)", killed.Epoch, killed.Acked, killed.NextSeq, killed.Pending, killed.NewEpoch)

	e.sink.refuse.Store(0)
	child = spawn()
	waitFor(t, fmt.Sprintf("seq %d of epoch %s after the restart", killed.NextSeq-1, killed.Epoch), 60*time.Second, func() bool {
		rs, _, _ := e.sink.snapshot()
		for _, r := range rs {
			if r.epoch == killed.Epoch && r.seq >= killed.NextSeq-1 {
				return true
			}
		}
		return false
	})
	// a few readings of the second run
	n0, _, _ := e.sink.snapshot()
	waitFor(t, "readings of the restarted agent", 30*time.Second, func() bool { rs, _, _ := e.sink.snapshot(); return len(rs) >= len(n0)+3 })
	child.Process.Signal(syscall.SIGTERM)
	if err := child.Wait(); err != nil {
		t.Fatalf("restarted agent after SIGTERM: %v", err)
	}
	rs, _, _ := e.sink.snapshot()
	last := checkStream(t, rs)
	if len(last) != 1 {
		t.Fatalf("the restart started a new epoch (SyncAlways keeps it): %v", last)
	}
	if last[killed.Epoch] < killed.NextSeq {
		t.Fatalf("the restarted agent sent nothing new in epoch %s (up to %d, next seq at the kill %d)", killed.Epoch, last[killed.Epoch], killed.NextSeq)
	}
	if last[killed.Epoch] < killed.NextSeq-1 {
		t.Fatalf("epoch %s arrived up to seq %d, the outbox held up to %d at the kill", killed.Epoch, last[killed.Epoch], killed.NextSeq-1)
	}
	t.Logf("arrived per epoch: %v", last)
}

// TestCommandWhileAsleep sends relay_off while the duty-cycled agent has
// its radio off; the persistent session holds it and the agent executes it
// on its next wake.
func TestCommandWhileAsleep(t *testing.T) {
	e := startEmbedded(t)
	commandWhileAsleep(t, e.url(), e.sink, func(topic string, payload []byte) error {
		return e.b.Publish(topic, payload, false, 1)
	})
}

func TestCommandWhileAsleepMosquitto(t *testing.T) {
	m := startMosquitto(t)
	url := "mqtt://" + m.addr
	obs := observe(t, url)
	srv, err := mqttc.Dial(t.Context(), mqttc.Config{Broker: url, ClientID: "server", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	commandWhileAsleep(t, url, obs, func(topic string, payload []byte) error {
		r, err := srv.Publish(t.Context(), mqttc.Message{Topic: topic, Payload: payload, QoS: 1})
		if err == nil && r >= 0x80 {
			err = fmt.Errorf("refused 0x%02x", r)
		}
		return err
	})
}

func commandWhileAsleep(t *testing.T, url string, s *sink, publish func(topic string, payload []byte) error) {
	r := startAgent(t, "--sim", "--sim-schedule", "0s:nothing", "--broker", url, "--device", "pi1",
		"--wake", "300ms", "--heartbeat", "10", "--outbox", t.TempDir(), "--linger", "200ms", "--retry-delay", "300ms")
	waitFor(t, "the first report, then radio off", 30*time.Second, func() bool {
		rs, _, _ := s.snapshot()
		st := r.a.Stats()
		return len(rs) >= 1 && !st.Connected && st.Connects >= 1
	})
	c0 := r.a.Stats().Connects
	sent := time.Now()
	cmd := telemetry.Command{ID: "off-1", Kind: telemetry.CmdRelayOff}
	if err := publish(telemetry.Topic("pi1", telemetry.ChannelCmd), cmd.AppendJSON(nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ack of relay_off", 30*time.Second, func() bool { _, ok := s.ack("off-1"); return ok })
	a, _ := s.ack("off-1")
	if !a.OK || a.State != "open" {
		t.Fatalf("ack = %+v, want ok and state open", a)
	}
	if c := r.a.Stats().Connects; c <= c0 {
		t.Fatalf("the command was executed without a new connection (connects %d -> %d)", c0, c)
	}
	ch := r.sim.Relays[0].Changes()
	if len(ch) == 0 || ch[len(ch)-1].Closed || ch[len(ch)-1].Time.Before(sent) {
		t.Fatalf("relay changes %+v: want an opening after %v", ch, sent)
	}
	t.Logf("command sent while asleep, executed %v later on the next wake (connections %d -> %d)", ch[len(ch)-1].Time.Sub(sent).Round(time.Millisecond), c0, r.a.Stats().Connects)

	// A graceful stop says offline (a clean DISCONNECT fires no will).
	r.stop(t)
	waitFor(t, "status offline", 10*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.statuses) > 0 && s.statuses[len(s.statuses)-1].State == telemetry.StatusOffline
	})
	s.mu.Lock()
	st := s.statuses
	s.mu.Unlock()
	if st[0].State != telemetry.StatusOnline || st[0].Firmware == "" {
		t.Fatalf("statuses %+v: want online (with firmware) ... offline", st)
	}
}

// stallProxy forwards TCP to target until stalled; from then on it stops
// reading from the agent (and accepts new connections without reading them).
type stallProxy struct {
	l       net.Listener
	target  string
	stalled atomic.Bool
	stall   chan struct{}
	once    sync.Once
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{l: l, target: target, stall: make(chan struct{})}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return p
}

func (p *stallProxy) Stall() { p.once.Do(func() { p.stalled.Store(true); close(p.stall) }) }

func (p *stallProxy) serve(c net.Conn) {
	if p.stalled.Load() {
		<-make(chan struct{}) // accept, never read
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	go func() { io.Copy(c, up); c.Close() }()
	buf := make([]byte, 4096)
	for !p.stalled.Load() {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := up.Write(buf[:n]); werr != nil {
				return
			}
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			up.Close()
			return
		}
	}
	<-make(chan struct{}) // stalled: stop reading for good
}

// TestTripDuringNetworkStall blocks the agent's publish in a stalled TCP
// connection and overloads the circuit: the relay must trip anyway, while
// the publish is still waiting for its PUBACK. The trip latency against
// the virtual meter is logged (not asserted).
func TestTripDuringNetworkStall(t *testing.T) {
	e := startEmbedded(t)
	p := newStallProxy(t, e.addr)
	r := startAgent(t, "--sim", "--sim-schedule", "0s:laptop", "--broker", "mqtt://"+p.l.Addr().String(), "--device", "pi1",
		"--wake", "1s", "--heartbeat", "1", "--always-on", "--outbox", t.TempDir(), "--publish-timeout", "2m",
		"--max-power", "150")
	waitFor(t, "3 readings acknowledged", 30*time.Second, func() bool { return r.a.Stats().Published >= 3 })
	p.Stall()
	waitFor(t, "a publish blocked in the stalled connection", 30*time.Second, func() bool {
		st := r.a.Stats()
		return st.PublishInFlight && time.Since(st.LastPublishStarted) > 500*time.Millisecond
	})
	before := r.a.Stats()
	on := time.Now()
	r.sim.Circuits[0].Switch("3d_printer", true, on) // heat-up: about 260 W
	waitFor(t, "the relay trip", 30*time.Second, func() bool {
		for _, c := range r.sim.Relays[0].Changes() {
			if !c.Closed {
				return true
			}
		}
		return false
	})
	// The trip is counted right after the relay switched (and its state
	// was saved).
	waitFor(t, "the trip to be counted", 10*time.Second, func() bool { return r.a.Stats().Trips >= 1 })
	after := r.a.Stats()
	var trip time.Time
	for _, c := range r.sim.Relays[0].Changes() {
		if !c.Closed {
			trip = c.Time
			break
		}
	}
	if !after.PublishInFlight || after.Messages != before.Messages || !after.LastPublishStarted.Equal(before.LastPublishStarted) {
		t.Fatalf("the publish did not stay blocked during the trip: before %+v after %+v", before, after)
	}
	if after.Trips != 1 {
		t.Fatalf("trips = %d", after.Trips)
	}
	t.Logf("relay trip latency (load on -> relay open) with the publish blocked for %v: %v",
		trip.Sub(before.LastPublishStarted).Round(time.Millisecond), trip.Sub(on).Round(time.Millisecond))
}

// TestFootprint builds the real binary, runs it with --sim for
// LOADWATCH_FOOTPRINT (default 30 s) against the embedded broker and
// reports its peak RSS and CPU time per meter read from /proc. Figures
// only, no assertion on them (docs/AGENT.md). Needs LOADWATCH_LONG:
//
//	LOADWATCH_LONG=1 go test ./cmd/loadwatch-agent -run TestFootprint -v
func TestFootprint(t *testing.T) {
	if os.Getenv("LOADWATCH_LONG") == "" {
		t.Skip("set LOADWATCH_LONG=1 (builds the binary and runs it for 30 s)")
	}
	dur := 30 * time.Second
	if s := os.Getenv("LOADWATCH_FOOTPRINT"); s != "" {
		var err error
		if dur, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	e := startEmbedded(t)
	bin := filepath.Join(t.TempDir(), "loadwatch-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var stderr strings.Builder
	cmd := exec.Command(bin, "run", "--sim", "--broker", e.url(), "--device", "pi1", "--outbox", t.TempDir(),
		"--wake", "1s", "--max-power", "2000", "--retry-delay", "1s")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(dur)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent: %v\n%s", err, stderr.String())
	}
	var hwm, rss string
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rss = strings.TrimSpace(v)
		}
	}
	// fields 14 and 15 of /proc/pid/stat (after the command name) are
	// utime and stime in clock ticks (100 Hz on Linux).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	cpu := time.Duration(ut+st) * 10 * time.Millisecond
	reads := 0
	if i := strings.Index(stderr.String(), "Reads:"); i >= 0 {
		fmt.Sscanf(stderr.String()[i:], "Reads:%d", &reads)
	}
	if reads == 0 {
		t.Fatalf("no read count in the agent's log:\n%s", stderr.String())
	}
	fi, _ := os.Stat(bin)
	t.Logf("binary %.1f MB; after %v: VmRSS %s, VmHWM %s; CPU %v for %d reads = %v per read (virtual meter and circuit simulation included)",
		float64(fi.Size())/1e6, dur, rss, hwm, cpu, reads, cpu/time.Duration(reads))
}
