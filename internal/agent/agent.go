// Package agent is the loadwatch edge agent's core: a sampling loop that
// reads every meter on the bus, protects each circuit with its relay, keeps
// the energy ledger, the classifier features and the edge anomaly detector
// over every read, and decides when to report (the duty cycle); and a
// network side that publishes the reports from the disk outbox over MQTT.
//
// The two sides never wait on each other. The sampling loop runs on its own
// goroutine locked to an OS thread; a trip switches the relay before
// anything is written or sent. A report is appended to the device's outbox
// on disk (which assigns its seq) and the network side is woken through a
// one-slot channel; when the network is slow or gone the reports pile up on
// disk, bounded by the outbox's size, never in memory. The network side
// removes a reading from the outbox only when its PUBACK arrives.
//
// The agent declares what it uses (Sensor, Relay, Dialer, Session, OTA):
// it never imports the meter driver, the MQTT client or the GPIO code;
// cmd/loadwatch-agent wires them. See docs/AGENT.md.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/anomaly"
	"loadwatch/internal/dutycycle"
	"loadwatch/internal/features"
	"loadwatch/internal/ledger"
	"loadwatch/internal/outbox"
	"loadwatch/internal/power"
	"loadwatch/internal/safety"
	"loadwatch/internal/telemetry"
)

// Sensor reads one meter on the bus (one PZEM-004T exchange).
type Sensor interface {
	Read(ctx context.Context, addr uint8) (power.Reading, error)
}

// EnergyResetter is the optional ability to reset a meter's energy counter
// (command reset_energy).
type EnergyResetter interface {
	ResetEnergy(ctx context.Context, addr uint8) error
}

// AlarmSetter is the optional ability to set a meter's power alarm
// threshold (command set_alarm).
type AlarmSetter interface {
	SetAlarmThreshold(ctx context.Context, addr uint8, w power.Watts) error
}

// Relay switches the load of one circuit: closed means powered.
type Relay interface {
	Set(ctx context.Context, closed bool) error
}

// Session is one connection to the broker.
type Session interface {
	// Publish sends at QoS 1 and waits for the PUBACK; reason is its
	// reason code (>= 0x80: refused, with a nil error). An error means the
	// message may not have arrived.
	Publish(ctx context.Context, topic string, payload []byte, retain bool) (reason byte, err error)
	// Close disconnects cleanly (no last will).
	Close(ctx context.Context) error
	// Done is closed when the connection has ended.
	Done() <-chan struct{}
}

// DialOptions is what the agent needs from a connection.
type DialOptions struct {
	Subscribe   []string                           // topic filters, QoS 1
	WillTopic   string                             // last will, retained
	WillPayload []byte                             //
	OnMessage   func(topic string, payload []byte) // inbound messages; must not block
}

// Dialer opens a Session (MQTT v5, persistent session, credentials and TLS
// are the implementation's business).
type Dialer interface {
	Dial(ctx context.Context, o DialOptions) (Session, error)
}

// OTA is the over-the-air updater's "check now" (command check_ota). It
// returns a short description of the outcome.
type OTA interface {
	CheckNow(ctx context.Context) (string, error)
}

// OTAHeartbeat is the optional ability of an OTA to check for an update on
// the heartbeat. The agent calls Heartbeat right after a report (the radio
// is on anyway) at its first report and then at most once per heartbeat
// period (Heartbeat wakes x Wake of the reporting meter's duty cycle), on
// a goroutine of its own and one call at a time: a period that ends while
// a call still runs is skipped. A busy load reports changes instead of
// heartbeats, so this counts time, not heartbeat reports.
type OTAHeartbeat interface {
	Heartbeat(ctx context.Context)
}

// Meter is one meter on the bus and its relay (nil: none).
type Meter struct {
	Addr  uint8
	Relay Relay
}

