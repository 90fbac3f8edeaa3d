// Package telemetry is loadwatch's wire contract: MQTT topics, the versioned
// JSON payloads an agent sends and receives, their validation, and a decoder
// for Tasmota's tele/<topic>/SENSOR energy payloads.
//
// It is shared by the agent (which encodes) and the server's ingest (which
// decodes and validates). Telemetry, the hot path, is encoded and decoded by
// hand (append style, no reflection; 2 allocations per single reading
// decoded); events, status, commands and Tasmota payloads use encoding/json
// with allocation-free field types.
// A meter field that was not measured is left out of the JSON, never sent as
// 0 or null; power.Reading.Has says which fields are present.
//
// Every refusal is an *Error with a machine Reason; see docs/TELEMETRY.md.
// The package imports only the standard library and loadwatch/internal/power.
package telemetry

import (
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	"loadwatch/internal/power"
)

// Version is the payload version this build writes and reads ("v").
const Version = 1

// TimeLayout is how timestamps are written: RFC 3339 with milliseconds.
// Readers accept any RFC 3339 timestamp.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// State says why a reading was reported.
type State string

// The reporting states.
const (
	StateActive    State = "active"    // a change of load was seen and confirmed
	StateHeartbeat State = "heartbeat" // the periodic report with no change
	StateEvent     State = "event"     // an anomaly or relay event forced a full wake
)

func (s State) valid() bool {
	return s == StateActive || s == StateHeartbeat || s == StateEvent
}

// Features is the classifier's causal feature vector the agent computed for
// a reading. V is the feature-set version (>= 1); Values maps feature names
// to values. The name "v" is reserved.
type Features struct {
	V      int
	Values map[string]float64
}

// Telemetry is one reported reading.
type Telemetry struct {
	Seq         uint64        // per-device report counter; survives restarts within an epoch
	ClockSynced bool          // the agent's clock was synchronised when it stamped Reading.Time
	Reading     power.Reading // Time is "ts"; meter fields per Reading.Has; Energy is the meter's counter
	// EnergyTotal is the agent's monotonic ledger total ("energy_total"),
	// sent only when HasEnergyTotal is set.
	EnergyTotal    power.WattHours
	HasEnergyTotal bool
	State          State
	Features       *Features // nil: no features sent
}

// Message is one telemetry message: a single reading or a batch. All its
// readings share V and Epoch. Batch selects the "readings":[...] form when
// encoding; a decoded Message has Batch set when the payload used it.
type Message struct {
	V        int
	Epoch    string // random boot id; (device, Epoch, Seq) identifies a reading
	Batch    bool
	Readings []Telemetry
}

// AppendJSON appends the JSON encoding of m to b. A Message with exactly one
// reading and Batch false is written in the single form, anything else in
// the batch form. m.V of 0 is written as Version. It does not validate.
func (m *Message) AppendJSON(b []byte) []byte {
	v := m.V
	if v == 0 {
		v = Version
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(v), 10)
	b = append(b, `,"epoch":`...)
	b = appendString(b, m.Epoch)
	if len(m.Readings) == 1 && !m.Batch {
		b = appendReading(b, &m.Readings[0], true)
		return append(b, '}')
	}
	b = append(b, `,"readings":[`...)
	for i := range m.Readings {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = appendReading(b, &m.Readings[i], false)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// Marshal returns the JSON encoding of m.
func (m *Message) Marshal() []byte { return m.AppendJSON(make([]byte, 0, 320*max(1, len(m.Readings)))) }

// appendReading writes the members of one reading; comma says whether a
// comma must precede the first one.
func appendReading(b []byte, t *Telemetry, comma bool) []byte {
	r := &t.Reading
	if comma {
		b = append(b, ',')
	}
	b = append(b, `"seq":`...)
	b = strconv.AppendUint(b, t.Seq, 10)
	b = append(b, `,"ts":"`...)
	b = r.Time.AppendFormat(b, TimeLayout)
	b = append(b, `","clock_synced":`...)
	b = strconv.AppendBool(b, t.ClockSynced)
	b = appendMeter(b, r)
	if t.HasEnergyTotal {
		b = appendFloat(b, "energy_total", float64(t.EnergyTotal))
	}
	if t.State != "" {
		b = append(b, `,"state":`...)
		b = appendString(b, string(t.State))
	}
	if t.Features != nil {
		b = append(b, `,"features":{"v":`...)
		b = strconv.AppendInt(b, int64(t.Features.V), 10)
		names := make([]string, 0, len(t.Features.Values))
		for k := range t.Features.Values {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			b = append(b, ',')
			b = appendString(b, k)
			b = append(b, ':')
			b = appendNum(b, t.Features.Values[k])
		}
		b = append(b, '}')
	}
	return b
}

// appendMeter writes the measured fields of r, each preceded by a comma.
func appendMeter(b []byte, r *power.Reading) []byte {
	if r.Is(power.FieldVoltage) {
		b = appendFloat(b, "voltage", float64(r.Voltage))
	}
	if r.Is(power.FieldCurrent) {
		b = appendFloat(b, "current", float64(r.Current))
	}
	if r.Is(power.FieldPower) {
		b = appendFloat(b, "power", float64(r.Power))
	}
	if r.Is(power.FieldEnergy) {
		b = appendFloat(b, "energy", float64(r.Energy))
	}
	if r.Is(power.FieldFrequency) {
		b = appendFloat(b, "frequency", float64(r.Frequency))
	}
	if r.Is(power.FieldPF) {
		b = appendFloat(b, "pf", float64(r.PF))
	}
	if r.Is(power.FieldAlarm) {
		b = append(b, `,"alarm":`...)
		b = strconv.AppendBool(b, r.Alarm)
	}
	return b
}

func appendFloat(b []byte, name string, v float64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendNum(b, v)
}

// appendNum writes v as the shortest JSON number that parses back to v.
// NaN and infinities (which JSON cannot carry) are written as null so that
// the output stays valid JSON; Validate refuses them before sending.
func appendNum(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.AppendFloat(b, v, 'e', -1, 64)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8 with U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
