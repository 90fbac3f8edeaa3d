package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/dutycycle"
	"loadwatch/internal/loadsim"
	"loadwatch/internal/outbox"
	"loadwatch/internal/power"
	"loadwatch/internal/pzem/pzemtest"
	"loadwatch/internal/safety"
	"loadwatch/internal/telemetry"
)

// simMeter is a Sensor over a virtual meter (its physics: refresh,
// averaging lag, quantisation) measuring a simulated circuit, read without
// a bus. It records every read.
type simMeter struct {
	mu    sync.Mutex
	circ  *loadsim.Circuit
	meter *pzemtest.Meter
	reads []power.Reading
	fail  bool
	reset int
}

func newSimMeter(t testing.TB, sched string) *simMeter {
	t.Helper()
	s := loadsim.ReferenceSchedule()
	if sched != "reference" {
		var err error
		if s, err = loadsim.ParseSchedule(sched); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	circ := loadsim.NewCircuit(loadsim.Config{Seed: 1, Start: start, Schedule: s})
	m, err := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: 1, Source: circ}, start)
	if err != nil {
		t.Fatal(err)
	}
	return &simMeter{circ: circ, meter: m}
}

func (s *simMeter) Read(_ context.Context, addr uint8) (power.Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return power.Reading{}, errors.New("no reply")
	}
	now := time.Now()
	m, ok := s.meter.Measurements(now)
	if !ok {
		return power.Reading{}, errors.New("meter unpowered")
	}
	r := m.Reading(now)
	s.reads = append(s.reads, r)
	return r, nil
}

func (s *simMeter) ResetEnergy(context.Context, uint8) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset++
	s.meter.SetEnergy(0)
	return nil
}

func (s *simMeter) allReads() []power.Reading {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]power.Reading(nil), s.reads...)
}

// fakeRelay records its switchings and drives the circuit like --sim.
type fakeRelay struct {
	mu     sync.Mutex
	circ   *loadsim.Circuit
	closed []bool
	at     []time.Time
}

func (r *fakeRelay) Set(_ context.Context, closed bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed, r.at = append(r.closed, closed), append(r.at, time.Now())
	if r.circ != nil {
		r.circ.SetRelay(closed, time.Now())
	}
	return nil
}

func (r *fakeRelay) changes() ([]bool, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.closed...), append([]time.Time(nil), r.at...)
}

// broker is an in-memory Dialer: it records what was published and answers
// each telemetry publish with reply (nil: 0).
type fakeBroker struct {
	mu        sync.Mutex
	msgs      []published
	dials     int
	onMessage func(topic string, payload []byte)
	reply     func(topic string, payload []byte) (byte, error)
	down      bool
	open      bool
	will      []byte // the last will of the last dial that had one
}

type published struct {
	topic   string
	payload []byte
	at      time.Time
}

type fakeSession struct {
	b    *fakeBroker
	done chan struct{}
	once sync.Once
}

func (b *fakeBroker) Dial(ctx context.Context, o DialOptions) (Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return nil, errors.New("connection refused")
	}
	b.dials++
	b.open = true
	b.onMessage = o.OnMessage
	if o.WillPayload != nil {
		b.will = o.WillPayload
	}
	return &fakeSession{b: b, done: make(chan struct{})}, nil
}

func (s *fakeSession) Publish(ctx context.Context, topic string, payload []byte, retain bool) (byte, error) {
	s.b.mu.Lock()
	reply := s.b.reply
	s.b.mu.Unlock()
	var code byte
	if reply != nil {
		var err error
		if code, err = reply(topic, payload); err != nil {
			return 0, err
		}
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	default:
	}
	if code == 0 {
		s.b.mu.Lock()
		s.b.msgs = append(s.b.msgs, published{topic, append([]byte(nil), payload...), time.Now()})
		s.b.mu.Unlock()
	}
	return code, nil
}

func (s *fakeSession) Close(context.Context) error {
	s.once.Do(func() {
		close(s.done)
		s.b.mu.Lock()
		s.b.open = false
		s.b.mu.Unlock()
	})
	return nil
}

func (s *fakeSession) Done() <-chan struct{} { return s.done }

// send delivers a message from the broker to the agent (as if queued in
// its session) when it is connected.
func (b *fakeBroker) send(topic string, payload []byte) bool {
	b.mu.Lock()
	f, open := b.onMessage, b.open
	b.mu.Unlock()
	if f == nil || !open {
		return false
	}
	f(topic, payload)
	return true
}