// Config configures an Agent. Zero fields mean the defaults in brackets.
type Config struct {
	ID     string  // agent id = MQTT client id and username
	Meters []Meter // at least one; one meter reports as device ID, several as ID.<addr>
	Sensor Sensor
	Dialer Dialer // nil: never connect (reports stay in the outbox)
	OTA    OTA    // nil: check_ota is refused

	OutboxDir string         // one outbox per device and stream below it
	Outbox    outbox.Options // size bound and sync policy

	Duty    dutycycle.Config
	Safety  safety.Config
	Anomaly anomaly.Config
	// SafetyPeriod is how often a meter with a relay and limits is read
	// for the safety check alone, between duty-cycle wakes [1 s: the
	// meter's refresh]; negative: only at the duty-cycle reads.
	SafetyPeriod time.Duration
	FeatureSet   string // [features.SetLW1]; "none" sends no features
	// WakeOnLoadEvents makes load_on and load_off events force a full
	// wake and an "event" report of their own, like the other anomalies
	// [false: they are sent with the change report the duty cycle makes].
	WakeOnLoadEvents bool

	Firmware string // sent with status online

	// Linger is how long a duty-cycled agent keeps the connection after
	// its outbox is empty, for commands queued while it slept [1 s].
	Linger time.Duration
	// PublishTimeout bounds one publish (up to the PUBACK) [10 s].
	PublishTimeout time.Duration
	// RetryDelay is the wait after a failed connection or publish [5 s].
	RetryDelay time.Duration
	// Batch is the most readings sent in one message when replaying a
	// backlog [32].
	Batch int

	// ClockSynced tells whether the clock is synchronised at t
	// [a time before the build date is not; see ClockCheck].
	ClockSynced func(t time.Time) bool
	Now         func() time.Time // [time.Now]
	Logger      *slog.Logger     // [slog.Default()]
}

// Stats are the agent's counters.
type Stats struct {
	Reads, ReadErrors  uint64
	Reports            uint64 // readings appended to an outbox
	Published          uint64 // readings acknowledged by the broker
	Messages           uint64 // telemetry messages acknowledged (a batch is one)
	DeadLettered       uint64
	Events             uint64
	Trips              uint64
	Commands           uint64
	Connects           uint64
	ConnectErrors      uint64
	PublishErrors      uint64
	Connected          bool      // a broker connection is open
	PublishInFlight    bool      // a publish is waiting for its PUBACK
	LastPublishStarted time.Time // when the current or last publish began
}

type stream struct {
	ob    *outbox.Outbox
	topic string
	batch bool // telemetry: may be sent in the batch form
}

type device struct {
	id     string
	addr   uint8
	relay  Relay
	safety *safety.Machine
	duty   *dutycycle.Machine
	anom   *anomaly.Detector
	led    *ledger.Ledger
	feat   *features.Extractor
	fbuf   []float32
	fnames []string
	tele   stream
	events stream

	// relayState is the relay's safety.State for the status: written by
	// the sampling loop (noteRelay), read by the network side. Unused
	// without a relay.
	relayState atomic.Int32

	nextSafety time.Time
	retryAt    time.Time // after a failed read, no duty read before this
	last       power.Reading
	clockOK    bool
	clockKnown bool
}

// command is an inbound command for the sampling loop.
type command struct {
	dev *device
	cmd telemetry.Command
}

type ack struct {
	topic   string
	payload []byte
}

// Agent is a running edge agent. Create it with New and run it with Run.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	devs    []*device
	byID    map[string]*device
	streams []stream

	kick chan struct{} // one slot: the network side has work
	cmds chan command  // bounded: inbound commands for the sampling loop
	acks chan ack      // bounded: command acks for the network side

	mu    sync.Mutex
	stats Stats

	reads atomic.Uint64

	otaLast time.Time   // sampling loop only: start of the last heartbeat check
	otaBusy atomic.Bool // a heartbeat check is running

	link      atomic.Pointer[map[uint8]telemetry.LinkCounters] // latest LinkReporter snapshot
	linkLast  time.Time                                        // sampling loop only: last status refresh request
	statusDue atomic.Bool                                      // the network side should publish status again
}

