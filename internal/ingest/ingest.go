// Package ingest is loadwatch's ingest pipeline: it takes one MQTT message
// (topic and payload) and, synchronously, decodes and validates it, drops
// replays, keeps the energy total, computes or takes the classifier's
// features, classifies, runs server-side anomaly detection, stores the
// result and tells the rest of the server (device table, events bus).
//
// Pipeline.Ingest has the shape of the embedded broker's ingest hook: it
// returns 0 when the message is stored (the broker then sends the PUBACK)
// or an MQTT 5 reason code when it is refused. A refusal of one device's
// message touches only that device's state: every device has its own lock
// and nothing global is held while a message is processed, except that
// the store appends of concurrent messages are grouped into one
// Store.Append (group commit), each message still getting its own answer.
//
// The package never imports the broker or the HTTP layer; it declares what
// it needs (Store, Classifier, Notifier, TasmotaLookup).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/anomaly"
	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/ledger"
	"loadwatch/internal/power"
	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"
)

// MQTT 5 PUBACK reason codes Ingest returns.
const (
	CodeOK            byte = 0x00
	CodeUnspecified   byte = 0x80 // retried by the agent
	CodeNotAuthorized byte = 0x87 // permanent
	CodeQuotaExceeded byte = 0x97 // retried
	CodePayloadFormat byte = 0x99 // permanent
)

// Reasons counted in loadwatch_ingest_rejected_total besides the
// telemetry.Reason values.
const (
	ReasonDuplicate     = "duplicate"      // (device, epoch, seq) already stored; acknowledged, not stored again
	ReasonUnknownDevice = "unknown_device" // a Tasmota topic no device is registered for
	ReasonQuota         = "quota"          // the device exceeded its message rate
	ReasonTooOld        = "too_old"        // older than the store's out-of-order window
	ReasonStoreFailed   = "store_failed"   // the store could not take it (retried)
	ReasonBadCounter    = "bad_counter"    // an energy counter the ledger refused
)

// Store is where readings go (*store.Store implements it). When Append
// returns nil the samples must survive a crash of the process.
type Store interface {
	Append(ctx context.Context, batch []store.Sample) error
}

// Classifier gives the model in use (nil: none, readings are stored
// without a class).
type Classifier interface {
	Model() *forest.Model
}

// Notifier is told what ingest did. Notify must not block: it runs inside
// the broker's publish path.
type Notifier interface {
	Notify(Event)
}

// TasmotaLookup maps a Tasmota topic to a registered device id and the
// time zone of its zone-less timestamps. An error refuses the message
// (unknown topic: 0x87).
type TasmotaLookup func(ctx context.Context, topic string) (device string, loc *time.Location, err error)

// Config configures a Pipeline. Zero fields mean the documented defaults.
type Config struct {
	Store      Store         // required
	Classifier Classifier    // optional
	Notifier   Notifier      // optional
	Tasmota    TasmotaLookup // optional: Tasmota topics are refused without it
	Limits     telemetry.Limits
	// Now is the receive clock. Default time.Now.
	Now func() time.Time
	// Anomaly configures server-side detection (zero: anomaly defaults).
	Anomaly anomaly.Config
	// Features configures the server-side feature windows.
	Features features.Config
	// DeviceRate and DeviceBurst bound each device's messages per second
	// (token bucket); refused messages get 0x97 quota exceeded, which the
	// agent retries later. DeviceRate 0 means no limit.
	DeviceRate  float64
	DeviceBurst int
	// SkewThreshold is how far a device's clock may be ahead of receive
	// time before a clock_skew event is raised. Default 5 s.
	SkewThreshold time.Duration
	// DedupeWindow is how many recent sequence numbers per device and
	// epoch are remembered. Default 8192.
	DedupeWindow int
	// AppendConcurrency is how many store appends may run at once;
	// messages that arrive while that many run are appended together
	// once one ends (group commit). Default 0: GOMAXPROCS. A negative
	// value disables grouping: every message appends on its own.
	AppendConcurrency int
	Logger            *slog.Logger
}

// Pipeline is the ingest pipeline. It is safe for concurrent use.
type Pipeline struct {
	cfg Config
	log *slog.Logger

	devs   sync.Map // device id -> *device
	commit committer

	rejMu    sync.Mutex
	rejected map[RejectKey]uint64

	stats struct {
		messages, readings, duplicates, events, stored, classified, agentFeatures, serverFeatures atomic.Uint64
	}
}

