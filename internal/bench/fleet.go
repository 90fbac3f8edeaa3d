// Package bench is loadwatch's performance and reliability harness: a
// fleet of simulated agents with real MQTT connections (internal/leanmqtt)
// and real telemetry payloads (internal/telemetry, values from loadsim's
// circuit physics), chaos orchestration around a server in a child
// process, and the reconciliation of every acknowledged reading against
// what the server's query API says it stored.
//
// A simulated device behaves like the agent's store-and-forward side: a
// reading stays in its outbox until a PUBACK 0x00 arrives; a lost
// connection or a retryable refusal (0x80, 0x97, ...) puts it back and it
// is sent again (as a batch when several wait); a permanent refusal (0x99,
// 0x87, 0x90) dead-letters it. (device, epoch, seq) identifies a reading;
// seq survives a simulated agent restart, the epoch does not.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/leanmqtt"
	"loadwatch/internal/loadsim"
	"loadwatch/internal/telemetry"
)

// Credential is one registered device.
type Credential struct{ ID, Token string }

// FleetConfig configures a Fleet. Zero fields mean the documented defaults.
type FleetConfig struct {
	Devices  []Credential  // registered devices to simulate (see Register)
	Interval time.Duration // between readings of one device [1 s]
	Batch    int           // readings per message [1]; a backlog is replayed in batches of up to MaxReplay
	// DutyCycled devices connect, send what they hold and disconnect
	// every Batch readings, as a sleeping agent does; otherwise each
	// device keeps one connection.
	DutyCycled bool
	Window     int    // PUBLISHes in flight per connection [16]
	Broker     string // MQTT host:port
	Seed       int64  // [1]
	// ConnectConcurrency bounds simultaneous CONNECTs at start [64].
	ConnectConcurrency int
	// Log receives progress lines (default: discarded).
	Log io.Writer
}

// MaxReplay is the largest batch a device sends when it replays a backlog.
const MaxReplay = 64

// Fleet is a set of simulated devices. Start it, let it run, Stop it,
// Drain it, then Reconcile.
type Fleet struct {
	cfg   FleetConfig
	devs  []*device
	lat   Hist
	start time.Time

	interval atomic.Int64 // ns; changed by SetInterval (ramp)
	stats    counters

	wg     sync.WaitGroup
	cancel context.CancelFunc
	ctx    context.Context
}

type counters struct {
	sent, acked, refused, deadLetter, resent, messages, msgAcked, dials, dialFails, lostConns atomic.Uint64
	connected                                                                                 atomic.Int64
	late                                                                                      atomic.Uint64
}

// rec is one reading in a device's outbox.
type rec struct {
	n     uint64 // order in the device's life (sort key)
	epoch int    // index into device.epochs
	t     telemetry.Telemetry
	sent  bool
}

type acked struct {
	epoch int
	seq   uint64
	ms    int64
}

type device struct {
	f     *Fleet
	idx   int
	cred  Credential
	topic string
	meter simMeter // d.mu
	rng   *rand.Rand

	flushMu sync.Mutex // held while the device sends (d.buf, dialling)

	mu       sync.Mutex
	outbox   []rec // not sent or sent and returned; in order of n
	inflight int   // readings in flight
	epochs   []string
	epoch    int
	n        uint64
	lastMS   int64
	acked    []acked
	conn     *leanmqtt.Conn
	paused   bool // a killed agent: generates nothing until restarted
	buf      []byte
	nextDial time.Time
}

// NewFleet prepares the devices (no connection yet).
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	if len(cfg.Devices) == 0 {
		return nil, errors.New("bench: no devices")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1
	}
	if cfg.Batch > MaxReplay {
		return nil, fmt.Errorf("bench: batch %d over %d", cfg.Batch, MaxReplay)
	}
	if cfg.Window <= 0 {
		cfg.Window = 16
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.ConnectConcurrency <= 0 {
		cfg.ConnectConcurrency = 64
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	f := &Fleet{cfg: cfg}
	f.interval.Store(int64(cfg.Interval))
	// A pool of circuits with different seeds, each shared by many devices
	// at different offsets into the reference hour: the physics and the
	// appliance mix are real without one circuit per device.
	pool := make([]*loadsim.Circuit, min(len(cfg.Devices), 64))
	for i := range pool {
		pool[i] = loadsim.NewCircuit(loadsim.Config{Seed: cfg.Seed + int64(i), Schedule: loadsim.ReferenceSchedule()})
	}
	for i, c := range cfg.Devices {
		d := &device{
			f: f, idx: i, cred: c, topic: telemetry.Topic(c.ID, telemetry.ChannelTelemetry),
			meter: newSimMeter(pool, i),
			rng:   rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(i))),
		}
		d.newEpoch()
		f.devs = append(f.devs, d)
	}
	return f, nil
}