// ErrConfig wraps configuration errors.
var ErrConfig = errors.New("agent: bad configuration")

// New opens the outboxes (recovering from a crash) and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if err := telemetry.ValidateAgentID(cfg.ID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(cfg.Meters) == 0 || cfg.Sensor == nil || cfg.OutboxDir == "" {
		return nil, fmt.Errorf("%w: need meters, a sensor and an outbox directory", ErrConfig)
	}
	if cfg.SafetyPeriod == 0 {
		cfg.SafetyPeriod = time.Second
	}
	if cfg.Linger <= 0 {
		cfg.Linger = time.Second
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 5 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 32
	}
	if cfg.Batch > 256 {
		cfg.Batch = 256
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ClockSynced == nil {
		cfg.ClockSynced = ClockCheck(time.Time{})
	}
	if cfg.FeatureSet == "" {
		cfg.FeatureSet = features.SetLW1
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger, byID: map[string]*device{},
		kick: make(chan struct{}, 1), cmds: make(chan command, 16), acks: make(chan ack, 64),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	single := len(cfg.Meters) == 1
	start := cfg.Now()
	for _, m := range cfg.Meters {
		if m.Addr < 1 || m.Addr > 247 {
			a.closeAll()
			return nil, fmt.Errorf("%w: meter address %d not in 1..247", ErrConfig, m.Addr)
		}
		id := telemetry.DeviceID(cfg.ID, m.Addr, single)
		if a.byID[id] != nil {
			a.closeAll()
			return nil, fmt.Errorf("%w: meter address %d twice", ErrConfig, m.Addr)
		}
		d, err := a.newDevice(id, m, start)
		if err != nil {
			a.closeAll()
			return nil, err
		}
		a.devs = append(a.devs, d)
		a.byID[id] = d
		a.streams = append(a.streams, d.events, d.tele)
	}
	return a, nil
}

func (a *Agent) newDevice(id string, m Meter, start time.Time) (*device, error) {
	d := &device{id: id, addr: m.Addr, relay: m.Relay,
		safety: safety.New(a.cfg.Safety), duty: dutycycle.New(a.cfg.Duty, start), anom: anomaly.New(a.cfg.Anomaly)}
	if a.cfg.FeatureSet != "none" {
		f, err := features.New(a.cfg.FeatureSet, features.Config{})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		names, _ := features.Names(a.cfg.FeatureSet)
		d.feat, d.fnames, d.fbuf = f, names, make([]float32, f.NumFeatures())
	}
	tele, err := outbox.Open(filepath.Join(a.cfg.OutboxDir, id, "telemetry"), a.cfg.Outbox)
	if err != nil {
		return nil, fmt.Errorf("agent: device %s: %w", id, err)
	}
	d.tele = stream{ob: tele, topic: telemetry.Topic(id, telemetry.ChannelTelemetry), batch: true}
	ev, err := outbox.Open(filepath.Join(a.cfg.OutboxDir, id, "events"), a.cfg.Outbox)
	if err != nil {
		tele.Close()
		return nil, fmt.Errorf("agent: device %s: %w", id, err)
	}
	d.events = stream{ob: ev, topic: telemetry.Topic(id, telemetry.ChannelEvent)}
	var st deviceState
	if u := tele.UserState(); len(u) > 0 {
		if err := json.Unmarshal(u, &st); err != nil {
			a.log.Warn("agent: saved device state unreadable; starting a new energy total", "device", id, "err", err)
			st = deviceState{}
		}
	}
	d.led = ledger.New(ledger.Config{}, st.Ledger)
	if st.RelayOpen && d.relay != nil {
		d.safety.Open(start) // held open across the restart: relay_on closes it
	}
	d.relayState.Store(int32(d.safety.State()))
	return d, nil
}

// deviceState is what the agent keeps in a device's telemetry outbox,
// saved atomically with its seq and epoch: the energy ledger, and whether
// the relay was open (by command, trip or latch), so that a restart does
// not power a load that was switched off.
type deviceState struct {
	Ledger    ledger.State `json:"ledger"`
	RelayOpen bool         `json:"relay_open,omitempty"`
}

func (d *device) state() deviceState {
	return deviceState{Ledger: d.led.State(), RelayOpen: d.relay != nil && d.safety.State() != safety.Closed}
}

func (a *Agent) closeAll() error {
	var errs []error
	for _, d := range a.devs {
		if b, err := json.Marshal(d.state()); err == nil {
			errs = append(errs, d.tele.ob.SaveUserState(b))
		}
		errs = append(errs, d.tele.ob.Close(), d.events.ob.Close())
	}
	return errors.Join(errs...)
}

// Devices returns the device ids the agent reports as, in meter order.
func (a *Agent) Devices() []string {
	ids := make([]string, len(a.devs))
	for i, d := range a.devs {
		ids[i] = d.id
	}
	return ids
}

// Stats returns the counters.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.Reads = a.reads.Load()
	return s
}