// RejectKey is one rejection counter: device ("" when the topic named no
// valid device) and reason.
type RejectKey struct {
	Device string
	Reason string
}

// New checks cfg and returns a pipeline.
func New(cfg Config) (*Pipeline, error) {
	if cfg.Store == nil {
		return nil, errors.New("ingest: no store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SkewThreshold <= 0 {
		cfg.SkewThreshold = 5 * time.Second
	}
	if cfg.DedupeWindow <= 0 {
		cfg.DedupeWindow = 8192
	}
	if cfg.DeviceRate > 0 && cfg.DeviceBurst <= 0 {
		cfg.DeviceBurst = max(1, int(math.Ceil(cfg.DeviceRate)))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{cfg: cfg, log: cfg.Logger.With("component", "ingest"), rejected: map[RejectKey]uint64{}}
	p.commit.st, p.commit.parallel = cfg.Store, cfg.AppendConcurrency
	switch {
	case cfg.AppendConcurrency == 0:
		p.commit.parallel = runtime.GOMAXPROCS(0)
	case cfg.AppendConcurrency < 0:
		p.commit.parallel = math.MaxInt // never queue
	}
	return p, nil
}

// RefusedError is a refused message: Reason is the counted reason, Code
// the MQTT 5 reason code, Err the cause.
type RefusedError struct {
	Device string
	Reason string
	Code   byte
	Err    error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("ingest: %s refused (%s, 0x%02x): %v", e.Device, e.Reason, e.Code, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

func (p *Pipeline) refuse(dev, reason string, code byte, err error) (byte, error) {
	p.count(dev, reason)
	if p.cfg.Notifier != nil {
		p.cfg.Notifier.Notify(Event{Type: EventRejected, Device: dev, Time: p.cfg.Now(), Reason: reason})
	}
	return code, &RefusedError{Device: dev, Reason: reason, Code: code, Err: err}
}

func (p *Pipeline) count(dev, reason string) {
	p.rejMu.Lock()
	p.rejected[RejectKey{dev, reason}]++
	p.rejMu.Unlock()
}

// Rejected returns a copy of the rejection counters.
func (p *Pipeline) Rejected() map[RejectKey]uint64 {
	p.rejMu.Lock()
	defer p.rejMu.Unlock()
	m := make(map[RejectKey]uint64, len(p.rejected))
	for k, v := range p.rejected {
		m[k] = v
	}
	return m
}

// Stats are the pipeline's counters.
type Stats struct {
	Messages       uint64 // messages handled (accepted or not)
	Readings       uint64 // readings stored
	Duplicates     uint64 // readings dropped as already stored
	Events         uint64 // events stored (device's own and server-side)
	Classified     uint64 // readings given a class
	AgentFeatures  uint64 // classifications that used the agent's features
	ServerFeatures uint64 // classifications that used the server's window
	// Appends counts Store.Append calls and AppendedMessages the messages
	// they carried: concurrent messages are appended together (group
	// commit), so AppendedMessages/Appends is the mean group size.
	Appends, AppendedMessages uint64
}

// Stats returns a snapshot of the counters.
func (p *Pipeline) Stats() Stats {
	s := &p.stats
	return Stats{
		Messages: s.messages.Load(), Readings: s.readings.Load(), Duplicates: s.duplicates.Load(),
		Events: s.events.Load(), Classified: s.classified.Load(),
		AgentFeatures: s.agentFeatures.Load(), ServerFeatures: s.serverFeatures.Load(),
		Appends: p.commit.appends.Load(), AppendedMessages: p.commit.messages.Load(),
	}
}

// Ingest handles one message. clientID is informational (the broker has
// checked that the client may publish to topic). It returns 0 when the
// message was taken (stored, or a harmless duplicate or a message ingest
// does not keep), or a refusal code with a *RefusedError.
func (p *Pipeline) Ingest(ctx context.Context, clientID, topic string, payload []byte) (byte, error) {
	p.stats.messages.Add(1)
	now := p.cfg.Now()
	if t, ok := telemetry.TasmotaSensorTopic(topic); ok {
		return p.tasmota(ctx, t, payload, now)
	}
	dev, ch, err := telemetry.ParseTopic(topic)
	if err != nil {
		if len(topic) < len(telemetry.Prefix) || topic[:len(telemetry.Prefix)] != telemetry.Prefix {
			return CodeOK, nil // not ours (Tasmota stat/, LWT...): nothing to keep
		}
		return p.refuse("", string(telemetry.ReasonOf(err)), CodePayloadFormat, err)
	}
	d := p.device(dev)
	switch ch {
	case telemetry.ChannelTelemetry:
		return p.telemetry(ctx, d, payload, now)
	case telemetry.ChannelEvent:
		return p.event(ctx, d, payload, now)
	case telemetry.ChannelStatus:
		return p.status(d, payload, now)
	case telemetry.ChannelCmdAck:
		return p.ack(d, payload, now)
	}
	return CodeOK, nil // cmd: the server's own commands echoed by a broker
}

func (p *Pipeline) device(id string) *device {
	if v, ok := p.devs.Load(id); ok {
		return v.(*device)
	}
	d := &device{id: id, seen: newSeqSet(p.cfg.DedupeWindow)}
	if p.cfg.DeviceRate > 0 {
		d.tokens = float64(p.cfg.DeviceBurst)
	}
	v, _ := p.devs.LoadOrStore(id, d)
	return v.(*device)
}

// allow takes one token of d's bucket; d.mu must be held.
func (p *Pipeline) allow(d *device, now time.Time) bool {
	if p.cfg.DeviceRate <= 0 {
		return true
	}
	if !d.bucketAt.IsZero() {
		d.tokens = math.Min(float64(p.cfg.DeviceBurst), d.tokens+now.Sub(d.bucketAt).Seconds()*p.cfg.DeviceRate)
	}
	d.bucketAt = now
	if d.tokens < 1 {
		return false
	}
	d.tokens--
	return true
}

func (p *Pipeline) telemetry(ctx context.Context, d *device, payload []byte, now time.Time) (byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !p.allow(d, now) {
		return p.refuse(d.id, ReasonQuota, CodeQuotaExceeded, errors.New("message rate over the device's quota"))
	}
	m, err := telemetry.DecodeTelemetry(payload, now, p.cfg.Limits)
	if err != nil {
		return p.refuse(d.id, string(telemetry.ReasonOf(err)), CodePayloadFormat, err)
	}
	in := make([]input, 0, len(m.Readings))
	for i := range m.Readings {
		t := &m.Readings[i]
		if d.seen.has(m.Epoch, t.Seq) {
			p.stats.duplicates.Add(1)
			p.count(d.id, ReasonDuplicate)
			continue
		}
		in = append(in, input{t: t, epoch: m.Epoch})
	}
	if len(in) == 0 {
		return CodeOK, nil // a replay of what is stored: acknowledge so the agent drops it
	}
	return p.process(ctx, d, in, now, !m.Batch)
}

// input is one reading to process.
type input struct {
	t     *telemetry.Telemetry
	epoch string // "" for sources without sequence numbers
}

func (p *Pipeline) tasmota(ctx context.Context, topic string, payload []byte, now time.Time) (byte, error) {
	if p.cfg.Tasmota == nil {
		return p.refuse("", ReasonUnknownDevice, CodeNotAuthorized, fmt.Errorf("tasmota topic %q: no device registry", topic))
	}
	dev, loc, err := p.cfg.Tasmota(ctx, topic)
	if err != nil {
		return p.refuse("", ReasonUnknownDevice, CodeNotAuthorized, fmt.Errorf("tasmota topic %q: %w", topic, err))
	}
	d := p.device(dev)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !p.allow(d, now) {
		return p.refuse(d.id, ReasonQuota, CodeQuotaExceeded, errors.New("message rate over the device's quota"))
	}
	r, err := telemetry.DecodeTasmota(payload, loc, now, p.cfg.Limits)
	if err != nil {
		return p.refuse(d.id, string(telemetry.ReasonOf(err)), CodePayloadFormat, err)
	}
	t := &telemetry.Telemetry{Reading: r, State: telemetry.StateHeartbeat}
	// Tasmota's Total is a raw counter that resets: run a ledger over it.
	if r.Is(power.FieldEnergy) {
		if d.ledger == nil {
			d.ledger = ledger.New(ledger.Config{Modulus: power.WattHours(math.MaxFloat64 / 4)}, ledger.State{})
		}
		total, _, err := d.ledger.Observe(r.Energy)
		if err != nil {
			return p.refuse(d.id, ReasonBadCounter, CodePayloadFormat, err)
		}
		t.EnergyTotal, t.HasEnergyTotal = total, true
	}
	return p.process(ctx, d, []input{{t: t}}, now, true)
}

// process classifies, detects, stores and publishes readings of one
// device; d.mu is held. live says the message is a single live reading
// (its timestamp can be compared with receive time).
func (p *Pipeline) process(ctx context.Context, d *device, in []input, now time.Time, live bool) (byte, error) {
	var model *forest.Model
	if p.cfg.Classifier != nil {
		model = p.cfg.Classifier.Model()
	}
	samples := make([]store.Sample, 0, len(in)*8)
	var events []Event
	var results []result
	for _, x := range in {
		t := x.t
		r := t.Reading
		res := result{reading: r, seq: t.Seq, epoch: x.epoch, state: t.State}
		if t.HasEnergyTotal {
			res.total, res.hasTotal = t.EnergyTotal, true
		}
		if model != nil {
			res.class, res.conf, res.classified = p.classify(d, model, t)
		}
		if d.anom == nil {
			d.anom = anomaly.New(p.cfg.Anomaly)
		}
		for _, ev := range d.anom.Observe(r) {
			events = append(events, Event{Type: EventAnomaly, Device: d.id, Time: ev.Time, Kind: string(ev.Kind), Source: SourceServer, Detail: ev.Detail})
		}
		samples = appendSamples(samples, d.id, &res)
		results = append(results, res)
	}
	for _, ev := range events {
		samples = append(samples, eventSample(d.id, ev))
	}
	if err := p.commit.append(ctx, samples); err != nil {
		if code, rerr, handled := p.storeErr(d, err); handled {
			return code, rerr
		}
	}
	// Stored: remember the sequence numbers, update the device and tell.
	for _, res := range results {
		if res.epoch != "" {
			d.seen.add(res.epoch, res.seq)
		}
	}
	p.stats.readings.Add(uint64(len(results)))
	p.stats.events.Add(uint64(len(events)))
	last := results[len(results)-1]
	d.update(last, now)
	if live {
		skew := last.reading.Time.Sub(now)
		d.skew, d.hasSkew = skew, true
		if skew > p.cfg.SkewThreshold && !d.skewed {
			d.skewed = true
			events = append(events, Event{Type: EventAnomaly, Device: d.id, Time: now, Kind: KindClockSkew, Source: SourceServer,
				Detail: fmt.Sprintf("device clock %.1fs ahead of the server", skew.Seconds())})
		} else if skew <= p.cfg.SkewThreshold/2 {
			d.skewed = false
		}
	}
	if n := p.cfg.Notifier; n != nil {
		for _, res := range results {
			n.Notify(res.event(d.id))
		}
		for _, ev := range events {
			n.Notify(ev)
		}
	}
	return CodeOK, nil
}

// storeErr maps an Append error. handled false means the samples are
// stored after all (only duplicates were refused).
func (p *Pipeline) storeErr(d *device, err error) (byte, error, bool) {
	var ae *store.AppendError
	switch {
	case errors.As(err, &ae) && errors.Is(err, store.ErrConflict):
		// The same reading stored before (a replay this replica had not
		// seen) with a recomputed value such as a confidence: the reading
		// is in the store, acknowledge it.
		p.count(d.id, ReasonDuplicate)
		return 0, nil, false
	case errors.Is(err, store.ErrTooOld):
		c, e := p.refuse(d.id, ReasonTooOld, CodePayloadFormat, err)
		return c, e, true
	case errors.Is(err, store.ErrInvalid):
		c, e := p.refuse(d.id, string(telemetry.ReasonBadValue), CodePayloadFormat, err)
		return c, e, true
	}
	p.log.Warn("store append failed; the device will retry", "device", d.id, "error", err)
	c, e := p.refuse(d.id, ReasonStoreFailed, CodeUnspecified, err)
	return c, e, true
}

// featureSetOf maps the "v" of an agent's features object to a feature
// set name.
func featureSetOf(v int) string {
	if v == 1 {
		return features.SetLW1
	}
	return ""
}

// classify returns the class of reading t; d.mu is held.
func (p *Pipeline) classify(d *device, m *forest.Model, t *telemetry.Telemetry) (string, float64, bool) {
	n := len(m.Features)
	if n == 0 || m.Forest == nil || m.Forest.NumFeatures() != n {
		return "", 0, false
	}
	if d.ext == nil || d.extSet != m.FeatureSet {
		e, err := features.New(m.FeatureSet, p.cfg.Features)
		if err != nil {
			return "", 0, false
		}
		d.ext, d.extSet, d.vec = e, m.FeatureSet, make([]float32, e.NumFeatures())
	}
	// The server's window always sees the stream, so it is warm when an
	// agent stops sending features.
	d.ext.Push(t.Reading, d.vec)
	x := d.vec
	if f := t.Features; f != nil && featureSetOf(f.V) == m.FeatureSet && len(f.Values) > 0 {
		if cap(d.agentVec) < n {
			d.agentVec = make([]float32, n)
		}
		x = d.agentVec[:n]
		for i, name := range m.Features {
			if v, ok := f.Values[name]; ok {
				x[i] = float32(v)
			} else {
				x[i] = float32(math.NaN()) // not measured
			}
		}
		p.stats.agentFeatures.Add(1)
	} else {
		p.stats.serverFeatures.Add(1)
	}
	if len(x) != m.Forest.NumFeatures() {
		return "", 0, false
	}
	c, prob := m.Forest.Predict(x)
	if c < 0 || c >= len(m.Classes) {
		return "", 0, false
	}
	p.stats.classified.Add(1)
	return m.Classes[c], float64(prob), true
}

func (p *Pipeline) event(ctx context.Context, d *device, payload []byte, now time.Time) (byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !p.allow(d, now) {
		return p.refuse(d.id, ReasonQuota, CodeQuotaExceeded, errors.New("message rate over the device's quota"))
	}
	e, err := telemetry.DecodeEvent(payload, now, p.cfg.Limits)
	if err != nil {
		return p.refuse(d.id, string(telemetry.ReasonOf(err)), CodePayloadFormat, err)
	}
	ev := Event{Type: EventAnomaly, Device: d.id, Time: e.Time, Kind: string(e.Kind), Source: SourceDevice, Detail: e.Detail}
	if err := p.commit.append(ctx, []store.Sample{eventSample(d.id, ev)}); err != nil {
		if code, rerr, handled := p.storeErr(d, err); handled {
			return code, rerr
		}
	}
	p.stats.events.Add(1)
	d.lastSeen = now
	if p.cfg.Notifier != nil {
		p.cfg.Notifier.Notify(ev)
	}
	return CodeOK, nil
}

func (p *Pipeline) status(d *device, payload []byte, now time.Time) (byte, error) {
	s, err := telemetry.DecodeStatus(payload, now, p.cfg.Limits)
	if err != nil {
		return p.refuse(d.id, string(telemetry.ReasonOf(err)), CodePayloadFormat, err)
	}
	d.mu.Lock()
	d.status, d.statusAt = s.State, now
	if s.Firmware != "" {
		d.firmware = s.Firmware
	}
	d.observeLink(&s, now)
	if s.State == telemetry.StatusOnline {
		d.lastSeen = now
	}
	d.mu.Unlock()
	if p.cfg.Notifier != nil {
		p.cfg.Notifier.Notify(Event{Type: EventStatus, Device: d.id, Time: now, Status: string(s.State), Firmware: s.Firmware, Relay: string(s.Relay)})
	}
	return CodeOK, nil
}

// ObserveStatus takes a status message seen as a subscriber rather than
// through Ingest: the embedded broker publishes a device's last will
// ("offline") without passing it through its ingest hook, so the server
// subscribes to the status topics to see it. A retained "online" (old news
// replayed at subscribe time) is ignored. Invalid input is ignored too
// (Ingest has refused and counted it already).
func (p *Pipeline) ObserveStatus(topic string, payload []byte, retained bool) {
	dev, ch, err := telemetry.ParseTopic(topic)
	if err != nil || ch != telemetry.ChannelStatus {
		return
	}
	now := p.cfg.Now()
	s, err := telemetry.DecodeStatus(payload, now, p.cfg.Limits)
	if err != nil || retained && s.State == telemetry.StatusOnline {
		return
	}
	d := p.device(dev)
	d.mu.Lock()
	changed := d.status != s.State || s.State == telemetry.StatusOffline && d.statusAt.Before(d.lastSeen)
	d.status, d.statusAt = s.State, now
	d.observeLink(&s, now)
	d.mu.Unlock()
	if changed && p.cfg.Notifier != nil {
		p.cfg.Notifier.Notify(Event{Type: EventStatus, Device: dev, Time: now, Status: string(s.State), Firmware: s.Firmware, Relay: string(s.Relay)})
	}
}

func (p *Pipeline) ack(d *device, payload []byte, now time.Time) (byte, error) {
	a, err := telemetry.DecodeCommandAck(payload, p.cfg.Limits)
	if err != nil {
		return p.refuse(d.id, string(telemetry.ReasonOf(err)), CodePayloadFormat, err)
	}
	d.mu.Lock()
	d.lastSeen = now
	d.mu.Unlock()
	if p.cfg.Notifier != nil {
		p.cfg.Notifier.Notify(Event{Type: EventAck, Device: d.id, Time: now, Ack: &a})
	}
	return CodeOK, nil
}

// result is one processed reading.
type result struct {
	reading    power.Reading
	seq        uint64
	epoch      string
	state      telemetry.State
	total      power.WattHours
	hasTotal   bool
	class      string
	conf       float64
	classified bool
}

func (r *result) event(dev string) Event {
	ev := Event{Type: EventReading, Device: dev, Time: r.reading.Time, Seq: r.seq, State: string(r.state)}
	rd := &r.reading
	set := func(f power.Field, v float64) *float64 {
		if rd.Is(f) {
			return &v
		}
		return nil
	}
	ev.Voltage = set(power.FieldVoltage, float64(rd.Voltage))
	ev.Current = set(power.FieldCurrent, float64(rd.Current))
	ev.Power = set(power.FieldPower, float64(rd.Power))
	ev.Frequency = set(power.FieldFrequency, float64(rd.Frequency))
	ev.PF = set(power.FieldPF, float64(rd.PF))
	if r.hasTotal {
		j := r.total.Joules()
		ev.EnergyJoules = &j
	}
	if r.classified {
		ev.Class, ev.Confidence = r.class, &r.conf
	}
	return ev
}

func label(dev string) []store.Label { return []store.Label{{Name: store.LabelDevice, Value: dev}} }

// appendSamples adds the series of one reading.
func appendSamples(s []store.Sample, dev string, r *result) []store.Sample {
	ts := store.Millis(r.reading.Time)
	ls := label(dev)
	rd := &r.reading
	add := func(f power.Field, metric string, v float64) {
		if rd.Is(f) {
			s = append(s, store.Sample{Metric: metric, Labels: ls, T: ts, V: v})
		}
	}
	add(power.FieldVoltage, store.MetricVoltage, float64(rd.Voltage))
	add(power.FieldCurrent, store.MetricCurrent, float64(rd.Current))
	add(power.FieldPower, store.MetricPower, float64(rd.Power))
	add(power.FieldFrequency, store.MetricFrequency, float64(rd.Frequency))
	add(power.FieldPF, store.MetricPowerFactor, float64(rd.PF))
	if r.hasTotal {
		s = append(s, store.Sample{Metric: store.MetricEnergy, Labels: ls, T: ts, V: r.total.Joules()})
	}
	if r.classified {
		s = append(s, store.Sample{Metric: store.MetricClassConfidence,
			Labels: []store.Label{{Name: store.LabelDevice, Value: dev}, {Name: store.LabelClass, Value: r.class}}, T: ts, V: r.conf})
	}
	return s
}

// LabelSource tells a server-side event from a device's own one.
const LabelSource = "source"

func eventSample(dev string, ev Event) store.Sample {
	return store.Sample{Metric: store.MetricEvents, T: store.Millis(ev.Time), V: 1, Labels: []store.Label{
		{Name: store.LabelDevice, Value: dev}, {Name: store.LabelEvent, Value: ev.Kind}, {Name: LabelSource, Value: ev.Source},
	}}
}
