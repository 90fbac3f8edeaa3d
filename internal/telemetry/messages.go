package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"loadwatch/internal/power"
)

// EventKind names an event on loadwatch/v1/<device>/event.
type EventKind string

// The event kinds. The anomaly and safety packages produce the same strings.
const (
	EventLoadOn       EventKind = "load_on"       // P up, V sags: a load was switched on
	EventLoadOff      EventKind = "load_off"      // P down, V recovers
	EventGridSurge    EventKind = "grid_surge"    // V up with P up or flat: the grid, not a load
	EventOvervoltage  EventKind = "overvoltage"   // sustained V above the EN 50160 band
	EventUndervoltage EventKind = "undervoltage"  // sustained V below the EN 50160 band
	EventFrequency    EventKind = "frequency"     // frequency out of range
	EventRelayTrip    EventKind = "relay_trip"    // the local safety opened the relay
	EventRelayReset   EventKind = "relay_reset"   // a manual reset closed it again
	EventRelayRecover EventKind = "relay_recover" // timed auto-recovery closed it again
	EventRelayLatch   EventKind = "relay_latch"   // retries exhausted: latched open until reset
	EventMeterAlarm   EventKind = "meter_alarm"   // the meter's own power alarm flag rose
	EventClockUnset   EventKind = "clock_unset"   // the agent's clock is not synchronised
)

// KnownEventKind reports whether k is one of the kinds above.
func KnownEventKind(k EventKind) bool {
	switch k {
	case EventLoadOn, EventLoadOff, EventGridSurge, EventOvervoltage, EventUndervoltage,
		EventFrequency, EventRelayTrip, EventRelayReset, EventRelayRecover, EventRelayLatch,
		EventMeterAlarm, EventClockUnset:
		return true
	}
	return false
}

// evidenceFields are what an event's before/after evidence carries.
const evidenceFields = power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency

// Event is one message on .../event. Before and After are the evidence:
// only their voltage, current, power and frequency are sent (per Has);
// their Time is not sent. Detail is optional free text (<= 256 bytes).
type Event struct {
	Kind        EventKind
	Time        time.Time
	ClockSynced bool
	Before      power.Reading
	After       power.Reading
	Detail      string
}

// MaxDetailLen bounds Event.Detail and CommandAck.Error.
const MaxDetailLen = 256

// AppendJSON appends the JSON encoding of e.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, Version, 10)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(e.Kind))
	b = append(b, `,"ts":"`...)
	b = e.Time.AppendFormat(b, TimeLayout)
	b = append(b, `","clock_synced":`...)
	b = strconv.AppendBool(b, e.ClockSynced)
	for _, ev := range [2]struct {
		name string
		r    *power.Reading
	}{{"before", &e.Before}, {"after", &e.After}} {
		if ev.r.Has&evidenceFields == 0 {
			continue
		}
		r := *ev.r
		r.Has &= evidenceFields
		b = append(b, ',', '"')
		b = append(b, ev.name...)
		b = append(b, `":{`...)
		n := len(b)
		b = appendMeter(b, &r)
		b = append(b[:n], b[n+1:]...) // drop the leading comma
		b = append(b, '}')
	}
	if e.Detail != "" {
		b = append(b, `,"detail":`...)
		b = appendString(b, e.Detail)
	}
	return append(b, '}')
}

type wireEvidence struct {
	Voltage   optFloat `json:"voltage"`
	Current   optFloat `json:"current"`
	Power     optFloat `json:"power"`
	Frequency optFloat `json:"frequency"`
}

type wireEvent struct {
	V           optInt        `json:"v"`
	Kind        optString     `json:"kind"`
	TS          optString     `json:"ts"`
	ClockSynced optBool       `json:"clock_synced"`
	Before      *wireEvidence `json:"before"`
	After       *wireEvidence `json:"after"`
	Detail      optString     `json:"detail"`
}

func unmarshalObject(payload []byte, v any, lim *Limits) error {
	if len(payload) > lim.MaxPayload {
		return fieldErr(ReasonTooLarge, "", -1)
	}
	if err := json.Unmarshal(payload, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &Error{Reason: syntaxReason(payload), Index: -1, Err: err}
		}
		return &Error{Reason: ReasonMalformedJSON, Index: -1, Err: err}
	}
	return nil
}

