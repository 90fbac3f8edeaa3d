package hass

import (
	"encoding/json"
	"strings"

	"loadwatch/internal/telemetry"
)

// Message is one discovery message (publish retained).
type Message struct {
	Topic   string
	Payload []byte
}

// DeviceInfo is Home Assistant's device block.
type DeviceInfo struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
	SWVersion    string   `json:"sw_version,omitempty"`
	ViaDevice    string   `json:"via_device,omitempty"`
}

// Entity is one discovery config payload (the fields loadwatch uses).
type Entity struct {
	Name               string      `json:"name"`
	UniqueID           string      `json:"unique_id"`
	ObjectID           string      `json:"object_id"`
	StateTopic         string      `json:"state_topic"`
	ValueTemplate      string      `json:"value_template"`
	DeviceClass        string      `json:"device_class,omitempty"`
	StateClass         string      `json:"state_class,omitempty"`
	UnitOfMeasurement  string      `json:"unit_of_measurement,omitempty"`
	SuggestedPrecision *int        `json:"suggested_display_precision,omitempty"`
	Icon               string      `json:"icon,omitempty"`
	JSONAttrTopic      string      `json:"json_attributes_topic,omitempty"`
	JSONAttrTemplate   string      `json:"json_attributes_template,omitempty"`
	AvailabilityTopic  string      `json:"availability_topic"`
	CommandTopic       string      `json:"command_topic,omitempty"`
	PayloadOn          string      `json:"payload_on,omitempty"`
	PayloadOff         string      `json:"payload_off,omitempty"`
	StateOn            string      `json:"state_on,omitempty"`
	StateOff           string      `json:"state_off,omitempty"`
	Optimistic         *bool       `json:"optimistic,omitempty"`
	Device             DeviceInfo  `json:"device"`
	Origin             *OriginInfo `json:"origin,omitempty"`
	Platform           string      `json:"-"` // sensor or switch: part of the topic
}

// OriginInfo names the software that sent the discovery.
type OriginInfo struct {
	Name string `json:"name"`
	URL  string `json:"url,omitempty"`
}

func intp(v int) *int    { return &v }
func boolp(v bool) *bool { return &v }

// objectID turns a device id into Home Assistant's object id alphabet
// ([a-z0-9_]); '-' and '.' become '_'.
func objectID(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// commandPayload is a loadwatch command the switch publishes as is.
func commandPayload(id string, kind telemetry.CommandKind) string {
	c := telemetry.Command{ID: id, Kind: kind}
	return string(c.AppendJSON(nil))
}

// Entities returns the discovery configs of one device.
func Entities(device, firmware, statePrefix string) []Entity {
	oid := "loadwatch_" + objectID(device)
	dev := DeviceInfo{Identifiers: []string{oid}, Name: "loadwatch " + device, Manufacturer: "loadwatch",
		Model: "PZEM-004T v3 meter", SWVersion: firmware}
	state, avail := StateTopic(statePrefix, device), AvailabilityTopic(statePrefix, device)
	origin := &OriginInfo{Name: "loadwatch"}
	sensor := func(key, name, class, stateClass, unit, tmpl string, prec int) Entity {
		return Entity{Platform: "sensor", Name: name, UniqueID: oid + "_" + key, ObjectID: oid + "_" + key, StateTopic: state,
			ValueTemplate: tmpl, DeviceClass: class, StateClass: stateClass, UnitOfMeasurement: unit, SuggestedPrecision: intp(prec),
			AvailabilityTopic: avail, Device: dev, Origin: origin}
	}
	val := func(field string) string {
		return "{{ value_json." + field + " if value_json." + field + " is defined else none }}"
	}
	es := []Entity{
		sensor("power", "Power", "power", "measurement", "W", val("power"), 1),
		sensor("voltage", "Voltage", "voltage", "measurement", "V", val("voltage"), 1),
		sensor("current", "Current", "current", "measurement", "A", val("current"), 3),
		sensor("power_factor", "Power factor", "power_factor", "measurement", "", val("pf"), 2),
		sensor("frequency", "Frequency", "frequency", "measurement", "Hz", val("frequency"), 2),
		// The ledger total never goes down (meter resets and wraps are
		// absorbed by the agent's ledger), as total_increasing expects.
		sensor("energy", "Energy", "energy", "total_increasing", "kWh", val("energy_kwh"), 3),
	}
	cls := sensor("class", "Appliance", "", "", "", val("class"), 0)
	cls.SuggestedPrecision, cls.Icon = nil, "mdi:power-plug"
	cls.JSONAttrTopic, cls.JSONAttrTemplate = state, `{{ {"confidence": value_json.confidence} | tojson if value_json.confidence is defined else "{}" }}`
	es = append(es, cls)
	es = append(es, Entity{Platform: "switch", Name: "Relay", UniqueID: oid + "_relay", ObjectID: oid + "_relay", StateTopic: state,
		ValueTemplate: "{{ value_json.relay if value_json.relay is defined else none }}", Icon: "mdi:electric-switch",
		CommandTopic: telemetry.Topic(device, telemetry.ChannelCmd),
		PayloadOn:    commandPayload("hass-relay-on", telemetry.CmdRelayOn), PayloadOff: commandPayload("hass-relay-off", telemetry.CmdRelayOff),
		StateOn: "closed", StateOff: "open", Optimistic: boolp(false), AvailabilityTopic: avail, Device: dev, Origin: origin})
	return es
}

// Discovery returns the retained discovery messages of one device:
// <prefix>/<sensor|switch>/loadwatch_<device>/<key>/config.
func Discovery(device, firmware, discoveryPrefix, statePrefix string) []Message {
	var out []Message
	for _, e := range Entities(device, firmware, statePrefix) {
		key := strings.TrimPrefix(e.UniqueID, "loadwatch_"+objectID(device)+"_")
		p, _ := json.Marshal(e)
		out = append(out, Message{Topic: discoveryPrefix + "/" + e.Platform + "/loadwatch_" + objectID(device) + "/" + key + "/config", Payload: p})
	}
	return out
}
