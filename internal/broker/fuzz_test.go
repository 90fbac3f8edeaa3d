package broker

import (
	"strings"
	"testing"

	"loadwatch/internal/registry"
)

var fuzzDevice = registry.Principal{ID: "pi", Addrs: []int{1}, TasmotaTopic: "tasmota_AB12"}

func TestACLRules(t *testing.T) {
	for _, tc := range []struct {
		topic         string
		publish, read bool
	}{
		{"loadwatch/v1/pi/telemetry", true, false},
		{"loadwatch/v1/pi.1/event", true, false},
		{"loadwatch/v1/pi/cmd/ack", true, true},
		{"loadwatch/v1/pi/cmd", false, true},
		{"loadwatch/v1/pi.1/cmd/#", false, true},
		{"loadwatch/v1/pi.2/telemetry", false, false},
		{"loadwatch/v1/pi.01/telemetry", false, false},
		{"loadwatch/v1/pi", false, false},
		{"loadwatch/v1/pi/", false, false},
		{"loadwatch/v1/pi/#", false, false},
		{"loadwatch/v1/+/telemetry", false, false},
		{"loadwatch/v1/+/cmd", false, false},
		{"loadwatch/v1/other/telemetry", false, false},
		{"loadwatch/v1/pi2/telemetry", false, false},
		{"tele/tasmota_AB12/SENSOR", true, false},
		{"stat/tasmota_AB12/RESULT", true, false},
		{"tele/tasmota_AB12/", false, false},
		{"tele/tasmota_XX/SENSOR", false, false},
		{"cmnd/tasmota_AB12/#", false, true},
		{"cmnd/tasmota_AB12/POWER", false, true},
		{"cmnd/+/POWER", false, false},
		{"cmnd/tasmota_AB12/", false, false},
		{"#", false, false},
		{"", false, false},
	} {
		if got := MayPublish(fuzzDevice, tc.topic); got != tc.publish {
			t.Errorf("MayPublish(%q) = %v", tc.topic, got)
		}
		if got := MayRead(fuzzDevice, tc.topic); got != tc.read {
			t.Errorf("MayRead(%q) = %v", tc.topic, got)
		}
	}
	admin := registry.Principal{ID: registry.AdminName, Admin: true}
	if !MayPublish(admin, "loadwatch/v1/other/cmd") || !MayRead(admin, "#") {
		t.Error("admin refused")
	}
	// Without registered addresses, any valid meter address is the device's.
	if !MayPublish(registry.Principal{ID: "pi"}, "loadwatch/v1/pi.247/telemetry") {
		t.Error("sub-device refused for a device without registered addresses")
	}
}

// FuzzACL checks that no topic lets a device publish or read outside its
// own subtrees, whatever the topic string.
func FuzzACL(f *testing.F) {
	for _, s := range []string{"loadwatch/v1/pi/telemetry", "loadwatch/v1/pi.1/cmd/#", "tele/tasmota_AB12/SENSOR", "cmnd/tasmota_AB12/#", "loadwatch/v1/+/cmd", "#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if MayPublish(fuzzDevice, topic) {
			ok := strings.HasPrefix(topic, "loadwatch/v1/pi/") || strings.HasPrefix(topic, "loadwatch/v1/pi.1/") ||
				strings.HasPrefix(topic, "tele/tasmota_AB12/") || strings.HasPrefix(topic, "stat/tasmota_AB12/")
			if !ok || topic == "loadwatch/v1/pi/cmd" || topic == "loadwatch/v1/pi.1/cmd" {
				t.Fatalf("MayPublish(%q) = true", topic)
			}
			if strings.HasPrefix(topic, "loadwatch/") && strings.ContainsAny(topic, "+#") {
				t.Fatalf("MayPublish(%q) allows a wildcard", topic)
			}
		}
		if MayRead(fuzzDevice, topic) {
			ok := strings.HasPrefix(topic, "loadwatch/v1/pi/cmd") || strings.HasPrefix(topic, "loadwatch/v1/pi.1/cmd") ||
				strings.HasPrefix(topic, "cmnd/tasmota_AB12/")
			if !ok {
				t.Fatalf("MayRead(%q) = true", topic)
			}
			if rest, isLW := strings.CutPrefix(topic, "loadwatch/v1/"); isLW {
				_, sub, _ := strings.Cut(rest, "/")
				if sub != "cmd" && !strings.HasPrefix(sub, "cmd/") {
					t.Fatalf("MayRead(%q) outside cmd", topic)
				}
			}
		}
	})
}