func checkVersion(v *optInt) error {
	if !v.set {
		return fieldErr(ReasonMissingField, "v", -1)
	}
	if v.bad != "" || v.v != Version {
		return fieldErr(ReasonUnsupportedVersion, "v", -1)
	}
	return nil
}

func parseTS(o *optString, now time.Time, lim *Limits) (time.Time, error) {
	if !o.set {
		return time.Time{}, fieldErr(ReasonMissingField, "ts", -1)
	}
	if o.bad != "" {
		return time.Time{}, fieldErr(o.bad, "ts", -1)
	}
	ts, err := time.Parse(time.RFC3339Nano, o.v)
	if err != nil {
		return time.Time{}, &Error{Reason: ReasonBadTimestamp, Field: "ts", Index: -1, Err: err}
	}
	if !now.IsZero() && ts.Sub(now) > lim.MaxFuture {
		return time.Time{}, fieldErr(ReasonFutureTimestamp, "ts", -1)
	}
	return ts, nil
}

func evidence(w *wireEvidence, name string) (power.Reading, error) {
	var r power.Reading
	if w == nil {
		return r, nil
	}
	var v float64
	var err error
	if v, err = floatField(&w.Voltage, name+".voltage", -1, power.FieldVoltage, &r.Has); err != nil {
		return r, err
	}
	r.Voltage = power.Volts(v)
	if v, err = floatField(&w.Current, name+".current", -1, power.FieldCurrent, &r.Has); err != nil {
		return r, err
	}
	r.Current = power.Amperes(v)
	if v, err = floatField(&w.Power, name+".power", -1, power.FieldPower, &r.Has); err != nil {
		return r, err
	}
	r.Power = power.Watts(v)
	if v, err = floatField(&w.Frequency, name+".frequency", -1, power.FieldFrequency, &r.Has); err != nil {
		return r, err
	}
	r.Frequency = power.Hertz(v)
	return r, nil
}

// checkMeter applies the physical ranges to the measured fields of r.
func checkMeter(r *power.Reading, prefix string, lim *Limits) error {
	t := Telemetry{Reading: *r, State: StateEvent}
	if t.Reading.Time.IsZero() {
		t.Reading.Time = time.Unix(0, 0)
	}
	if err := validateReading(&t, -1, time.Time{}, lim); err != nil {
		var e *Error
		if errors.As(err, &e) && prefix != "" {
			e.Field = prefix + "." + e.Field
		}
		return err
	}
	return nil
}

// DecodeEvent decodes and validates an event payload.
func DecodeEvent(payload []byte, now time.Time, lim Limits) (Event, error) {
	lim = lim.withDefaults()
	var w wireEvent
	var e Event
	if err := unmarshalObject(payload, &w, &lim); err != nil {
		return e, err
	}
	if err := checkVersion(&w.V); err != nil {
		return e, err
	}
	if !w.Kind.set {
		return e, fieldErr(ReasonMissingField, "kind", -1)
	}
	if w.Kind.bad != "" {
		return e, fieldErr(w.Kind.bad, "kind", -1)
	}
	e.Kind = EventKind(w.Kind.v)
	if !KnownEventKind(e.Kind) {
		return e, fieldErr(ReasonBadValue, "kind", -1)
	}
	var err error
	if e.Time, err = parseTS(&w.TS, now, &lim); err != nil {
		return e, err
	}
	if w.ClockSynced.bad != "" {
		return e, fieldErr(w.ClockSynced.bad, "clock_synced", -1)
	}
	e.ClockSynced = w.ClockSynced.v
	if e.Before, err = evidence(w.Before, "before"); err != nil {
		return e, err
	}
	if e.After, err = evidence(w.After, "after"); err != nil {
		return e, err
	}
	if err := checkMeter(&e.Before, "before", &lim); err != nil {
		return e, err
	}
	if err := checkMeter(&e.After, "after", &lim); err != nil {
		return e, err
	}
	if w.Detail.bad != "" {
		return e, fieldErr(w.Detail.bad, "detail", -1)
	}
	if len(w.Detail.v) > MaxDetailLen {
		return e, fieldErr(ReasonTooLarge, "detail", -1)
	}
	e.Detail = w.Detail.v
	return e, nil
}