func (b *fakeBroker) telemetry(t testing.TB) []telemetry.Message {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []telemetry.Message
	for _, m := range b.msgs {
		if _, ch, _ := telemetry.ParseTopic(m.topic); ch != telemetry.ChannelTelemetry {
			continue
		}
		msg, err := telemetry.DecodeTelemetry(m.payload, time.Time{}, telemetry.Limits{})
		if err != nil {
			t.Fatalf("agent sent an invalid telemetry message: %v\n%s", err, m.payload)
		}
		out = append(out, msg)
	}
	return out
}

func (b *fakeBroker) on(ch telemetry.Channel) []published {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []published
	for _, m := range b.msgs {
		if _, c, _ := telemetry.ParseTopic(m.topic); c == ch {
			out = append(out, m)
		}
	}
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testConfig(t testing.TB, s Sensor, b Dialer, meters ...Meter) Config {
	if len(meters) == 0 {
		meters = []Meter{{Addr: 1}}
	}
	return Config{ID: "pi1", Meters: meters, Sensor: s, Dialer: b, OutboxDir: t.TempDir(),
		Outbox: outbox.Options{Sync: outbox.SyncManual}, Logger: quiet(), Firmware: "test",
		ClockSynced: func(time.Time) bool { return true }}
}

// run runs the agent for d of (fake) time and stops it.
func run(t testing.TB, a *Agent, d time.Duration, during ...func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for _, f := range during {
		f()
	}
	time.Sleep(d)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func seqs(msgs []telemetry.Message) []uint64 {
	var out []uint64
	for _, m := range msgs {
		for _, r := range m.Readings {
			out = append(out, r.Seq)
		}
	}
	return out
}

func TestReportsCarryContract(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newSimMeter(t, "0s:laptop; 30s:+solder; repeat=1m")
		b := &fakeBroker{}
		a, err := New(testConfig(t, m, b))
		if err != nil {
			t.Fatal(err)
		}
		run(t, a, 10*time.Minute)
		msgs := b.telemetry(t)
		if len(msgs) < 10 {
			t.Fatalf("only %d messages in 10 minutes of a changing load", len(msgs))
		}
		var prev uint64
		for _, msg := range msgs {
			for _, r := range msg.Readings {
				if r.Seq != prev+1 {
					t.Fatalf("seq %d after %d", r.Seq, prev)
				}
				prev = r.Seq
				if !r.HasEnergyTotal || r.Features == nil || r.Features.V != FeaturesVersion || len(r.Features.Values) < 10 {
					t.Fatalf("reading without ledger total or features: %+v", r)
				}
				if _, bad := r.Features.Values["v"]; bad {
					t.Fatal(`features carry the reserved name "v"`)
				}
				if !r.Reading.Is(power.FieldPower | power.FieldVoltage | power.FieldEnergy) {
					t.Fatalf("reading lacks meter fields: %+v", r.Reading)
				}
			}
		}
		if st := b.on(telemetry.ChannelStatus); len(st) == 0 {
			t.Fatal("no status online published")
		}
		if s := a.Stats(); s.Reads <= s.Reports {
			t.Fatalf("every read was reported (%d reads, %d reports): no duty cycle", s.Reads, s.Reports)
		}
	})
}

// TestTripNeverWaitsForNetwork blocks every publish (a stalled broker) and
// overloads the circuit: the relay opens anyway, while a publish waits.
func TestTripNeverWaitsForNetwork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newSimMeter(t, "0s:laptop")
		release := make(chan struct{})
		var inFlight sync.WaitGroup
		b := &fakeBroker{}
		b.reply = func(topic string, _ []byte) (byte, error) {
			inFlight.Add(1)
			defer inFlight.Done()
			<-release
			return 0, nil
		}
		rel := &fakeRelay{circ: m.circ}
		cfg := testConfig(t, m, b, Meter{Addr: 1, Relay: rel})
		cfg.Safety = safety.Config{MaxPower: 150}
		cfg.PublishTimeout = time.Hour
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		time.Sleep(30 * time.Second)
		if !a.Stats().PublishInFlight {
			t.Fatal("the first publish should be blocked")
		}
		on := time.Now()
		m.circ.Switch("3d_printer", true, on)
		time.Sleep(20 * time.Second)
		closed, at := rel.changes()
		if len(closed) != 2 || !closed[0] || closed[1] {
			t.Fatalf("relay sets %v: want closed at start, then open", closed)
		}
		if !a.Stats().PublishInFlight || len(b.telemetry(t)) != 0 {
			t.Fatal("the publish was not blocked during the trip")
		}
		t.Logf("trip latency against the virtual meter (1 s safety reads, hold 0): %v", at[1].Sub(on))
		if ob, _ := a.OutboxStats("pi1"); ob.Pending == 0 {
			t.Fatal("the trip's report is not waiting in the outbox")
		}
		close(release)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		inFlight.Wait()
	})
}

