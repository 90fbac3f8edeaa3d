package telemetry

import "testing"

func TestTopics(t *testing.T) {
	good := []struct {
		topic, device string
		ch            Channel
	}{
		{"loadwatch/v1/pi-7/telemetry", "pi-7", ChannelTelemetry},
		{"loadwatch/v1/pi-7.3/event", "pi-7.3", ChannelEvent},
		{"loadwatch/v1/Kitchen_2.247/status", "Kitchen_2.247", ChannelStatus},
		{"loadwatch/v1/a/cmd", "a", ChannelCmd},
		{"loadwatch/v1/a.1/cmd/ack", "a.1", ChannelCmdAck},
	}
	for _, g := range good {
		dev, ch, err := ParseTopic(g.topic)
		if err != nil || dev != g.device || ch != g.ch {
			t.Errorf("%s: %q %q %v", g.topic, dev, ch, err)
		}
		if Topic(dev, ch) != g.topic {
			t.Errorf("Topic(%q,%q) = %q", dev, ch, Topic(dev, ch))
		}
	}
	bad := map[string]Reason{
		"loadwatch/v2/a/telemetry":      ReasonBadTopic,
		"loadwatch/v1/a":                ReasonBadTopic,
		"loadwatch/v1/a/telemetry/x":    ReasonBadTopic,
		"loadwatch/v1/+/telemetry":      ReasonBadDeviceID,
		"loadwatch/v1/#/telemetry":      ReasonBadDeviceID,
		"loadwatch/v1//telemetry":       ReasonBadDeviceID,
		"loadwatch/v1/a.0/telemetry":    ReasonBadDeviceID,
		"loadwatch/v1/a.248/telemetry":  ReasonBadDeviceID,
		"loadwatch/v1/a.01/telemetry":   ReasonBadDeviceID,
		"loadwatch/v1/a.b.1/telemetry":  ReasonBadDeviceID,
		"loadwatch/v1/-a/telemetry":     ReasonBadDeviceID,
		"loadwatch/v1/$SYS/telemetry":   ReasonBadDeviceID,
		"loadwatch/v1/caf\u00e9/status": ReasonBadDeviceID,
	}
	for topic, reason := range bad {
		if _, _, err := ParseTopic(topic); ReasonOf(err) != reason {
			t.Errorf("%s: %v, want %s", topic, err, reason)
		}
	}
	long := make([]byte, MaxAgentIDLen+1)
	for i := range long {
		long[i] = 'a'
	}
	if ValidateAgentID(string(long)) == nil || ValidateAgentID(string(long[1:])) != nil {
		t.Error("length limit")
	}
	agent, addr, has, err := SplitDevice("pi-7.12")
	if agent != "pi-7" || addr != 12 || !has || err != nil {
		t.Errorf("SplitDevice: %q %d %v %v", agent, addr, has, err)
	}
	if DeviceID("pi", 3, false) != "pi.3" || DeviceID("pi", 3, true) != "pi" {
		t.Error("DeviceID")
	}
	if !Owns("pi", "pi.3") || !Owns("pi", "pi") || Owns("pi", "pix.3") || Owns("pi", "other") || Owns("pi", "pi.0") {
		t.Error("Owns")
	}
	if dev, ok := TasmotaSensorTopic("tele/plug_1/SENSOR"); !ok || dev != "plug_1" {
		t.Error("tasmota")
	}
	for _, s := range []string{"tele/SENSOR", "tele//SENSOR", "stat/plug/SENSOR", "tele/a/b/SENSOR", "tele/plug/STATE"} {
		if _, ok := TasmotaSensorTopic(s); ok {
			t.Errorf("%s accepted", s)
		}
	}
}