// StatusState is online or offline.
type StatusState string

// The status states.
const (
	StatusOnline  StatusState = "online"
	StatusOffline StatusState = "offline" // also the MQTT last will
)

// RelayState is the state of a device's relay, as the agent's safety
// machine names it; the same strings are a command ack's relay State.
type RelayState string

// The relay states.
const (
	RelayClosed  RelayState = "closed"  // conducting: the load is powered
	RelayOpen    RelayState = "open"    // opened by command (relay_off)
	RelayTripped RelayState = "tripped" // opened by a limit, waiting for recovery
	RelayLatched RelayState = "latched" // opened by a limit, closed only by a reset
)

// KnownRelayState reports whether r is one of the states above.
func KnownRelayState(r RelayState) bool {
	switch r {
	case RelayClosed, RelayOpen, RelayTripped, RelayLatched:
		return true
	}
	return false
}

// Status is the retained message on .../status. Link, when not empty,
// carries the meter link counters by meter address (see LinkCounters);
// a status without them leaves the member out. Relay, when not empty, is
// the device's relay state when the status was made; empty (the member
// left out) means the device has no relay, the status is a last will or
// goodbye, or the agent is older than the member.
type Status struct {
	State    StatusState            `json:"state"`
	Firmware string                 `json:"firmware,omitempty"` // agent version, <= 64 bytes
	Time     time.Time              `json:"-"`
	Relay    RelayState             `json:"-"`
	Link     map[uint8]LinkCounters `json:"-"`
}

// AppendJSON appends the JSON encoding of s.
func (s *Status) AppendJSON(b []byte) []byte {
	b = append(b, `{"v":1,"state":`...)
	b = appendString(b, string(s.State))
	if s.Firmware != "" {
		b = append(b, `,"firmware":`...)
		b = appendString(b, s.Firmware)
	}
	if !s.Time.IsZero() {
		b = append(b, `,"ts":"`...)
		b = s.Time.AppendFormat(b, TimeLayout)
		b = append(b, '"')
	}
	if s.Relay != "" {
		b = append(b, `,"relay":`...)
		b = appendString(b, string(s.Relay))
	}
	b = appendLink(b, s.Link)
	return append(b, '}')
}

// DecodeStatus decodes and validates a status payload. ts is optional (a
// last will is written long before it is sent, so its ts is the connect
// time).
func DecodeStatus(payload []byte, now time.Time, lim Limits) (Status, error) {
	lim = lim.withDefaults()
	var w struct {
		V        optInt    `json:"v"`
		State    optString `json:"state"`
		Firmware optString `json:"firmware"`
		TS       optString `json:"ts"`
		Relay    optString `json:"relay"`
		Link     optLink   `json:"link"`
	}
	var s Status
	if err := unmarshalObject(payload, &w, &lim); err != nil {
		return s, err
	}
	if err := checkVersion(&w.V); err != nil {
		return s, err
	}
	if !w.State.set {
		return s, fieldErr(ReasonMissingField, "state", -1)
	}
	s.State = StatusState(w.State.v)
	if w.State.bad != "" {
		return s, fieldErr(w.State.bad, "state", -1)
	}
	if s.State != StatusOnline && s.State != StatusOffline {
		return s, fieldErr(ReasonBadValue, "state", -1)
	}
	if w.Firmware.bad != "" {
		return s, fieldErr(w.Firmware.bad, "firmware", -1)
	}
	if len(w.Firmware.v) > 64 {
		return s, fieldErr(ReasonTooLarge, "firmware", -1)
	}
	s.Firmware = w.Firmware.v
	if w.TS.set {
		ts, err := parseTS(&w.TS, now, &lim)
		if err != nil {
			return s, err
		}
		s.Time = ts
	}
	if w.Relay.set {
		if w.Relay.bad != "" {
			return s, fieldErr(w.Relay.bad, "relay", -1)
		}
		r := RelayState(w.Relay.v)
		if !KnownRelayState(r) {
			return s, fieldErr(ReasonBadValue, "relay", -1)
		}
		s.Relay = r
	}
	link, err := decodeLink(&w.Link)
	if err != nil {
		return s, err
	}
	s.Link = link
	return s, nil
}

// CommandKind names a command on .../cmd.
type CommandKind string