func (d *device) newEpoch() {
	d.epochs = append(d.epochs, fmt.Sprintf("%016x", d.rng.Uint64()))
	d.epoch = len(d.epochs) - 1
}

// SetInterval changes the reading interval of every device (for a ramp).
func (f *Fleet) SetInterval(d time.Duration) { f.interval.Store(int64(d)) }

// Latency is the publish-to-PUBACK histogram (the embedded broker sends a
// PUBACK only once the reading is stored).
func (f *Fleet) Latency() *Hist { return &f.lat }

// Connect opens every device's connection (not for duty-cycled fleets).
func (f *Fleet) Connect(ctx context.Context) error {
	if f.cfg.DutyCycled {
		return nil
	}
	sem := make(chan struct{}, f.cfg.ConnectConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, d := range f.devs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := d.dial(ctx)
			if err != nil {
				mu.Lock()
				first = cmp(first, err)
				mu.Unlock()
				return
			}
			d.mu.Lock()
			d.conn = c
			d.mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	fmt.Fprintf(f.cfg.Log, "bench: %d devices connected\n", len(f.devs))
	return nil
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (d *device) dial(ctx context.Context) (*leanmqtt.Conn, error) {
	d.f.stats.dials.Add(1)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := leanmqtt.Dial(dctx, leanmqtt.Options{
		Addr: d.f.cfg.Broker, ClientID: d.cred.ID, Username: d.cred.ID, Password: d.cred.Token,
		CleanStart: true, Window: d.f.cfg.Window, KeepAlive: 300,
	})
	if err != nil {
		d.f.stats.dialFails.Add(1)
		return nil, fmt.Errorf("bench: device %s: %w", d.cred.ID, err)
	}
	d.f.stats.connected.Add(1)
	go func() { <-c.Done(); d.f.stats.connected.Add(-1) }()
	return c, nil
}

// Warmup has every device take one reading and send it, and waits until
// all are acknowledged (or timeout), then clears the latency histogram: a
// broker's per-connection setup after CONNACK (the embedded broker's
// session store writes to disk for every CONNECT) then stays out of the
// measured run. It returns how long it took.
func (f *Fleet) Warmup(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	if f.start.IsZero() {
		f.start = t0
	}
	if f.ctx == nil {
		f.ctx = ctx
	}
	sem := make(chan struct{}, f.cfg.ConnectConcurrency)
	var wg sync.WaitGroup
	for _, d := range f.devs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			d.mu.Lock()
			d.read(time.Now())
			d.mu.Unlock()
			d.flush(ctx, true)
		}()
	}
	wg.Wait()
	for f.Held() > 0 {
		if time.Since(t0) > timeout {
			return time.Since(t0), fmt.Errorf("bench: warm-up: %d readings unacknowledged after %v", f.Held(), timeout)
		}
		select {
		case <-ctx.Done():
			return time.Since(t0), ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		for _, d := range f.devs {
			if d.held() > 0 {
				d.flush(ctx, true) // a connection lost meanwhile
			}
		}
	}
	f.lat.Reset()
	return time.Since(t0), nil
}

func (d *device) held() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.outbox) + d.inflight
}

// Start starts every device's loop, each device at its own phase. The
// phases spread over interval x batch, the period at which a device sends
// a message: spread over one interval only, every device would fill its
// batch at the same tick and the fleet would send in lock-step bursts.
func (f *Fleet) Start(ctx context.Context) {
	f.ctx, f.cancel = context.WithCancel(ctx)
	if f.start.IsZero() {
		f.start = time.Now()
	}
	n := len(f.devs)
	for i, d := range f.devs {
		phase := time.Duration(int64(f.cfg.Interval) * int64(max(f.cfg.Batch, 1)) * int64(i) / int64(n))
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			d.run(f.ctx, phase)
		}()
	}
}

// Stop ends reading generation and waits for the device loops.
func (f *Fleet) Stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
}

