package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/api"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/power"
	"loadwatch/internal/telemetry"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func readingAt(ts time.Time, p float64) power.Reading {
	return power.Reading{Time: ts, Voltage: 230.5, Current: power.Amperes(p / 230.5), Power: power.Watts(p), Frequency: 50, PF: 0.95,
		Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency | power.FieldPF}
}

func powerWh(seq uint64) power.WattHours { return power.WattHours(seq) }

// TestEmbeddedEndToEnd: devices publish over the embedded broker; bad
// credentials, foreign topics and bad payloads are refused with the right
// MQTT 5 reason code and counted, while another device's valid traffic is
// stored untouched; the HTTP API shows devices, events, metrics and
// delivers a command and its ack.
func TestEmbeddedEndToEnd(t *testing.T) {
	s := start(t, Config{})
	mq, web := s.MQTTAddr(), s.HTTPAddr()
	tok1, tok2 := addDevice(t, s, "dev1"), addDevice(t, s, "dev2")

	// A wrong password is refused at CONNECT.
	_, err := mqttc.Dial(context.Background(), mqttc.Config{Broker: "mqtt://" + mq, ClientID: "dev1", Password: "wrong", ConnectTimeout: 5 * time.Second})
	var ce *mqttc.ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("wrong password: %v, want a refused CONNACK", err)
	}

	events, stopSSE := sseEvents(t, "http://"+web+"/api/v1/events/stream?device=dev2&type=reading")
	defer stopSSE()

	// dev2 sends valid readings all along.
	const good = 40
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	c2 := dial(t, mq, "dev2", tok2, nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); i <= good; i++ {
			if code, err := publishE(c2, telemetry.Topic("dev2", telemetry.ChannelTelemetry), reading("boot2", i, base.Add(time.Duration(i)*time.Second))); code != 0 || err != nil {
				t.Errorf("dev2 reading %d refused: 0x%02x %v", i, code, err)
			}
		}
	}()

	// dev1's command subscription answers commands.
	var c1 *mqttc.Conn
	c1 = dial(t, mq, "dev1", tok1, func(m mqttc.Message) {
		cmd, err := telemetry.DecodeCommand(m.Payload, telemetry.Limits{})
		if err != nil {
			t.Errorf("command: %v", err)
			return
		}
		ack := telemetry.CommandAck{ID: cmd.ID, OK: true, State: "open"}
		go publishE(c1, telemetry.Topic("dev1", telemetry.ChannelCmdAck), ack.AppendJSON(nil))
	}, telemetry.Topic("dev1", telemetry.ChannelCmd))
	topic1 := telemetry.Topic("dev1", telemetry.ChannelTelemetry)
	now := time.Now().Add(-2 * time.Second)
	valid := reading("boot1", 1, now)
	cases := []struct {
		name    string
		topic   string
		payload []byte
		code    byte
		reason  string
	}{
		{"valid", topic1, valid, 0, ""},
		{"replayed", topic1, valid, 0, "duplicate"},
		{"another device's id", telemetry.Topic("dev2", telemetry.ChannelTelemetry), reading("boot1", 2, now), 0x87, ""},
		{"malformed", topic1, []byte(`{"v":1,"epoch":"boot1","seq":`), 0x99, "malformed_json"},
		{"oversized", topic1, []byte(`{"v":1,"pad":"` + strings.Repeat("x", 130<<10) + `"}`), 0x99, "too_large"},
		{"NaN", topic1, bytes.Replace(reading("boot1", 3, now), []byte(`"power":3`), []byte(`"power":NaN`), 1), 0x99, "nan_or_inf"},
		{"negative power", topic1, bytes.Replace(reading("boot1", 4, now), []byte(`"power":4`), []byte(`"power":-4`), 1), 0x99, "negative_power"},
		{"far future", topic1, reading("boot1", 5, time.Now().Add(24*time.Hour)), 0x99, "future_timestamp"},
		{"next valid", topic1, reading("boot1", 6, now.Add(time.Second)), 0, ""},
	}
	for _, c := range cases {
		if code := publish(t, c1, c.topic, c.payload); code != c.code {
			t.Errorf("%s: reason code 0x%02x, want 0x%02x", c.name, code, c.code)
		}
	}
	wg.Wait()

	// Everything valid is stored exactly once.
	if got := rawPowers(t, web, "dev1"); fmt.Sprint(got) != "[1 6]" {
		t.Errorf("dev1 stored powers %v, want [1 6]", got)
	}
	if got := rawPowers(t, web, "dev2"); len(got) != good {
		t.Errorf("dev2 stored %d readings, want %d", len(got), good)
	}
	// Readings are classified with the default model and stored with it.
	if cls := promQuery(t, web, `last_over_time(loadwatch_class_confidence_ratio{device="dev2"}[1d])`, "class"); len(cls) == 0 {
		t.Error("no class confidence stored for dev2")
	}
	// Rejections are counted per device and reason.
	resp, err := http.Get("http://" + web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, c := range cases {
		if c.reason == "" {
			continue
		}
		want := fmt.Sprintf(`loadwatch_ingest_rejected_total{device="dev1",reason=%q} 1`, c.reason)
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	problems, err := promlint.New(bytes.NewReader(metrics)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "loadwatch_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}

	// Devices.
	var devs []api.DeviceJSON
	getJSON(t, "http://"+web+"/api/v1/devices", &devs)
	byID := map[string]api.DeviceJSON{}
	for _, d := range devs {
		byID[d.ID] = d
	}
	d1 := byID["dev1"]
	if !d1.Online || d1.State != "online" || d1.Power == nil || *d1.Power != 6 || d1.LastSeen == nil || d1.Class == "" || d1.Confidence == nil {
		t.Errorf("dev1 = %+v", d1)
	}
	if _, err := time.Parse(time.RFC3339, *d1.LastSeen); err != nil {
		t.Errorf("last_seen %q: %v", *d1.LastSeen, err)
	}
	if byID["dev2"].Readings != good {
		t.Errorf("dev2 readings %d", byID["dev2"].Readings)
	}

	// The live stream carried dev2's readings.
	select {
	case e := <-events:
		if !strings.Contains(e, `"device":"dev2"`) || !strings.Contains(e, `"type":"reading"`) {
			t.Errorf("SSE event %s", e)
		}
	case <-time.After(5 * time.Second):
		t.Error("no SSE event")
	}

	// A command needs a token, and its ack comes back.
	body := `{"kind":"relay_off"}`
	resp, err = http.Post("http://"+web+"/api/v1/devices/dev1/commands", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("command without token: %s", resp.Status)
	}
	token, err := ReadAPIToken(s.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+web+"/api/v1/devices/dev1/commands?wait=10s", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var cj api.CommandJSON
	json.NewDecoder(resp.Body).Decode(&cj)
	resp.Body.Close()
	if resp.StatusCode != 200 || cj.Status != api.CommandDone || cj.State != "open" {
		t.Errorf("command: %s %+v", resp.Status, cj)
	}
}
