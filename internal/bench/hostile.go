package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"loadwatch/internal/leanmqtt"
	"loadwatch/internal/power"
	"loadwatch/internal/telemetry"
)

// Hostile payload kinds, in the order they are injected.
const (
	KindFuzzedJSON   = "fuzzed_json" // a valid payload with seeded byte mutations
	KindOversized    = "oversized"   // 200 KiB, over the 128 KiB payload limit
	KindNaNInf       = "nan_inf"     // NaN and 1e999 (infinite) values
	KindWrongType    = "wrong_type"  // "power":"high"
	KindNegative     = "negative_power"
	KindFarFuture    = "far_future"    // ts one day ahead
	KindReplayed     = "replayed"      // a payload already stored, sent again
	KindOtherDevice  = "other_device"  // a fleet device's topic
	KindBatchTooBig  = "batch_too_big" // 300 readings, over the 256 limit
	KindNotJSON      = "not_json"
	KindMissingField = "missing_field" // no ts
)

var hostileKinds = []string{KindFuzzedJSON, KindOversized, KindNaNInf, KindWrongType, KindNegative, KindFarFuture,
	KindReplayed, KindOtherDevice, KindBatchTooBig, KindNotJSON, KindMissingField}

// expectedCode is the PUBACK reason each kind must get; fuzzed payloads
// may be anything but must not break the server, so they have none.
var expectedCode = map[string]byte{
	KindOversized: 0x99, KindNaNInf: 0x99, KindWrongType: 0x99, KindNegative: 0x99, KindFarFuture: 0x99,
	KindReplayed: 0x00, KindOtherDevice: 0x87, KindBatchTooBig: 0x99, KindNotJSON: 0x99, KindMissingField: 0x99,
}

// Outcome counts the answers one kind of hostile payload got.
type Outcome struct {
	Sent       uint64            `json:"sent"`
	Codes      map[string]uint64 `json:"codes"` // "0x99" -> n; "no_puback" when the connection was lost first
	Unexpected uint64            `json:"unexpected"`
}

// injector publishes hostile payloads at a fixed rate from its own device.
type injector struct {
	cred   Credential
	victim string // a fleet device whose topic it tries
	broker string
	rate   float64
	rng    *rand.Rand

	mu       sync.Mutex
	out      map[string]*Outcome
	paused   bool
	inflight int
	seq      uint64
	valid    []byte // the last accepted valid payload, for replays
	conn     *leanmqtt.Conn
	idle     *sync.Cond
}

func newInjector(cred Credential, victim, broker string, rate float64, seed int64) *injector {
	in := &injector{cred: cred, victim: victim, broker: broker, rate: rate, rng: rand.New(rand.NewPCG(uint64(seed), 0x4057)),
		out: map[string]*Outcome{}}
	in.idle = sync.NewCond(&in.mu)
	return in
}

// pause stops injecting and waits (up to 10 s) for the answers in flight, so
// that the server's counters can be read before it is stopped.
func (in *injector) pause() {
	in.mu.Lock()
	in.paused = true
	deadline := time.Now().Add(10 * time.Second)
	t := time.AfterFunc(10*time.Second, func() { in.mu.Lock(); in.idle.Broadcast(); in.mu.Unlock() })
	for in.inflight > 0 && time.Now().Before(deadline) {
		in.idle.Wait()
	}
	t.Stop()
	in.mu.Unlock()
}

func (in *injector) resume() { in.mu.Lock(); in.paused = false; in.mu.Unlock() }

func (in *injector) outcomes() map[string]Outcome {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := map[string]Outcome{}
	for k, o := range in.out {
		c := *o
		c.Codes = map[string]uint64{}
		for code, n := range o.Codes {
			c.Codes[code] = n
		}
		m[k] = c
	}
	return m
}

func (in *injector) run(ctx context.Context) {
	iv := time.Duration(float64(time.Second) / in.rate)
	t := time.NewTicker(iv)
	defer t.Stop()
	i := 0
	for {
		select {
		case <-ctx.Done():
			in.mu.Lock()
			c := in.conn
			in.mu.Unlock()
			if c != nil {
				c.Close()
			}
			return
		case <-t.C:
		}
		in.mu.Lock()
		paused := in.paused
		in.mu.Unlock()
		if paused {
			continue
		}
		if in.valid == nil {
			in.send(ctx, "valid", in.topic(), in.reading(0, nil))
			continue
		}
		kind := hostileKinds[i%len(hostileKinds)]
		i++
		topic, payload := in.payload(kind)
		in.send(ctx, kind, topic, payload)
	}
}

func (in *injector) topic() string { return telemetry.Topic(in.cred.ID, telemetry.ChannelTelemetry) }

