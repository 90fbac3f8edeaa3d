package webtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/api"
	"loadwatch/internal/broker"
	"loadwatch/internal/classify"
	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/ingest"
	"loadwatch/internal/power"
	"loadwatch/internal/promapi"
	"loadwatch/internal/readingscsv"
	"loadwatch/internal/registry"
	"loadwatch/internal/server"
	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"
	"loadwatch/internal/web"

	"github.com/eclipse/paho.golang/paho"
)

// env is a running server with simulated devices.
type env struct {
	URL       string
	AdminPass string
	Dir       string
	Reg       *registry.Registry
	Store     *store.Store
	Pipe      *ingest.Pipeline
	Bus       *ingest.Bus
	Holder    *classify.Holder
	Relays    *web.RelayTracker
	Broker    *broker.Broker
	Extra     http.Handler // set before start: mounted by opts
	devices   []*simDevice
}

// holderModel adapts the classify holder to ingest.Classifier.
type holderModel struct{ h *classify.Holder }

func (m holderModel) Model() *forest.Model {
	if l := m.h.Current(); l != nil {
		return l.Model
	}
	return nil
}

type pubFunc func(topic string, payload []byte, retain bool, qos byte) error

func (f pubFunc) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return f(topic, payload, retain, qos)
}

// levels are the simulated appliance levels (class, watts), far apart so
// that the small bundled model separates them.
var levels = []struct {
	class string
	watts float64
}{{"nothing", 1}, {"laptop", 40}, {"iron", 1500}}

var t0 = time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)

// bundledRows is the labelled training stream of the bundled model.
func bundledRows() []readingscsv.Row {
	var rows []readingscsv.Row
	sec := 0
	for rep := 0; rep < 2; rep++ {
		for _, l := range levels {
			for j := 0; j < 40; j++ {
				p := l.watts + float64(j%5)*0.3
				rows = append(rows, readingscsv.Row{Device: "d1", Label: l.class, Line: len(rows) + 2,
					Reading: reading(t0.Add(time.Duration(sec)*time.Second), p)})
				sec += 2
			}
		}
	}
	return rows
}

func reading(ts time.Time, p float64) power.Reading {
	return power.Reading{Time: ts, Power: power.Watts(p), Voltage: 230, Current: power.Amperes(p / 230), PF: 0.95, Frequency: 50,
		Has: power.FieldPower | power.FieldVoltage | power.FieldCurrent | power.FieldPF | power.FieldFrequency}
}