// TestRefusalsAndRetries: 0x97 is retried in order, a batch refused with
// 0x99 is resent one by one and only the bad reading is dead-lettered.
func TestRefusalsAndRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newSimMeter(t, "0s:laptop")
		b := &fakeBroker{}
		start := time.Now()
		b.reply = func(topic string, payload []byte) (byte, error) {
			if _, ch, _ := telemetry.ParseTopic(topic); ch != telemetry.ChannelTelemetry {
				return 0, nil
			}
			// quota exceeded for two spells: backlogs replay as batches
			if e := time.Since(start); e < 30*time.Second || e >= 60*time.Second && e < 90*time.Second {
				return 0x97, nil
			}
			msg, err := telemetry.DecodeTelemetry(payload, time.Time{}, telemetry.Limits{})
			if err != nil {
				return 0x99, nil
			}
			for _, r := range msg.Readings {
				if r.Seq == 15 {
					return 0x99, nil // the server refuses reading 3 for good
				}
			}
			return 0, nil
		}
		cfg := testConfig(t, m, b)
		cfg.Duty.Heartbeat = 1 // report every wake
		cfg.RetryDelay = 2 * time.Second
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		run(t, a, 2*time.Minute)
		got := seqs(b.telemetry(t))
		for i, s := range got {
			want := uint64(i + 1)
			if want >= 15 {
				want++
			}
			if s != want {
				t.Fatalf("delivered seqs %v: want 1..14, 16, ... in order", got)
			}
		}
		st := a.Stats()
		if st.DeadLettered != 1 || len(got) < 10 {
			t.Fatalf("dead-lettered %d (want 1), delivered %d", st.DeadLettered, len(got))
		}
		batches := 0
		for _, msg := range b.telemetry(t) {
			if msg.Batch {
				batches++
			}
		}
		if batches == 0 {
			t.Fatal("the backlog was not sent in batch form")
		}
		if ob, _ := a.OutboxStats("pi1"); ob.DeadLettered != 1 {
			t.Fatalf("outbox dead-lettered %d", ob.DeadLettered)
		}
	})
}

func cmd(id string, kind telemetry.CommandKind, args string) []byte {
	c := telemetry.Command{ID: id, Kind: kind}
	if args != "" {
		c.Args = []byte(args)
	}
	return c.AppendJSON(nil)
}