// The command kinds.
const (
	CmdRelayOn       CommandKind = "relay_on"       // close the relay (an explicit on also clears a trip or latch)
	CmdRelayOff      CommandKind = "relay_off"      // open the relay
	CmdRelayReset    CommandKind = "relay_reset"    // clear a trip or latch and close the relay
	CmdResetEnergy   CommandKind = "reset_energy"   // reset the meter's counter (the ledger total carries on)
	CmdSetAlarm      CommandKind = "set_alarm"      // args SetAlarmArgs
	CmdSetIntervals  CommandKind = "set_intervals"  // args SetIntervalsArgs
	CmdSetThresholds CommandKind = "set_thresholds" // args SetThresholdsArgs
	CmdCheckOTA      CommandKind = "check_ota"      // look for an update now
)

// Command is one message on .../cmd. ID (1..64 characters from
// [A-Za-z0-9_-]) is echoed in the CommandAck. Args is a JSON object (or
// empty); decode it with DecodeArgs.
type Command struct {
	ID   string          `json:"id"`
	Kind CommandKind     `json:"kind"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("5s").
type Duration time.Duration

// MarshalJSON writes d as a string such as "5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// SetAlarmArgs are the args of set_alarm: the meter's power alarm threshold.
type SetAlarmArgs struct {
	Watts power.Watts `json:"watts"`
}

// SetIntervalsArgs are the args of set_intervals; a nil field is unchanged.
type SetIntervalsArgs struct {
	Wake      *Duration `json:"wake,omitempty"`      // wake period (default 5s)
	Heartbeat *int      `json:"heartbeat,omitempty"` // cycles between heartbeats (default 60)
}

// SetThresholdsArgs are the args of set_thresholds; a nil field is unchanged.
type SetThresholdsArgs struct {
	ChangeW    *power.Watts   `json:"change_w,omitempty"`   // report threshold
	ChangePct  *float64       `json:"change_pct,omitempty"` // relative report threshold, percent of P
	MaxPower   *power.Watts   `json:"max_power_w,omitempty"`
	MaxCurrent *power.Amperes `json:"max_current_a,omitempty"`
	MaxVoltage *power.Volts   `json:"max_voltage_v,omitempty"`
	MinVoltage *power.Volts   `json:"min_voltage_v,omitempty"`
	Hold       *Duration      `json:"hold,omitempty"`
}

// AppendJSON appends the JSON encoding of c.
func (c *Command) AppendJSON(b []byte) []byte {
	b = append(b, `{"v":1,"id":`...)
	b = appendString(b, c.ID)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(c.Kind))
	if len(c.Args) > 0 {
		b = append(b, `,"args":`...)
		var buf bytes.Buffer
		if json.Compact(&buf, c.Args) == nil {
			b = append(b, buf.Bytes()...)
		} else {
			b = append(b, "{}"...)
		}
	}
	return append(b, '}')
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// DecodeCommand decodes and validates a command payload, including its
// args for the kinds that take some.
func DecodeCommand(payload []byte, lim Limits) (Command, error) {
	lim = lim.withDefaults()
	var w struct {
		V    optInt          `json:"v"`
		ID   optString       `json:"id"`
		Kind optString       `json:"kind"`
		Args json.RawMessage `json:"args"`
	}
	var c Command
	if err := unmarshalObject(payload, &w, &lim); err != nil {
		return c, err
	}
	if err := checkVersion(&w.V); err != nil {
		return c, err
	}
	if !w.ID.set {
		return c, fieldErr(ReasonMissingField, "id", -1)
	}
	if w.ID.bad != "" || !validID(w.ID.v) {
		return c, fieldErr(ReasonBadValue, "id", -1)
	}
	if !w.Kind.set {
		return c, fieldErr(ReasonMissingField, "kind", -1)
	}
	c.ID, c.Kind = w.ID.v, CommandKind(w.Kind.v)
	if len(w.Args) > 0 && !bytes.Equal(w.Args, []byte("null")) {
		if w.Args[0] != '{' {
			return c, fieldErr(ReasonBadType, "args", -1)
		}
		c.Args = w.Args
	}
	switch c.Kind {
	case CmdRelayOn, CmdRelayOff, CmdRelayReset, CmdResetEnergy, CmdCheckOTA:
		return c, nil
	case CmdSetAlarm:
		var a SetAlarmArgs
		if err := DecodeArgs(&c, &a); err != nil {
			return c, err
		}
		if a.Watts < 0 || a.Watts > lim.MaxPower {
			return c, fieldErr(ReasonOutOfRange, "args.watts", -1)
		}
	case CmdSetIntervals:
		var a SetIntervalsArgs
		if err := DecodeArgs(&c, &a); err != nil {
			return c, err
		}
		if a.Wake != nil && (*a.Wake < Duration(100*time.Millisecond) || *a.Wake > Duration(24*time.Hour)) {
			return c, fieldErr(ReasonOutOfRange, "args.wake", -1)
		}
		if a.Heartbeat != nil && (*a.Heartbeat < 1 || *a.Heartbeat > 100000) {
			return c, fieldErr(ReasonOutOfRange, "args.heartbeat", -1)
		}
	case CmdSetThresholds:
		var a SetThresholdsArgs
		if err := DecodeArgs(&c, &a); err != nil {
			return c, err
		}
		if a.ChangeW != nil && *a.ChangeW < 0 || a.ChangePct != nil && (*a.ChangePct < 0 || *a.ChangePct > 100) ||
			a.MaxPower != nil && *a.MaxPower <= 0 || a.MaxCurrent != nil && *a.MaxCurrent <= 0 ||
			a.MaxVoltage != nil && *a.MaxVoltage <= 0 || a.MinVoltage != nil && *a.MinVoltage < 0 ||
			a.Hold != nil && *a.Hold < 0 {
			return c, fieldErr(ReasonOutOfRange, "args", -1)
		}
	default:
		return c, fieldErr(ReasonBadValue, "kind", -1)
	}
	return c, nil
}

// DecodeArgs decodes c.Args into v (one of the *Args types), refusing
// unknown members. Empty args decode to v unchanged.
func DecodeArgs(c *Command, v any) error {
	if len(c.Args) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(c.Args))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return &Error{Reason: ReasonBadType, Field: "args", Index: -1, Err: err}
	}
	return nil
}

// CommandAck is the reply on .../cmd/ack. State is the agent's state after
// the command, for the relay "closed", "open", "tripped" or "latched".
type CommandAck struct {
	ID    string
	OK    bool
	Error string // why it failed; empty when OK
	State string
}

// AppendJSON appends the JSON encoding of a.
func (a *CommandAck) AppendJSON(b []byte) []byte {
	b = append(b, `{"v":1,"id":`...)
	b = appendString(b, a.ID)
	b = append(b, `,"ok":`...)
	b = strconv.AppendBool(b, a.OK)
	if a.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, a.Error)
	}
	if a.State != "" {
		b = append(b, `,"state":`...)
		b = appendString(b, a.State)
	}
	return append(b, '}')
}

// DecodeCommandAck decodes and validates an ack payload.
func DecodeCommandAck(payload []byte, lim Limits) (CommandAck, error) {
	lim = lim.withDefaults()
	var w struct {
		V     optInt    `json:"v"`
		ID    optString `json:"id"`
		OK    optBool   `json:"ok"`
		Error optString `json:"error"`
		State optString `json:"state"`
	}
	var a CommandAck
	if err := unmarshalObject(payload, &w, &lim); err != nil {
		return a, err
	}
	if err := checkVersion(&w.V); err != nil {
		return a, err
	}
	if !w.ID.set {
		return a, fieldErr(ReasonMissingField, "id", -1)
	}
	if w.ID.bad != "" || !validID(w.ID.v) {
		return a, fieldErr(ReasonBadValue, "id", -1)
	}
	if !w.OK.set {
		return a, fieldErr(ReasonMissingField, "ok", -1)
	}
	if w.OK.bad != "" {
		return a, fieldErr(w.OK.bad, "ok", -1)
	}
	if w.Error.bad != "" || w.State.bad != "" {
		return a, fieldErr(ReasonBadType, "error", -1)
	}
	if len(w.Error.v) > MaxDetailLen || len(w.State.v) > 64 {
		return a, fieldErr(ReasonTooLarge, "", -1)
	}
	a.ID, a.OK, a.Error, a.State = w.ID.v, w.OK.v, w.Error.v, w.State.v
	return a, nil
}