// reading encodes one reading of the injector's own device, ts offset from
// now, passed through edit.
func (in *injector) reading(ahead time.Duration, edit func(*telemetry.Telemetry)) []byte {
	in.mu.Lock()
	in.seq++
	seq := in.seq
	in.mu.Unlock()
	t := telemetry.Telemetry{Seq: seq, ClockSynced: true, State: telemetry.StateHeartbeat, Reading: power.Reading{
		Time: time.Now().Add(ahead).UTC(), Voltage: 229.8, Current: 0.42, Power: 61.5, Frequency: 50, PF: 0.64,
		Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency | power.FieldPF,
	}}
	if edit != nil {
		edit(&t)
	}
	m := telemetry.Message{Epoch: "hostile0", Readings: []telemetry.Telemetry{t}}
	return m.Marshal()
}

func (in *injector) payload(kind string) (string, []byte) {
	switch kind {
	case KindFuzzedJSON:
		p := in.reading(0, nil)
		for range 1 + in.rng.IntN(4) {
			switch j := in.rng.IntN(len(p)); in.rng.IntN(3) {
			case 0:
				p[j] = byte(in.rng.IntN(256))
			case 1:
				p = p[:j]
			default:
				k := in.rng.IntN(5)
				p = append(p[:j:j], append([]byte(`{"[,:`[k:k+1]), p[j:]...)...)
			}
			if len(p) == 0 {
				p = []byte{'{'}
			}
		}
		return in.topic(), p
	case KindOversized:
		p := in.reading(0, nil)
		return in.topic(), append(p[:len(p)-1], fmt.Sprintf(`,"pad":"%s"}`, strings.Repeat("x", 200<<10))...)
	case KindNaNInf:
		p := in.reading(0, nil)
		if in.rng.IntN(2) == 0 {
			return in.topic(), bytes.Replace(p, []byte(`"power":61.5`), []byte(`"power":1e999`), 1)
		}
		return in.topic(), bytes.Replace(p, []byte(`"voltage":229.8`), []byte(`"voltage":NaN`), 1)
	case KindWrongType:
		return in.topic(), bytes.Replace(in.reading(0, nil), []byte(`"power":61.5`), []byte(`"power":"high"`), 1)
	case KindNegative:
		return in.topic(), in.reading(0, func(t *telemetry.Telemetry) { t.Reading.Power = -40 })
	case KindFarFuture:
		return in.topic(), in.reading(24*time.Hour, nil)
	case KindReplayed:
		in.mu.Lock()
		defer in.mu.Unlock()
		return in.topic(), in.valid
	case KindOtherDevice:
		return telemetry.Topic(in.victim, telemetry.ChannelTelemetry), in.reading(0, nil)
	case KindBatchTooBig:
		m := telemetry.Message{Epoch: "hostile0", Batch: true}
		now := time.Now().UTC()
		for i := range 300 {
			m.Readings = append(m.Readings, telemetry.Telemetry{Seq: 1_000_000 + uint64(i), State: telemetry.StateHeartbeat,
				Reading: power.Reading{Time: now.Add(time.Duration(i) * time.Millisecond), Power: 1, Has: power.FieldPower}})
		}
		return in.topic(), m.Marshal()
	case KindNotJSON:
		return in.topic(), []byte("voltage=229.8 power=61.5")
	case KindMissingField:
		return in.topic(), bytes.Replace(in.reading(0, nil), []byte(`"ts":`), []byte(`"tz":`), 1)
	}
	panic("bench: unknown hostile kind " + kind)
}

func (in *injector) send(ctx context.Context, kind, topic string, payload []byte) {
	in.mu.Lock()
	c := in.conn
	in.mu.Unlock()
	if c == nil || c.Err() != nil {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		nc, err := leanmqtt.Dial(dctx, leanmqtt.Options{Addr: in.broker, ClientID: in.cred.ID, Username: in.cred.ID,
			Password: in.cred.Token, CleanStart: true, Window: 64, KeepAlive: 300})
		cancel()
		if err != nil {
			return // the server is down: try again on the next tick
		}
		in.mu.Lock()
		in.conn, c = nc, nc
		in.mu.Unlock()
	}
	in.mu.Lock()
	o := in.out[kind]
	if o == nil {
		o = &Outcome{Codes: map[string]uint64{}}
		in.out[kind] = o
	}
	in.inflight++
	in.mu.Unlock()
	sent := payload
	err := c.Publish(ctx, topic, payload, func(a leanmqtt.Ack) {
		in.mu.Lock()
		defer in.mu.Unlock()
		in.inflight--
		in.idle.Broadcast()
		o.Sent++
		code := "no_puback"
		if a.Err == nil {
			code = fmt.Sprintf("0x%02x", a.Reason)
			if want, ok := expectedCode[kind]; ok && a.Reason != want {
				o.Unexpected++
			}
			if kind == "valid" && a.Reason == 0 {
				in.valid = sent
			}
		}
		o.Codes[code]++
	})
	if err != nil {
		in.mu.Lock()
		in.inflight--
		in.idle.Broadcast()
		in.mu.Unlock()
	}
}
