package telemetry

import (
	"strconv"
	"strings"
)

// Prefix is the first two levels of every loadwatch topic.
const Prefix = "loadwatch/v1/"

// Channel is the last part of a loadwatch topic: what the message is.
type Channel string

// The channels of a device.
const (
	ChannelTelemetry Channel = "telemetry" // device -> server, QoS 1
	ChannelEvent     Channel = "event"     // device -> server, anomalies and relay trips
	ChannelStatus    Channel = "status"    // device -> server, online/offline (LWT, retained)
	ChannelCmd       Channel = "cmd"       // server -> device
	ChannelCmdAck    Channel = "cmd/ack"   // device -> server
)

// MaxAgentIDLen is the longest agent id accepted.
const MaxAgentIDLen = 64

// ValidateAgentID checks an agent id (= MQTT username = client id): 1 to
// MaxAgentIDLen characters from [A-Za-z0-9_-], starting with a letter or a
// digit. This excludes the MQTT separators and wildcards ('/', '+', '#'),
// '$' (reserved topics), '.' (used for the meter address) and anything
// that needs escaping in a URL, a file name or a Prometheus label.
func ValidateAgentID(id string) error {
	if len(id) == 0 || len(id) > MaxAgentIDLen {
		return &Error{Reason: ReasonBadDeviceID, Index: -1, Err: errString("agent id must be 1.." + strconv.Itoa(MaxAgentIDLen) + " characters")}
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && (c == '_' || c == '-'))
		if !ok {
			return &Error{Reason: ReasonBadDeviceID, Index: -1, Err: errString("agent id " + strconv.Quote(id) + " has a character outside [A-Za-z0-9_-] or starts with '_' or '-'")}
		}
	}
	return nil
}

// ValidateDeviceID checks a device id: an agent id, or an agent id, a dot and
// a Modbus address 1..247 in decimal without leading zeros ("<id>.<addr>").
func ValidateDeviceID(device string) error {
	_, _, _, err := SplitDevice(device)
	return err
}

// SplitDevice splits a device id into its agent id and meter address.
// hasAddr is false for the single-meter form "<id>".
func SplitDevice(device string) (agent string, addr uint8, hasAddr bool, err error) {
	agent, a, found := strings.Cut(device, ".")
	if err := ValidateAgentID(agent); err != nil {
		return "", 0, false, err
	}
	if !found {
		return agent, 0, false, nil
	}
	n, perr := strconv.ParseUint(a, 10, 8)
	if perr != nil || n < 1 || n > 247 || a[0] == '0' {
		return "", 0, false, &Error{Reason: ReasonBadDeviceID, Index: -1, Err: errString("meter address " + strconv.Quote(a) + " is not 1..247")}
	}
	return agent, uint8(n), true, nil
}

// DeviceID builds the device id of the meter at addr on agent's bus: the
// agent id itself when the agent has a single meter, "<id>.<addr>"
// otherwise. It does not validate agent.
func DeviceID(agent string, addr uint8, single bool) string {
	if single {
		return agent
	}
	return agent + "." + strconv.Itoa(int(addr))
}

// Owns reports whether the agent may publish and subscribe as device: the
// device is the agent itself or one of its meters. Both must be valid ids.
func Owns(agent, device string) bool {
	a, _, _, err := SplitDevice(device)
	return err == nil && a == agent
}

// Topic returns loadwatch/v1/<device>/<channel>. It does not validate the
// device id; use ValidateDeviceID on ids that come from outside.
func Topic(device string, ch Channel) string {
	return Prefix + device + "/" + string(ch)
}

// ParseTopic splits a loadwatch topic into its device id and channel, and
// refuses unknown channels and invalid device ids (ReasonBadTopic or
// ReasonBadDeviceID).
func ParseTopic(topic string) (device string, ch Channel, err error) {
	rest, ok := strings.CutPrefix(topic, Prefix)
	if !ok {
		return "", "", &Error{Reason: ReasonBadTopic, Index: -1, Err: errString("topic does not start with " + Prefix)}
	}
	device, c, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", &Error{Reason: ReasonBadTopic, Index: -1, Err: errString("topic has no channel")}
	}
	switch Channel(c) {
	case ChannelTelemetry, ChannelEvent, ChannelStatus, ChannelCmd, ChannelCmdAck:
	default:
		return "", "", &Error{Reason: ReasonBadTopic, Index: -1, Err: errString("unknown channel " + strconv.Quote(c))}
	}
	if err := ValidateDeviceID(device); err != nil {
		return "", "", err
	}
	return device, Channel(c), nil
}

// TasmotaSensorTopic returns the device topic of a Tasmota telemetry topic in
// the default full-topic layout "tele/<topic>/SENSOR", and false for any
// other topic. A custom Tasmota FullTopic is not recognised.
func TasmotaSensorTopic(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "tele/")
	if !ok {
		return "", false
	}
	t, ok := strings.CutSuffix(rest, "/SENSOR")
	if !ok || t == "" || strings.ContainsAny(t, "/+#") {
		return "", false
	}
	return t, true
}

type errString string

func (e errString) Error() string { return string(e) }