func acks(t testing.TB, b *fakeBroker) map[string]telemetry.CommandAck {
	out := map[string]telemetry.CommandAck{}
	for _, p := range b.on(telemetry.ChannelCmdAck) {
		k, err := telemetry.DecodeCommandAck(p.payload, telemetry.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		out[k.ID] = k
	}
	return out
}

type fakeOTA struct{ calls int }

func (o *fakeOTA) CheckNow(context.Context) (string, error) { o.calls++; return "up to date", nil }

func TestCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newSimMeter(t, "0s:laptop")
		b := &fakeBroker{}
		rel := &fakeRelay{circ: m.circ}
		cfg := testConfig(t, m, b, Meter{Addr: 1, Relay: rel})
		cfg.Duty.AlwaysOn = true
		ota := &fakeOTA{}
		cfg.OTA = ota
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		topic := telemetry.Topic("pi1", telemetry.ChannelCmd)
		steps := []struct {
			payload []byte
			id      string
			ok      bool
			state   string
		}{
			{cmd("a1", telemetry.CmdRelayOff, ""), "a1", true, "open"},
			{cmd("a2", telemetry.CmdRelayOn, ""), "a2", true, "closed"},
			{cmd("a3", telemetry.CmdSetThresholds, `{"max_power_w":150,"hold":"2s"}`), "a3", true, "closed"},
			{cmd("a4", telemetry.CmdSetIntervals, `{"wake":"1s","heartbeat":5}`), "a4", true, "closed"},
			{cmd("a5", telemetry.CmdSetIntervals, `{"wake":"1ms"}`), "a5", false, ""},
			{cmd("a6", telemetry.CmdSetAlarm, `{"watts":100}`), "a6", false, "closed"}, // the sensor cannot
			{cmd("a7", telemetry.CmdResetEnergy, ""), "a7", true, "closed"},
			{cmd("a8", telemetry.CmdCheckOTA, ""), "a8", true, "up to date"},
		}
		run(t, a, 3*time.Minute, func() {
			time.Sleep(10 * time.Second)
			for _, s := range steps {
				if !b.send(topic, s.payload) {
					t.Fatal("agent not connected")
				}
				time.Sleep(2 * time.Second)
			}
			// overload: the new limit trips; a reset closes the relay (the
			// load was removed with it) and the limit trips it again.
			m.circ.Switch("3d_printer", true, time.Now())
			time.Sleep(20 * time.Second)
			b.send(topic, cmd("b1", telemetry.CmdRelayReset, ""))
			time.Sleep(2 * time.Second)
			b.send(telemetry.Topic("pi1.7", telemetry.ChannelCmd), cmd("b2", telemetry.CmdRelayOff, ""))
			time.Sleep(2 * time.Second)
		})
		got := acks(t, b)
		for _, s := range steps {
			k, ok := got[s.id]
			if !ok || k.OK != s.ok || k.State != s.state {
				t.Errorf("ack %s = %+v (present %v), want ok=%v state=%q", s.id, k, ok, s.ok, s.state)
			}
		}
		if k := got["b1"]; !k.OK {
			t.Errorf("reset after a trip: ack %+v", k)
		}
		if k := got["b2"]; k.OK {
			t.Errorf("command for an unknown meter acknowledged ok: %+v", k)
		}
		if m.reset != 1 || ota.calls != 1 {
			t.Errorf("energy resets %d, OTA checks %d", m.reset, ota.calls)
		}
		closed, _ := rel.changes()
		if fmt.Sprint(closed) != "[true false true false true false]" {
			t.Errorf("relay sets %v, want closed at start, off, on, trip, reset, trip", closed)
		}
		var kinds []telemetry.EventKind
		for _, p := range b.on(telemetry.ChannelEvent) {
			e, err := telemetry.DecodeEvent(p.payload, time.Time{}, telemetry.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, e.Kind)
		}
		found := false
		for _, k := range kinds {
			found = found || k == telemetry.EventRelayTrip
		}
		if !found {
			t.Errorf("no relay_trip event among %v", kinds)
		}
	})
}

// TestRestartKeepsSeqAndLedger stops an agent and starts another on the
// same outbox: seq continues, the epoch and the energy total carry over.
func TestRestartKeepsSeqAndLedger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newSimMeter(t, "0s:solder")
		b := &fakeBroker{}
		cfg := testConfig(t, m, b)
		cfg.Duty.Heartbeat = 2
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		run(t, a, 5*time.Minute)
		first := b.telemetry(t)
		total1, _ := a.LedgerTotal("pi1")
		m.ResetEnergy(context.Background(), 1) // a counter reset while the agent is down
		a2, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		run(t, a2, 5*time.Minute)
		all := b.telemetry(t)
		s := seqs(all)
		for i := range s {
			if s[i] != uint64(i+1) {
				t.Fatalf("seqs across the restart: %v", s)
			}
		}
		if all[len(all)-1].Epoch != first[0].Epoch {
			t.Fatal("a clean restart started a new epoch")
		}
		last := all[len(all)-1].Readings
		lr := last[len(last)-1]
		if lr.EnergyTotal < total1 || lr.EnergyTotal <= lr.Reading.Energy {
			t.Fatalf("ledger total %v after a counter reset (before restart %v, counter %v)", lr.EnergyTotal, total1, lr.Reading.Energy)
		}
	})
}

func TestNewRefusesBadConfig(t *testing.T) {
	m := &simMeter{}
	for name, cfg := range map[string]Config{
		"bad id":     {ID: "a/b", Meters: []Meter{{Addr: 1}}, Sensor: m, OutboxDir: t.TempDir()},
		"no meters":  {ID: "a", Sensor: m, OutboxDir: t.TempDir()},
		"addr 0":     {ID: "a", Meters: []Meter{{Addr: 0}}, Sensor: m, OutboxDir: t.TempDir()},
		"addr twice": {ID: "a", Meters: []Meter{{Addr: 2}, {Addr: 2}}, Sensor: m, OutboxDir: t.TempDir()},
		"no outbox":  {ID: "a", Meters: []Meter{{Addr: 1}}, Sensor: m},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
}

func TestSeveralMetersReportAsSubDevices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newSimMeter(t, "0s:laptop")
		b := &fakeBroker{}
		a, err := New(testConfig(t, m, b, Meter{Addr: 1}, Meter{Addr: 2}))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(a.Devices()) != "[pi1.1 pi1.2]" {
			t.Fatalf("devices %v", a.Devices())
		}
		run(t, a, time.Minute)
		seen := map[string]bool{}
		for _, p := range b.on(telemetry.ChannelTelemetry) {
			d, _, _ := telemetry.ParseTopic(p.topic)
			seen[d] = true
		}
		if !seen["pi1.1"] || !seen["pi1.2"] || len(seen) != 2 {
			t.Fatalf("telemetry devices %v", seen)
		}
	})
}

