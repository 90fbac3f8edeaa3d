package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/agent"
	"loadwatch/internal/api"
	"loadwatch/internal/dutycycle"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/mqttc/agentmqtt"
	"loadwatch/internal/power"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"
)

// stepSensor is a meter whose load changes at every read, so that the
// agent reports often.
type stepSensor struct {
	mu sync.Mutex
	n  int
	e  power.WattHours
}

func (s *stepSensor) Read(context.Context, uint8) (power.Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	p := power.Watts(40 + 25*(s.n%6))
	s.e += power.WattHours(float64(p) / 3600)
	return power.Reading{Time: time.Now(), Voltage: 229.8, Current: power.Amperes(float64(p) / 229.8 / 0.9), Power: p,
		Energy: s.e, Frequency: 50, PF: 0.9, Has: power.AllMeterFields &^ power.FieldAlarm}, nil
}

// TestAgentEndToEnd: the real agent loop reports over the embedded broker;
// every reading the agent saw acknowledged is stored, classified with the
// agent's own features, and the device is listed online.
func TestAgentEndToEnd(t *testing.T) {
	s := start(t, Config{})
	tok := addDevice(t, s, "edge1")
	a, err := agent.New(agent.Config{
		ID:        "edge1",
		Meters:    []agent.Meter{{Addr: 1}},
		Sensor:    &stepSensor{},
		Dialer:    agentmqtt.Dialer{Base: mqttc.Config{Broker: "mqtt://" + s.MQTTAddr(), ClientID: "edge1", Password: tok, ConnectTimeout: 5 * time.Second}},
		OutboxDir: t.TempDir(),
		Duty:      dutycycle.Config{Wake: 100 * time.Millisecond, ConfirmDelay: 50 * time.Millisecond, AlwaysOn: true},
		Firmware:  "test-1",
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	eventually(t, 20*time.Second, "10 readings from the agent", func() bool {
		d, ok := s.Pipeline().Device("edge1")
		return ok && d.Readings >= 10
	})
	// While the agent runs, it is listed with its latest reading and class.
	var devs []api.DeviceJSON
	getJSON(t, "http://"+s.HTTPAddr()+"/api/v1/devices", &devs)
	listed := false
	for _, dj := range devs {
		if dj.ID == "edge1" {
			listed = true
			if dj.State == "offline" || dj.Power == nil || dj.Class == "" || dj.EnergyJoules == nil || dj.Firmware != "test-1" {
				t.Errorf("edge1 = %+v", dj)
			}
		}
	}
	if !listed {
		t.Errorf("edge1 not listed: %+v", devs)
	}
	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	st := a.Stats()
	d, _ := s.Pipeline().Device("edge1")
	if st.Published == 0 || d.Readings < st.Published {
		t.Errorf("agent saw %d readings acknowledged, server stored %d", st.Published, d.Readings)
	}
	if ps := s.Pipeline().Stats(); ps.AgentFeatures == 0 {
		t.Errorf("no classification used the agent's features: %+v", ps)
	}
}

// TestTasmotaOverBroker: a Tasmota plug registered with its topic and time
// zone reports tele/<topic>/SENSOR; the reading is stored under the device
// with its zone applied, and its kWh total becomes the energy counter.
func TestTasmotaOverBroker(t *testing.T) {
	s := start(t, Config{})
	_, tok, err := s.Registry().Add(context.Background(), registry.NewDevice{ID: "plug", TasmotaTopic: "tasmota_ABC123", TimeZone: "Europe/Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.MQTTAddr(), "plug", tok, nil)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	ts := time.Now().Add(-time.Minute).In(berlin).Truncate(time.Second)
	msg := fmt.Sprintf(`{"Time":%q,"ENERGY":{"TotalStartTime":"2024-01-01T00:00:00","Total":12.5,"Yesterday":0.1,"Today":0.2,"Period":1,"Power":60,"ApparentPower":65,"ReactivePower":20,"Factor":0.92,"Voltage":231,"Current":0.28}}`,
		ts.Format(telemetry.TasmotaLayout))
	if code := publish(t, c, "tele/tasmota_ABC123/SENSOR", []byte(msg)); code != 0 {
		t.Fatalf("tasmota reading refused: 0x%02x", code)
	}
	if code := publish(t, c, "tele/someone_else/SENSOR", []byte(msg)); code != 0x87 {
		t.Errorf("another plug's topic: 0x%02x, want 0x87", code)
	}
	d, ok := s.Pipeline().Device("plug")
	if !ok || !d.Reading.Time.Equal(ts) || d.Energy != 12500 || float64(d.Reading.Power) != 60 {
		t.Fatalf("plug = %+v (want time %v)", d, ts)
	}
	if got := rawPowers(t, s.HTTPAddr(), "plug"); len(got) != 1 || got[0] != 60 {
		t.Errorf("stored %v", got)
	}
}

// TestLastWillMarksOffline: a device that vanishes without a DISCONNECT is
// listed offline once the broker publishes its last will.
func TestLastWillMarksOffline(t *testing.T) {
	s := start(t, Config{})
	tok := addDevice(t, s, "flaky")
	online := telemetry.Status{State: telemetry.StatusOnline, Firmware: "1"}
	will := telemetry.Status{State: telemetry.StatusOffline, Firmware: "1"}
	var conn net.Conn
	c, err := mqttc.Dial(context.Background(), mqttc.Config{Broker: "mqtt://" + s.MQTTAddr(), ClientID: "flaky", Password: tok, CleanStart: true,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			cn, err := d.DialContext(ctx, network, addr)
			conn = cn
			return cn, err
		},
		Will: &mqttc.Message{Topic: telemetry.Topic("flaky", telemetry.ChannelStatus), Payload: will.AppendJSON(nil), QoS: 1, Retain: true}})
	if err != nil {
		t.Fatal(err)
	}
	if code := publish(t, c, telemetry.Topic("flaky", telemetry.ChannelStatus), online.AppendJSON(nil)); code != 0 {
		t.Fatalf("status refused: 0x%02x", code)
	}
	dev := func() api.DeviceJSON {
		var d api.DeviceJSON
		getJSON(t, "http://"+s.HTTPAddr()+"/api/v1/devices/flaky", &d)
		return d
	}
	if d := dev(); d.State != "online" || !d.Online {
		t.Fatalf("before: %+v", d)
	}
	conn.Close() // the network drops: no DISCONNECT, so the broker sends the will
	defer c.Abort()
	t0 := time.Now()
	eventually(t, 15*time.Second, "flaky listed offline", func() bool { d := dev(); return d.State == "offline" && !d.Online })
	t.Logf("offline after %v", time.Since(t0))
}
