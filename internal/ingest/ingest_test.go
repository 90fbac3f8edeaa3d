package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/power"
	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"
)

type memStore struct {
	mu   sync.Mutex
	all  []store.Sample
	fail error
}

func (m *memStore) Append(_ context.Context, b []store.Sample) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.all = append(m.all, b...)
	return nil
}

func (m *memStore) count(metric string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.all {
		if s.Metric == metric {
			n++
		}
	}
	return n
}

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func payload(epoch string, seq uint64, ts time.Time, p string) []byte {
	return fmt.Appendf(nil, `{"v":1,"epoch":%q,"seq":%d,"ts":%q,"clock_synced":true,"voltage":230.1,"current":0.5,"power":%s,"energy":12,"energy_total":1500,"frequency":50,"pf":0.9,"state":"active"}`,
		epoch, seq, ts.Format(telemetry.TimeLayout), p)
}

func TestIngestRefusalsAndDedupe(t *testing.T) {
	st := &memStore{}
	bus := NewBus(10)
	p, err := New(Config{Store: st, Notifier: bus, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	topic := telemetry.Topic("dev1", telemetry.ChannelTelemetry)
	cases := []struct {
		name    string
		payload []byte
		code    byte
		reason  string
	}{
		{"valid", payload("e1", 1, t0, "100"), CodeOK, ""},
		{"replay", payload("e1", 1, t0, "100"), CodeOK, ReasonDuplicate},
		{"malformed", []byte(`{"v":1,`), CodePayloadFormat, string(telemetry.ReasonMalformedJSON)},
		{"negative power", payload("e1", 2, t0, "-5"), CodePayloadFormat, string(telemetry.ReasonNegativePower)},
		{"future", payload("e1", 3, t0.Add(time.Hour), "5"), CodePayloadFormat, string(telemetry.ReasonFutureTimestamp)},
		{"oversized", []byte(`{"v":1,"x":"` + strings.Repeat("a", 200<<10) + `"}`), CodePayloadFormat, string(telemetry.ReasonTooLarge)},
		{"next valid", payload("e1", 4, t0.Add(time.Second), "120"), CodeOK, ""},
	}
	for _, c := range cases {
		before := p.Rejected()
		code, err := p.Ingest(ctx, "dev1", topic, c.payload)
		if code != c.code {
			t.Fatalf("%s: code 0x%02x (%v), want 0x%02x", c.name, code, err, c.code)
		}
		after := p.Rejected()
		if c.reason != "" && after[RejectKey{"dev1", c.reason}] != before[RejectKey{"dev1", c.reason}]+1 {
			t.Errorf("%s: reason %q not counted: %v", c.name, c.reason, after)
		}
		var re *RefusedError
		if c.code != CodeOK && (!errors.As(err, &re) || re.Reason != c.reason) {
			t.Errorf("%s: error %v, want reason %s", c.name, err, c.reason)
		}
	}
	if n := st.count(store.MetricPower); n != 2 {
		t.Errorf("stored %d power samples, want 2", n)
	}
	d, ok := p.Device("dev1")
	if !ok || d.Seq != 4 || float64(d.Reading.Power) != 120 || !d.HasEnergy {
		t.Errorf("device state %+v", d)
	}
}

func TestIngestStoreFailureIsRetryable(t *testing.T) {
	st := &memStore{fail: errors.New("disk full")}
	p, _ := New(Config{Store: st, Now: func() time.Time { return t0 }})
	topic := telemetry.Topic("dev1", telemetry.ChannelTelemetry)
	code, _ := p.Ingest(context.Background(), "dev1", topic, payload("e", 1, t0, "1"))
	if code != CodeUnspecified {
		t.Fatalf("code 0x%02x, want 0x80", code)
	}
	st.fail = nil
	// Not remembered as stored: the retry is stored.
	if code, err := p.Ingest(context.Background(), "dev1", topic, payload("e", 1, t0, "1")); code != 0 || err != nil {
		t.Fatalf("retry: 0x%02x %v", code, err)
	}
	if n := st.count(store.MetricPower); n != 1 {
		t.Fatalf("stored %d, want 1", n)
	}
}

func TestIngestQuotaIsPerDevice(t *testing.T) {
	st := &memStore{}
	p, _ := New(Config{Store: st, Now: func() time.Time { return t0 }, DeviceRate: 1, DeviceBurst: 2})
	ctx := context.Background()
	var codes []byte
	for i := range 3 {
		c, _ := p.Ingest(ctx, "a", telemetry.Topic("a", telemetry.ChannelTelemetry), payload("e", uint64(i+1), t0, "1"))
		codes = append(codes, c)
	}
	if codes[2] != CodeQuotaExceeded || codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("codes %v", codes)
	}
	if c, err := p.Ingest(ctx, "b", telemetry.Topic("b", telemetry.ChannelTelemetry), payload("e", 1, t0, "1")); c != 0 {
		t.Fatalf("other device refused: %v", err)
	}
}

func TestTasmota(t *testing.T) {
	st := &memStore{}
	loc := time.FixedZone("CET", 3600)
	p, _ := New(Config{Store: st, Now: func() time.Time { return t0 }, Tasmota: func(_ context.Context, topic string) (string, *time.Location, error) {
		if topic == "plug1" {
			return "kitchen", loc, nil
		}
		return "", nil, errors.New("unknown")
	}})
	ctx := context.Background()
	msg := `{"Time":"2026-11-29T13:00:00","ENERGY":{"Total":1.5,"Power":45,"Voltage":231,"Current":0.2,"Factor":0.9}}`
	if c, err := p.Ingest(ctx, "plug1", "tele/plug1/SENSOR", []byte(msg)); c != 0 {
		t.Fatal(err)
	}
	d, _ := p.Device("kitchen")
	if !d.Reading.Time.Equal(t0) || !d.HasEnergy || d.Energy != 1500 {
		t.Fatalf("tasmota reading %+v", d)
	}
	if c, _ := p.Ingest(ctx, "x", "tele/other/SENSOR", []byte(msg)); c != CodeNotAuthorized {
		t.Fatalf("unknown topic code 0x%02x", c)
	}
}

func TestStateAt(t *testing.T) {
	d := Device{LastSeen: t0}
	if s := d.StateAt(t0.Add(10*time.Second), 30*time.Second, 15*time.Minute); s != StateOnline {
		t.Error(s)
	}
	if s := d.StateAt(t0.Add(time.Minute), 30*time.Second, 15*time.Minute); s != StateAsleep {
		t.Error(s)
	}
	if s := d.StateAt(t0.Add(time.Hour), 30*time.Second, 15*time.Minute); s != StateOffline {
		t.Error(s)
	}
	d.Status, d.StatusAt = telemetry.StatusOffline, t0
	if s := d.StateAt(t0, 30*time.Second, 15*time.Minute); s != StateOffline {
		t.Error(s)
	}
}

// TestBatchPartlyReplayed: a batch replayed by an outbox after a lost
// PUBACK stores only the readings not stored yet.
func TestBatchPartlyReplayed(t *testing.T) {
	st := &memStore{}
	p, _ := New(Config{Store: st, Now: func() time.Time { return t0.Add(time.Hour) }})
	topic := telemetry.Topic("d", telemetry.ChannelTelemetry)
	batch := func(seqs ...uint64) []byte {
		m := telemetry.Message{Epoch: "e", Batch: true}
		for _, s := range seqs {
			m.Readings = append(m.Readings, telemetry.Telemetry{Seq: s, State: telemetry.StateHeartbeat,
				Reading: power.Reading{Time: t0.Add(time.Duration(s) * time.Second), Power: power.Watts(s), Has: power.FieldPower}})
		}
		return m.Marshal()
	}
	for _, b := range [][]byte{batch(1, 2, 3), batch(2, 3, 4, 5)} {
		if c, err := p.Ingest(context.Background(), "d", topic, b); c != 0 {
			t.Fatal(err)
		}
	}
	if n := st.count(store.MetricPower); n != 5 {
		t.Errorf("stored %d power samples, want 5", n)
	}
	if s := p.Stats(); s.Duplicates != 2 || s.Readings != 5 {
		t.Errorf("stats %+v", s)
	}
	if d, _ := p.Device("d"); d.Seq != 5 || d.HasSkew {
		t.Errorf("device %+v (a batch is not live: no skew)", d)
	}
}

// TestClockSkewEvent: a device clock ahead of receive time raises one
// clock_skew event.
func TestClockSkewEvent(t *testing.T) {
	st := &memStore{}
	bus := NewBus(10)
	p, _ := New(Config{Store: st, Notifier: bus, Now: func() time.Time { return t0 }})
	topic := telemetry.Topic("d", telemetry.ChannelTelemetry)
	for i := uint64(1); i <= 3; i++ {
		if c, err := p.Ingest(context.Background(), "d", topic, payload("e", i, t0.Add(time.Minute), "5")); c != 0 {
			t.Fatal(err)
		}
	}
	evs := bus.Recent(func(e Event) bool { return e.Kind == KindClockSkew }, 0)
	if len(evs) != 1 {
		t.Fatalf("clock_skew events %+v, want one", evs)
	}
	if d, _ := p.Device("d"); !d.HasSkew || d.ClockSkew != time.Minute {
		t.Errorf("skew %v", d.ClockSkew)
	}
}