// TestRelayOffSurvivesRestart: a relay switched off by command stays off
// when the agent restarts, until relay_on.
func TestRelayOffSurvivesRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newSimMeter(t, "0s:laptop")
		b := &fakeBroker{}
		rel := &fakeRelay{circ: m.circ}
		cfg := testConfig(t, m, b, Meter{Addr: 1, Relay: rel})
		cfg.Duty.AlwaysOn = true
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		topic := telemetry.Topic("pi1", telemetry.ChannelCmd)
		run(t, a, time.Minute, func() {
			time.Sleep(10 * time.Second)
			b.send(topic, cmd("off", telemetry.CmdRelayOff, ""))
			time.Sleep(5 * time.Second)
		})
		a2, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		run(t, a2, time.Minute, func() {
			time.Sleep(10 * time.Second)
			if closed, _ := rel.changes(); closed[len(closed)-1] {
				t.Error("the restarted agent closed a relay that was switched off")
			}
			b.send(topic, cmd("on", telemetry.CmdRelayOn, ""))
			time.Sleep(5 * time.Second)
		})
		closed, _ := rel.changes()
		if fmt.Sprint(closed) != "[true false false true]" {
			t.Fatalf("relay sets %v: want start closed, off, restart keeps off, on", closed)
		}
		if k := acks(t, b)["on"]; !k.OK || k.State != "closed" {
			t.Fatalf("relay_on after the restart: %+v", k)
		}
	})
}

// heartbeatOTA records when the agent asked for a heartbeat check; each
// check takes busy (fake time).
type heartbeatOTA struct {
	fakeOTA
	busy time.Duration
	mu   sync.Mutex
	at   []time.Time
}

func (o *heartbeatOTA) Heartbeat(ctx context.Context) {
	o.mu.Lock()
	o.at = append(o.at, time.Now())
	o.mu.Unlock()
	select {
	case <-time.After(o.busy):
	case <-ctx.Done():
	}
}

// TestOTAHeartbeat: an OTA with the heartbeat ability is asked at the
// first report and then once per heartbeat period (10 wakes of 1 s), also
// while a changing load reports changes rather than heartbeats; a check
// still running when the next period ends makes the agent skip that one.
func TestOTAHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		busy       time.Duration
		minGap     time.Duration
		minN, maxN int
	}{
		{busy: 0, minGap: 10 * time.Second, minN: 5, maxN: 7},
		{busy: 25 * time.Second, minGap: 25 * time.Second, minN: 3, maxN: 3},
	} {
		synctest.Test(t, func(t *testing.T) {
			m := newSimMeter(t, "0s:laptop; 20s:+solder; 40s:+printer")
			cfg := testConfig(t, m, &fakeBroker{})
			cfg.Duty = dutycycle.Config{Wake: time.Second, Heartbeat: 10}
			o := &heartbeatOTA{busy: tc.busy}
			cfg.OTA = o
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			run(t, a, 65*time.Second)
			synctest.Wait()
			o.mu.Lock()
			defer o.mu.Unlock()
			if len(o.at) < tc.minN || len(o.at) > tc.maxN {
				t.Fatalf("busy %v: %d heartbeat checks at %v, want %d..%d", tc.busy, len(o.at), o.at, tc.minN, tc.maxN)
			}
			if first := o.at[0].Sub(start); first > 2*time.Second {
				t.Errorf("first check %v after the start, want at the first report", first)
			}
			for i := 1; i < len(o.at); i++ {
				if gap := o.at[i].Sub(o.at[i-1]); gap < tc.minGap {
					t.Errorf("busy %v: checks %v apart, want at least %v", tc.busy, gap, tc.minGap)
				}
			}
			if st := a.Stats(); st.Reports == 0 {
				t.Fatal("no reports")
			}
		})
	}
}