// DutyCounts returns what a device's duty cycle did (for the energy
// model). It must not be called while Run is running.
func (a *Agent) DutyCounts(device string) (dutycycle.Counts, bool) {
	d := a.byID[device]
	if d == nil {
		return dutycycle.Counts{}, false
	}
	return d.duty.Counts(), true
}

// LedgerTotal returns a device's energy ledger total. It must not be
// called while Run is running.
func (a *Agent) LedgerTotal(device string) (power.WattHours, bool) {
	d := a.byID[device]
	if d == nil {
		return 0, false
	}
	return d.led.Total(), true
}

// OutboxStats returns the telemetry outbox counters of a device.
func (a *Agent) OutboxStats(device string) (outbox.Stats, bool) {
	d := a.byID[device]
	if d == nil {
		return outbox.Stats{}, false
	}
	return d.tele.ob.Stats(), true
}

func (a *Agent) count(f func(s *Stats)) {
	a.mu.Lock()
	f(&a.stats)
	a.mu.Unlock()
}

// Run runs the sampling loop and the network side until ctx is done, then
// disconnects, saves the ledgers and closes the outboxes (a clean
// shutdown: the next start keeps the epoch). An Agent runs once.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var sampErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer cancel()
		runtime.LockOSThread() // the sampling loop keeps its own thread
		defer runtime.UnlockOSThread()
		sampErr = a.sample(ctx)
	}()
	go func() {
		defer wg.Done()
		a.network(ctx)
	}()
	wg.Wait()
	err := a.closeAll()
	if sampErr != nil && !errors.Is(sampErr, context.Canceled) {
		return errors.Join(sampErr, err)
	}
	return err
}