func (d *device) run(ctx context.Context, phase time.Duration) {
	t := time.NewTimer(phase)
	defer t.Stop()
	next := time.Now().Add(phase)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		iv := time.Duration(d.f.interval.Load())
		d.tick()
		next = next.Add(iv)
		now := time.Now()
		if wait := next.Sub(now); wait > 0 {
			t.Reset(wait)
		} else {
			// Behind schedule (the publisher waits for its window):
			// skip the missed ticks rather than burst.
			d.f.stats.late.Add(uint64(-wait/iv) + 1)
			next = now.Add(iv)
			t.Reset(iv)
		}
	}
}

// tick takes one reading and sends what is due.
func (d *device) tick() {
	d.mu.Lock()
	if d.paused {
		d.mu.Unlock()
		return
	}
	d.read(time.Now())
	due := len(d.outbox) >= d.f.cfg.Batch
	d.mu.Unlock()
	if !due {
		return
	}
	if !d.f.cfg.DutyCycled {
		d.flush(d.f.ctx, false)
		return
	}
	// A duty-cycled agent keeps sampling while its network side wakes,
	// connects, sends and disconnects.
	if !d.flushMu.TryLock() {
		return // still awake from the last report
	}
	d.f.wg.Add(1)
	go func() {
		defer d.f.wg.Done()
		defer d.flushMu.Unlock()
		d.flushLocked(d.f.ctx, false)
	}()
}

// read appends a reading at now to the outbox; d.mu is held.
func (d *device) read(now time.Time) {
	ms := now.UnixMilli()
	if ms <= d.lastMS {
		ms = d.lastMS + 1
	}
	d.lastMS = ms
	ts := time.UnixMilli(ms).UTC()
	t := d.meter.read(ts, ts.Sub(d.f.start.Truncate(time.Hour)))
	d.n++
	d.outbox = append(d.outbox, rec{n: d.n, epoch: d.epoch, t: t})
}

// flush sends the outbox: in batches of Batch (or up to MaxReplay for a
// backlog) over the device's connection, dialling one if needed. With
// drain it also sends a partial batch.
func (d *device) flush(ctx context.Context, drain bool) {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.flushLocked(ctx, drain)
}

// flushLocked is flush with d.flushMu held (one sender per device).
func (d *device) flushLocked(ctx context.Context, drain bool) {
	duty := d.f.cfg.DutyCycled
	for {
		d.mu.Lock()
		conn := d.conn
		if conn == nil || conn.Err() != nil {
			if time.Now().Before(d.nextDial) {
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
			c, err := d.dial(ctx)
			d.mu.Lock()
			if err != nil {
				d.nextDial = time.Now().Add(time.Duration(200+d.rng.IntN(600)) * time.Millisecond)
				d.mu.Unlock()
				return
			}
			if d.conn != nil && d.conn.Err() != nil {
				d.f.stats.lostConns.Add(1)
			}
			d.conn, conn = c, c
		}
		batch := d.f.cfg.Batch
		if len(d.outbox) > batch && !duty {
			batch = min(len(d.outbox), MaxReplay) // a backlog
		}
		if duty {
			batch = min(len(d.outbox), MaxReplay)
		}
		if len(d.outbox) == 0 || (len(d.outbox) < batch && !drain) {
			d.mu.Unlock()
			break
		}
		batch = min(batch, len(d.outbox))
		// Readings of one message share an epoch.
		ep := d.outbox[0].epoch
		k := 1
		for k < batch && d.outbox[k].epoch == ep {
			k++
		}
		msg := slices.Clone(d.outbox[:k])
		d.outbox = d.outbox[k:]
		d.inflight += k
		m := telemetry.Message{Epoch: d.epochs[ep], Batch: d.f.cfg.Batch > 1 || k > 1, Readings: make([]telemetry.Telemetry, k)}
		for i := range msg {
			m.Readings[i] = msg[i].t
		}
		d.buf = m.AppendJSON(d.buf[:0])
		payload := d.buf
		d.mu.Unlock()

		for i := range msg {
			if msg[i].sent {
				d.f.stats.resent.Add(1)
			} else {
				d.f.stats.sent.Add(1)
				msg[i].sent = true
			}
		}
		d.f.stats.messages.Add(1)
		err := conn.Publish(ctx, d.topic, payload, func(a leanmqtt.Ack) { d.onAck(msg, a) })
		if err != nil {
			d.putBack(msg)
			return
		}
	}
	if duty {
		d.mu.Lock()
		c := d.conn
		d.mu.Unlock()
		if c != nil {
			for c.InFlight() > 0 && c.Err() == nil && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			c.Close()
		}
	}
}

func (d *device) putBack(msg []rec) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight -= len(msg)
	d.outbox = append(d.outbox, msg...)
	slices.SortFunc(d.outbox, func(a, b rec) int {
		switch {
		case a.n < b.n:
			return -1
		case a.n > b.n:
			return 1
		}
		return 0
	})
}