func bundledModel(t testing.TB) *forest.Model {
	t.Helper()
	d, err := classify.BuildDataset(features.SetLW1, features.Config{}, bundledRows())
	if err != nil {
		t.Fatal(err)
	}
	cfg := forest.DefaultConfig()
	cfg.Trees = 10
	cfg.Seed = 1
	f, err := forest.Train(context.Background(), d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &forest.Model{FormatVersion: forest.FormatVersion, Kind: forest.KindLoadwatch, FeatureSet: features.SetLW1,
		Features: d.Features, Classes: d.Classes, DataHash: forest.HashDataset(d), TrainedAt: t0, Config: cfg, Forest: f}
}

type envOpts struct {
	openReads bool
	devices   []string // live simulated devices
	idle      int      // further registered devices with one reading each
	backfill  time.Duration
	labels    bool // labelling and retraining
	alerts    http.Handler
	now       func() time.Time
}

// start runs the whole server on 127.0.0.1 with ephemeral ports; it is
// stopped when the test ends.
func start(t testing.TB, o envOpts) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	reg, err := registry.Open(ctx, registry.Path(dir), &registry.Options{PasswordIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	cred, _, err := reg.EnsureAdmin(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	_, adminPass, err := registry.ReadAdminFile(cred.File)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "tsdb"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	holder := classify.NewHolder(nil)
	if err := holder.Set(bundledModel(t), "bundled"); err != nil {
		t.Fatal(err)
	}
	e := &env{AdminPass: adminPass, Dir: dir, Reg: reg, Store: st, Holder: holder, Bus: ingest.NewBus(0), Relays: web.NewRelayTracker()}
	var br *broker.Broker
	cmds := api.NewCommands(pubFunc(func(topic string, payload []byte, retain bool, qos byte) error {
		return br.Publish(topic, payload, retain, qos)
	}), nil)
	e.Pipe, err = ingest.New(ingest.Config{Store: st, Classifier: holderModel{holder}, Notifier: ingest.Notifiers{e.Bus, cmds, e.Relays}, Tasmota: reg.TasmotaDevice, Now: o.now})
	if err != nil {
		t.Fatal(err)
	}
	br, err = broker.New(broker.Config{TCPAddr: "127.0.0.1:0"}, reg, e.Pipe)
	if err != nil {
		t.Fatal(err)
	}
	e.Broker = br
	done := make(chan struct{})
	go func() { defer close(done); br.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-br.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("broker not ready")
	}
	prom := promapi.New(st, promapi.Options{Now: o.now})
	parts := web.Parts{Devices: e.Pipe, Registry: reg, Bus: e.Bus, Query: prom, Commands: cmds, Relays: e.Relays, Store: st,
		DataDir: dir, Tariff: "0.30 EUR; 22:00-06:00 0.18", TariffZone: "UTC", OpenReads: o.openReads, Alerts: o.alerts, Now: o.now,
		Bundled: func(context.Context) ([]readingscsv.Row, error) { return bundledRows(), nil }}
	if o.labels {
		parts.Holder = holder
	}
	dash, err := web.Assemble(ctx, parts)
	if err != nil {
		t.Fatal(err)
	}
	full, err := api.New(api.Config{Devices: e.Pipe, Registry: reg, Tokens: reg, Bus: e.Bus, Commands: cmds, Query: prom,
		Dashboard: dash, Metrics: api.NewRegistry(e.Pipe, e.Bus, nil), Now: o.now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(full)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	e.URL = "http://localhost:" + port

	// Idle devices: registered, one reading each, straight into ingest.
	for i := 0; i < o.idle; i++ {
		id := fmt.Sprintf("idle%03d", i)
		if _, _, err := reg.Add(ctx, registry.NewDevice{ID: id}); err != nil {
			t.Fatal(err)
		}
		m := telemetry.Message{Epoch: "e" + id, Readings: []telemetry.Telemetry{{Seq: 1, ClockSynced: true, Reading: reading(time.Now(), float64(i)), State: telemetry.StateHeartbeat}}}
		if code, err := e.Pipe.Ingest(ctx, id, telemetry.Topic(id, telemetry.ChannelTelemetry), m.AppendJSON(nil)); code != 0 {
			t.Fatalf("ingest idle %s: 0x%02x %v", id, code, err)
		}
	}
	for _, id := range o.devices {
		_, tok, err := reg.Add(ctx, registry.NewDevice{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		d := newSimDevice(t, br.Addr("tcp"), id, tok)
		if o.backfill > 0 {
			d.backfill(t, o.backfill)
		}
		e.devices = append(e.devices, d)
		go d.run(ctx)
	}
	return e
}

// simDevice is a simulated agent over MQTT: it reports a reading every
// 200 ms, cycling through the appliance levels every 6 s, sends a grid
// surge event now and then, and obeys relay commands with an ack (an open
// relay reports the meter's 0 W).
type simDevice struct {
	id    string
	c     *paho.Client
	mu    sync.Mutex
	seq   uint64
	relay string // closed or open
	wh    float64
	cmds  chan *paho.Publish
}

func newSimDevice(t testing.TB, addr, id, token string) *simDevice {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	d := &simDevice{id: id, relay: "closed", cmds: make(chan *paho.Publish, 16)}
	d.c = paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			select {
			case d.cmds <- pr.Packet:
			default:
			}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.Connect(ctx, &paho.Connect{ClientID: id, Username: id, UsernameFlag: true, Password: []byte(token), PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	if _, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: telemetry.Topic(id, telemetry.ChannelCmd), QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", id, err)
	}
	// The status carries meter link counters as an agent over a noisy
	// serial line would (5 CRC errors, 3 timeouts, 1 short frame in 480
	// requests: 1.9 %, above the page's 1 % warning).
	st := telemetry.Status{State: telemetry.StatusOnline, Firmware: "1.2.3", Link: map[uint8]telemetry.LinkCounters{1: {
		Requests: 480, Replies: 471, CRCErrors: 5, Timeouts: 3, ShortFrames: 1, Resyncs: 2, Retries: 9, LastLatency: 118 * time.Millisecond}}}
	if _, err := d.c.Publish(ctx, &paho.Publish{Topic: telemetry.Topic(id, telemetry.ChannelStatus), QoS: 1, Retain: true, Payload: st.AppendJSON(nil)}); err != nil {
		t.Fatalf("status %s: %v", id, err)
	}
	return d
}

func levelAt(ts time.Time) (string, float64) {
	l := levels[(ts.Unix()/6)%int64(len(levels))]
	return l.class, l.watts + float64(ts.UnixMilli()%500)/500
}

func (d *simDevice) next(ts time.Time, state telemetry.State) telemetry.Telemetry {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, p := levelAt(ts)
	if d.relay != "closed" {
		p = 0
	}
	d.seq++
	d.wh += p * 0.2 / 3600
	r := reading(ts, p)
	r.Energy, r.Has = power.WattHours(d.wh), r.Has|power.FieldEnergy
	return telemetry.Telemetry{Seq: d.seq, ClockSynced: true, Reading: r, EnergyTotal: power.WattHours(d.wh), HasEnergyTotal: true, State: state}
}

// backfill stores span of history, one reading every 10 s, in batches.
func (d *simDevice) backfill(t testing.TB, span time.Duration) {
	t.Helper()
	start := time.Now().Add(-span).Truncate(time.Second)
	var batch []telemetry.Telemetry
	flush := func() {
		if len(batch) == 0 {
			return
		}
		m := telemetry.Message{Epoch: "boot1", Batch: true, Readings: batch}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pr, err := d.c.Publish(ctx, &paho.Publish{Topic: telemetry.Topic(d.id, telemetry.ChannelTelemetry), QoS: 1, Payload: m.AppendJSON(nil)})
		if err != nil || pr == nil || pr.ReasonCode != 0 {
			t.Fatalf("backfill %s: %v %+v", d.id, err, pr)
		}
		batch = nil
	}
	for ts := start; ts.Before(time.Now().Add(-2 * time.Second)); ts = ts.Add(10 * time.Second) {
		tm := d.next(ts, telemetry.StateHeartbeat)
		d.mu.Lock()
		d.wh += float64(tm.Reading.Power) * 10 / 3600 // 10 s at this power
		d.mu.Unlock()
		batch = append(batch, tm)
		if len(batch) == 30 {
			flush()
		}
	}
	flush()
}

func (d *simDevice) run(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-d.cmds:
			d.handle(ctx, p)
		case <-tick.C:
			n++
			m := telemetry.Message{Epoch: "boot1", Readings: []telemetry.Telemetry{d.next(time.Now(), telemetry.StateActive)}}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			d.c.Publish(pctx, &paho.Publish{Topic: telemetry.Topic(d.id, telemetry.ChannelTelemetry), QoS: 1, Payload: m.AppendJSON(nil)})
			if n%25 == 5 {
				ev := telemetry.Event{Kind: telemetry.EventGridSurge, Time: time.Now(), ClockSynced: true, Detail: "V 230.0 -> 246.5 with P flat"}
				d.c.Publish(pctx, &paho.Publish{Topic: telemetry.Topic(d.id, telemetry.ChannelEvent), QoS: 1, Payload: ev.AppendJSON(nil)})
			}
			cancel()
		}
	}
}

func (d *simDevice) handle(ctx context.Context, p *paho.Publish) {
	c, err := telemetry.DecodeCommand(p.Payload, telemetry.Limits{})
	if err != nil {
		return
	}
	ack := telemetry.CommandAck{ID: c.ID, OK: true}
	d.mu.Lock()
	switch c.Kind {
	case telemetry.CmdRelayOff:
		d.relay = "open"
	case telemetry.CmdRelayOn, telemetry.CmdRelayReset:
		d.relay = "closed"
	}
	ack.State = d.relay
	d.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d.c.Publish(pctx, &paho.Publish{Topic: telemetry.Topic(d.id, telemetry.ChannelCmdAck), QoS: 1, Payload: ack.AppendJSON(nil)})
}

func (d *simDevice) relayState() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.relay
}

// startServer runs the real server assembly (internal/server, as `loadwatch
// serve` does) with the dashboard mounted through its DashboardFunc and the
// relay tracker among its Notifiers, and simulated devices over MQTT.
func startServer(t testing.TB, o envOpts) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	if err := server.WriteModel(filepath.Join(dir, server.ModelFile), bundledModel(t)); err != nil {
		t.Fatal(err)
	}
	e := &env{Dir: dir, Relays: web.NewRelayTracker()}
	srv, err := server.New(server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), Out: io.Discard, Now: o.now,
		Notifiers: []ingest.Notifier{e.Relays},
		DashboardFunc: func(ctx context.Context, p server.Parts) (http.Handler, error) {
			e.Holder = p.Holder
			wp := web.Parts{Devices: p.Pipeline, Registry: p.Registry, Bus: p.Bus, Query: p.Query, OTA: p.OTA, Commands: p.Commands,
				Relays: e.Relays, Store: p.Store, DataDir: p.DataDir, Tariff: "0.30 EUR; 22:00-06:00 0.18", TariffZone: "UTC",
				OpenReads: o.openReads, Alerts: o.alerts, Now: p.Now, Log: p.Log,
				Bundled: func(context.Context) ([]readingscsv.Row, error) { return bundledRows(), nil }}
			if o.labels {
				wp.Holder = p.Holder
			}
			return web.Assemble(ctx, wp)
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("server: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server not ready")
	}
	_, pass, err := registry.ReadAdminFile(srv.AdminCredentialFile())
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(srv.HTTPAddr())
	e.URL, e.AdminPass, e.Reg, e.Store, e.Pipe, e.Bus = "http://localhost:"+port, pass, srv.Registry(), srv.Store(), srv.Pipeline(), srv.Bus()
	for i := 0; i < o.idle; i++ {
		id := fmt.Sprintf("idle%03d", i)
		if _, _, err := e.Reg.Add(ctx, registry.NewDevice{ID: id}); err != nil {
			t.Fatal(err)
		}
		m := telemetry.Message{Epoch: "e" + id, Readings: []telemetry.Telemetry{{Seq: 1, ClockSynced: true, Reading: reading(time.Now(), float64(i)), State: telemetry.StateHeartbeat}}}
		if code, err := e.Pipe.Ingest(ctx, id, telemetry.Topic(id, telemetry.ChannelTelemetry), m.AppendJSON(nil)); code != 0 {
			t.Fatalf("ingest idle %s: 0x%02x %v", id, code, err)
		}
	}
	for _, id := range o.devices {
		_, tok, err := e.Reg.Add(ctx, registry.NewDevice{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		d := newSimDevice(t, srv.MQTTAddr(), id, tok)
		if o.backfill > 0 {
			d.backfill(t, o.backfill)
		}
		e.devices = append(e.devices, d)
		go d.run(ctx)
	}
	return e
}