// wake tells the network side there is work; it never blocks.
func (a *Agent) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// sample is the sampling loop.
func (a *Agent) sample(ctx context.Context) error {
	now := a.cfg.Now()
	for _, d := range a.devs {
		d.nextSafety = now
		// Bring each relay to the restored state (closed unless it was
		// held open before the restart).
		if d.relay != nil {
			closed := d.safety.State() == safety.Closed
			if err := d.relay.Set(ctx, closed); err != nil {
				a.log.Error("agent: relay switch failed", "device", d.id, "closed", closed, "err", err)
			}
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c := <-a.cmds:
			a.execute(ctx, c)
			continue
		case <-timer.C:
		}
		now = a.cfg.Now()
		for _, d := range a.devs {
			dueDuty := !now.Before(d.dutyNext())
			dueSafety := a.safetyReads(d) && !now.Before(d.nextSafety)
			if !dueDuty && !dueSafety {
				continue
			}
			a.readAndProcess(ctx, d, dueDuty)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		next := a.nextRead()
		timer.Reset(max(0, next.Sub(a.cfg.Now())))
	}
}

func (a *Agent) safetyReads(d *device) bool {
	c := d.safety.Config()
	return a.cfg.SafetyPeriod > 0 && d.relay != nil &&
		(c.MaxPower > 0 || c.MaxCurrent > 0 || c.MaxVoltage > 0 || c.MinVoltage > 0 || c.TripOnAlarm || d.safety.State() == safety.Tripped)
}

func (a *Agent) nextRead() time.Time {
	var next time.Time
	for i, d := range a.devs {
		t := d.dutyNext()
		if a.safetyReads(d) && d.nextSafety.Before(t) {
			t = d.nextSafety
		}
		if i == 0 || t.Before(next) {
			next = t
		}
	}
	return next
}

func (a *Agent) readAndProcess(ctx context.Context, d *device, dueDuty bool) {
	r, err := a.cfg.Sensor.Read(ctx, d.addr)
	now := a.cfg.Now()
	a.reads.Add(1)
	d.nextSafety = now.Add(a.cfg.SafetyPeriod)
	if err != nil {
		a.count(func(s *Stats) { s.ReadErrors++ })
		if ctx.Err() == nil {
			a.log.Warn("agent: meter read failed", "device", d.id, "err", err)
		}
		a.applySafety(ctx, d, d.safety.Tick(now), false)
		a.linkTick(d, now, false)
		if dueDuty {
			// Try again a little later; the duty cycle's slot stays due.
			d.retryAt = now.Add(min(d.duty.Config().Wake, time.Second))
		}
		return
	}
	r.Time = now
	a.process(ctx, d, r, dueDuty)
}

// process runs one reading through safety (first), the ledger, the
// features, the anomaly detector and the duty cycle.
func (a *Agent) process(ctx context.Context, d *device, r power.Reading, dueDuty bool) {
	// 1. Safety, before anything else: the relay switches now.
	forceEvent := a.applySafety(ctx, d, d.safety.Observe(r), true)

	// 2. Clock: say so once when it is (or becomes) unsynchronised.
	synced := a.cfg.ClockSynced(r.Time)
	if !synced && (!d.clockKnown || d.clockOK) {
		a.recordEvent(d, telemetry.Event{Kind: telemetry.EventClockUnset, Time: r.Time, Detail: "clock not synchronised; timestamps may be wrong"})
	}
	d.clockOK, d.clockKnown = synced, true

	// 3. Ledger over every read.
	total, hasTotal := d.led.Total(), false
	if r.Is(power.FieldEnergy) {
		t, jump, err := d.led.Observe(r.Energy)
		if err != nil {
			a.log.Warn("agent: energy counter refused", "device", d.id, "err", err)
		} else {
			total, hasTotal = t, true
			if jump == ledger.JumpReset || jump == ledger.JumpWrap {
				a.saveLedger(d)
			}
		}
	}

	// 4. Features over every read (also the quick checks never sent).
	if d.feat != nil {
		d.feat.Push(r, d.fbuf)
	}

	// 5. Edge anomalies.
	for _, ev := range d.anom.Observe(r) {
		a.recordEvent(d, telemetry.Event{Kind: telemetry.EventKind(ev.Kind), Time: ev.Time, Before: ev.Before, After: ev.After, Detail: ev.Detail})
		// A load switching on or off is a change of load: the duty cycle
		// reports it (after confirmation) and the event goes out with that
		// wake. Grid and voltage anomalies wake fully at once.
		if a.cfg.WakeOnLoadEvents || (ev.Kind != anomaly.LoadOn && ev.Kind != anomaly.LoadOff) {
			forceEvent = true
		}
	}
	if r.Is(power.FieldAlarm) && r.Alarm && !(d.last.Is(power.FieldAlarm) && d.last.Alarm) {
		a.recordEvent(d, telemetry.Event{Kind: telemetry.EventMeterAlarm, Time: r.Time, After: r})
		forceEvent = true
	}
	d.last = r

	// 6. Duty cycle: report or not.
	var dec dutycycle.Decision
	switch {
	case forceEvent:
		dec = d.duty.Event(r)
	case dueDuty:
		dec = d.duty.Observe(r)
	default:
		return
	}
	if dec.Action != dutycycle.Report {
		return
	}
	t := telemetry.Telemetry{ClockSynced: synced, Reading: r, EnergyTotal: total, HasEnergyTotal: hasTotal, State: telemetry.State(dec.Reason)}
	if d.feat != nil {
		vals := make(map[string]float64, len(d.fbuf))
		for i, v := range d.fbuf {
			if f := float64(v); !math.IsNaN(f) && !math.IsInf(f, 0) {
				vals[d.fnames[i]] = f
			}
		}
		t.Features = &telemetry.Features{V: FeaturesVersion, Values: vals}
	}
	_, err := d.tele.ob.AppendFunc(func(seq uint64, epoch string) []byte {
		t.Seq = seq
		m := telemetry.Message{Epoch: epoch, Readings: []telemetry.Telemetry{t}}
		return m.Marshal()
	})
	if err != nil {
		a.log.Error("agent: outbox append failed; reading lost", "device", d.id, "err", err)
		return
	}
	a.count(func(s *Stats) { s.Reports++ })
	a.saveLedger(d)
	a.linkTick(d, r.Time, true)
	a.wake()
	a.otaHeartbeat(ctx, d, r.Time)
}

// otaHeartbeat starts the OTA heartbeat check when one is due.
func (a *Agent) otaHeartbeat(ctx context.Context, d *device, now time.Time) {
	hb, ok := a.cfg.OTA.(OTAHeartbeat)
	if !ok {
		return
	}
	c := d.duty.Config()
	if !a.otaLast.IsZero() && now.Sub(a.otaLast) < time.Duration(c.Heartbeat)*c.Wake {
		return
	}
	if !a.otaBusy.CompareAndSwap(false, true) {
		return
	}
	a.otaLast = now
	go func() {
		defer a.otaBusy.Store(false)
		hb.Heartbeat(ctx)
	}()
}

// FeaturesVersion is the "v" of the features object: 1 is feature set lw1
// with NaN (unmeasured) values left out.
const FeaturesVersion = 1

func (a *Agent) saveLedger(d *device) {
	b, err := json.Marshal(d.state())
	if err == nil {
		err = d.tele.ob.SaveUserState(b)
	}
	if err != nil {
		a.log.Warn("agent: saving the energy ledger failed", "device", d.id, "err", err)
	}
}

// applySafety switches the relay when the decision changed it, records
// the events and, when the relay's state changed, asks for a new status;
// it returns whether an event must force a full wake.
func (a *Agent) applySafety(ctx context.Context, d *device, dec safety.Decision, _ bool) bool {
	if dec.Changed && d.relay != nil {
		if err := d.relay.Set(ctx, dec.Closed); err != nil {
			a.log.Error("agent: relay switch failed", "device", d.id, "closed", dec.Closed, "err", err)
		}
		a.saveLedger(d) // the relay state survives a restart
	}
	for _, ev := range dec.Events {
		if ev.Kind == safety.EventTrip {
			a.count(func(s *Stats) { s.Trips++ })
		}
		detail := string(ev.Kind)
		if ev.Cause != "" {
			detail = fmt.Sprintf("%s %g over limit %g for %v", ev.Cause, ev.Value, ev.Limit, ev.Time.Sub(ev.Since).Round(time.Millisecond))
		}
		a.recordEvent(d, telemetry.Event{Kind: telemetry.EventKind(ev.Kind), Time: ev.Time, Before: d.last, After: ev.Reading, Detail: detail})
	}
	a.noteRelay(d)
	return len(dec.Events) > 0
}

func (a *Agent) recordEvent(d *device, ev telemetry.Event) {
	ev.ClockSynced = a.cfg.ClockSynced(ev.Time)
	if _, err := d.events.ob.Append(ev.AppendJSON(nil)); err != nil {
		a.log.Error("agent: event outbox append failed", "device", d.id, "kind", ev.Kind, "err", err)
		return
	}
	a.count(func(s *Stats) { s.Events++ })
	a.wake()
}

func (d *device) dutyNext() time.Time {
	if t := d.duty.Next(); t.After(d.retryAt) {
		return t
	}
	return d.retryAt
}