// retryable reports whether a refusal leaves the reading in the outbox.
func retryable(code byte) bool { return code != 0x99 && code != 0x87 && code != 0x90 }

func (d *device) onAck(msg []rec, a leanmqtt.Ack) {
	switch {
	case a.Err != nil:
		d.putBack(msg)
	case a.Reason < 0x80:
		d.f.lat.Record(a.RTT)
		d.f.stats.msgAcked.Add(1)
		d.f.stats.acked.Add(uint64(len(msg)))
		d.mu.Lock()
		d.inflight -= len(msg)
		for _, r := range msg {
			d.acked = append(d.acked, acked{epoch: r.epoch, seq: r.t.Seq, ms: r.t.Reading.Time.UnixMilli()})
		}
		d.mu.Unlock()
	case retryable(a.Reason):
		d.f.stats.refused.Add(uint64(len(msg)))
		d.putBack(msg)
	default:
		d.f.stats.deadLetter.Add(uint64(len(msg)))
		d.mu.Lock()
		d.inflight -= len(msg)
		d.mu.Unlock()
	}
}

// Drain sends every reading still held (partial batches too) and waits
// until none is held or in flight, or until timeout.
func (f *Fleet) Drain(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		held := 0
		for _, d := range f.devs {
			d.flush(ctx, true)
		}
		for _, d := range f.devs {
			d.mu.Lock()
			held += len(d.outbox) + d.inflight
			d.mu.Unlock()
		}
		if held == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d readings still unacknowledged after %v", held, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close closes every connection.
func (f *Fleet) Close() {
	for _, d := range f.devs {
		d.mu.Lock()
		c := d.conn
		d.conn = nil
		d.mu.Unlock()
		if c != nil {
			c.Close()
		}
	}
}

// Held returns the readings still in outboxes or in flight.
func (f *Fleet) Held() int {
	n := 0
	for _, d := range f.devs {
		d.mu.Lock()
		n += len(d.outbox) + d.inflight
		d.mu.Unlock()
	}
	return n
}

// CrashAgent simulates a killed agent process: its connection is cut
// without DISCONNECT (in-flight readings stay in its outbox, which a real
// agent keeps on disk) and it takes no readings until RestartAgent.
func (f *Fleet) CrashAgent(i int) {
	d := f.devs[i%len(f.devs)]
	d.mu.Lock()
	d.paused = true
	c := d.conn
	d.conn = nil
	d.mu.Unlock()
	if c != nil {
		c.Abort()
	}
}

// RestartAgent restarts a crashed agent with a new epoch (boot id); seq
// continues and its outbox is replayed.
func (f *Fleet) RestartAgent(i int) {
	d := f.devs[i%len(f.devs)]
	d.mu.Lock()
	d.paused = false
	d.newEpoch()
	d.nextDial = time.Time{}
	d.mu.Unlock()
}

// Stats is a snapshot of the fleet's counters.
type Stats struct {
	ReadingsSent, ReadingsAcked, ReadingsRefused, ReadingsDeadLettered, ReadingsResent uint64
	Messages, MessagesAcked, Dials, DialFailures, LateTicks                            uint64
	Connected                                                                          int64
}

// Stats returns the counters.
func (f *Fleet) Stats() Stats {
	s := &f.stats
	return Stats{
		ReadingsSent: s.sent.Load(), ReadingsAcked: s.acked.Load(), ReadingsRefused: s.refused.Load(),
		ReadingsDeadLettered: s.deadLetter.Load(), ReadingsResent: s.resent.Load(),
		Messages: s.messages.Load(), MessagesAcked: s.msgAcked.Load(), Dials: s.dials.Load(), DialFailures: s.dialFails.Load(),
		LateTicks: s.late.Load(), Connected: s.connected.Load(),
	}
}

// DeviceID returns the id of device i.
func (f *Fleet) DeviceID(i int) string { return f.devs[i%len(f.devs)].cred.ID }

// strconvMS formats a millisecond duration for PromQL.
func strconvMS(ms int64) string { return strconv.FormatInt(ms, 10) + "ms" }
