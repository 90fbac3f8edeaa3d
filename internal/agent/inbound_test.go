package agent

import (
	"strings"
	"testing"

	"loadwatch/internal/telemetry"
)

func newInboundAgent(t testing.TB) *Agent {
	a, err := New(testConfig(t, &simMeter{}, nil, Meter{Addr: 1}, Meter{Addr: 2}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.closeAll() })
	return a
}

func TestInboundRouting(t *testing.T) {
	a := newInboundAgent(t)
	for _, c := range []struct {
		topic   string
		payload string
		cmd     bool   // handed to the sampling loop
		ackErr  string // an immediate refusal ack ("" none)
	}{
		{"loadwatch/v1/pi1.1/cmd", `{"v":1,"id":"a","kind":"relay_off"}`, true, ""},
		{"loadwatch/v1/pi1/cmd", `{"v":1,"id":"b","kind":"check_ota"}`, true, ""},
		{"loadwatch/v1/pi1.9/cmd", `{"v":1,"id":"c","kind":"relay_off"}`, false, "unknown device pi1.9"},
		{"loadwatch/v1/pi1.1/cmd", `{"v":1,"id":"d","kind":"set_intervals","args":{"wake":"1ms"}}`, false, "args.wake"},
		{"loadwatch/v1/pi1.1/cmd", `not json`, false, ""},
		{"loadwatch/v1/other/cmd", `{"v":1,"id":"e","kind":"relay_off"}`, false, ""},
		{"loadwatch/v1/pi1.1/telemetry", `{}`, false, ""},
	} {
		a.inbound(c.topic, []byte(c.payload))
		gotCmd := len(a.cmds) == 1
		if gotCmd {
			<-a.cmds
		}
		var ackErr string
		if len(a.acks) == 1 {
			k := <-a.acks
			ack, err := telemetry.DecodeCommandAck(k.payload, telemetry.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			ackErr = ack.Error
		}
		if gotCmd != c.cmd || (c.ackErr == "") != (ackErr == "") || (c.ackErr != "" && !strings.Contains(ackErr, c.ackErr)) {
			t.Errorf("%s %s: command %v ack %q; want command %v ack containing %q", c.topic, c.payload, gotCmd, ackErr, c.cmd, c.ackErr)
		}
	}
}

func FuzzInbound(f *testing.F) {
	f.Add("loadwatch/v1/pi1.1/cmd", []byte(`{"v":1,"id":"a","kind":"relay_off"}`))
	f.Add("loadwatch/v1/pi1/cmd", []byte(`{"v":1,"id":"b","kind":"set_thresholds","args":{"max_power_w":5}}`))
	f.Add("loadwatch/v1/pi1.2/cmd", []byte(`{"v":1,"id":"x","kind":"nope"}`))
	a := newInboundAgent(f)
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		a.inbound(topic, payload)
		if len(a.cmds)+len(a.acks) > 1 {
			t.Fatalf("one message produced %d commands and %d acks", len(a.cmds), len(a.acks))
		}
		for len(a.cmds) > 0 {
			<-a.cmds
		}
		for len(a.acks) > 0 {
			<-a.acks
		}
		for len(a.kick) > 0 {
			<-a.kick
		}
	})
}

func BenchmarkInbound(b *testing.B) {
	a := newInboundAgent(b)
	p := []byte(`{"v":1,"id":"a","kind":"set_intervals","args":{"wake":"5s","heartbeat":60}}`)
	for b.Loop() {
		a.inbound("loadwatch/v1/pi1.1/cmd", p)
		<-a.cmds
	}
}
