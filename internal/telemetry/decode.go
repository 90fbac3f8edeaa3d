package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"

	"loadwatch/internal/power"
)

// Limits bounds what Decode accepts. A zero field means the documented
// default (see DefaultLimits and docs/TELEMETRY.md for where each comes
// from); the PZEM-004T ranges are widened by a margin so that a healthy
// meter at the edge of its range is never refused.
type Limits struct {
	MaxPayload   int             // bytes per message (default 128 KiB)
	MaxBatch     int             // readings per batch message (default 256)
	MaxFuture    time.Duration   // how far ts may be ahead of now (default 5 min)
	MaxVoltage   power.Volts     // default 300 V (meter: 80..260 V)
	MaxCurrent   power.Amperes   // default 110 A (meter: 0..100 A)
	MaxPower     power.Watts     // default 25300 W (meter: 0..23 kW)
	MaxEnergy    power.WattHours // meter counter, default 10,000,000 Wh (meter wraps after 9999.99 kWh)
	MaxTotal     power.WattHours // energy_total, default 1e12 Wh
	MinFrequency power.Hertz     // default 40 Hz (meter: 45..65 Hz)
	MaxFrequency power.Hertz     // default 70 Hz
	MaxPF        power.PowerFactor
	MaxFeatures  int // names in one features object (default 256)
}

// DefaultLimits returns the limits used when a Limits field is zero.
func DefaultLimits() Limits {
	return Limits{
		MaxPayload:   128 << 10,
		MaxBatch:     256,
		MaxFuture:    5 * time.Minute,
		MaxVoltage:   300,
		MaxCurrent:   110,
		MaxPower:     25300,
		MaxEnergy:    10_000_000,
		MaxTotal:     1e12,
		MinFrequency: 40,
		MaxFrequency: 70,
		MaxPF:        1.5, // the meter reports PF > 1 right after a fast change
		MaxFeatures:  256,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxPayload == 0 {
		l.MaxPayload = d.MaxPayload
	}
	if l.MaxBatch == 0 {
		l.MaxBatch = d.MaxBatch
	}
	if l.MaxFuture == 0 {
		l.MaxFuture = d.MaxFuture
	}
	if l.MaxVoltage == 0 {
		l.MaxVoltage = d.MaxVoltage
	}
	if l.MaxCurrent == 0 {
		l.MaxCurrent = d.MaxCurrent
	}
	if l.MaxPower == 0 {
		l.MaxPower = d.MaxPower
	}
	if l.MaxEnergy == 0 {
		l.MaxEnergy = d.MaxEnergy
	}
	if l.MaxTotal == 0 {
		l.MaxTotal = d.MaxTotal
	}
	if l.MinFrequency == 0 {
		l.MinFrequency = d.MinFrequency
	}
	if l.MaxFrequency == 0 {
		l.MaxFrequency = d.MaxFrequency
	}
	if l.MaxPF == 0 {
		l.MaxPF = d.MaxPF
	}
	if l.MaxFeatures == 0 {
		l.MaxFeatures = d.MaxFeatures
	}
	return l
}

// MaxEpochLen is the longest epoch (boot id) accepted.
const MaxEpochLen = 64

// DecodeTelemetry decodes and validates one telemetry payload (single or
// batch form) against lim, with now as the reference for future
// timestamps (a zero now skips that check, e.g. when the agent re-reads
// its own outbox records to batch them). The whole message is refused if any reading is invalid (an
// MQTT PUBACK is per message). The error is an *Error.
func DecodeTelemetry(payload []byte, now time.Time, lim Limits) (Message, error) {
	var m Message
	err := decodeTelemetryInto(&m, payload, now, lim.withDefaults())
	return m, err
}

// ValidateTelemetry checks an already decoded or locally built message
// (the agent calls it before sending) with the same rules as
// DecodeTelemetry, except the payload size. V 0 counts as Version, as in
// AppendJSON. A zero now skips the future-timestamp check.
func ValidateTelemetry(m *Message, now time.Time, lim Limits) error {
	lim = lim.withDefaults()
	if m.V != Version && m.V != 0 { // 0 is written as Version
		return fieldErr(ReasonUnsupportedVersion, "v", -1)
	}
	if err := validateEpoch(m.Epoch); err != nil {
		return err
	}
	if len(m.Readings) == 0 {
		return fieldErr(ReasonMissingField, "readings", -1)
	}
	if len(m.Readings) > lim.MaxBatch {
		return fieldErr(ReasonTooLarge, "readings", -1)
	}
	for i := range m.Readings {
		idx := i
		if !m.Batch {
			idx = -1
		}
		if err := validateReading(&m.Readings[i], idx, now, &lim); err != nil {
			return err
		}
	}
	return nil
}

func validateEpoch(e string) error {
	if e == "" {
		return fieldErr(ReasonMissingField, "epoch", -1)
	}
	if len(e) > MaxEpochLen {
		return fieldErr(ReasonOutOfRange, "epoch", -1)
	}
	for i := 0; i < len(e); i++ {
		c := e[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fieldErr(ReasonBadValue, "epoch", -1)
		}
	}
	return nil
}

func checkFloat(v float64, lo, hi float64, name string, idx int) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fieldErr(ReasonNaNOrInf, name, idx)
	}
	if v < lo || v > hi {
		return fieldErr(ReasonOutOfRange, name, idx)
	}
	return nil
}

func validateReading(t *Telemetry, idx int, now time.Time, lim *Limits) error {
	r := &t.Reading
	if r.Time.IsZero() {
		return fieldErr(ReasonMissingField, "ts", idx)
	}
	if !now.IsZero() && r.Time.Sub(now) > lim.MaxFuture {
		return fieldErr(ReasonFutureTimestamp, "ts", idx)
	}
	if !t.State.valid() {
		if t.State == "" {
			return fieldErr(ReasonMissingField, "state", idx)
		}
		return fieldErr(ReasonBadValue, "state", idx)
	}
	if r.Is(power.FieldVoltage) {
		if err := checkFloat(float64(r.Voltage), 0, float64(lim.MaxVoltage), "voltage", idx); err != nil {
			return err
		}
	}
	if r.Is(power.FieldCurrent) {
		if err := checkFloat(float64(r.Current), 0, float64(lim.MaxCurrent), "current", idx); err != nil {
			return err
		}
	}
	if r.Is(power.FieldPower) {
		p := float64(r.Power)
		if p < 0 {
			return fieldErr(ReasonNegativePower, "power", idx)
		}
		if err := checkFloat(p, 0, float64(lim.MaxPower), "power", idx); err != nil {
			return err
		}
	}
	if r.Is(power.FieldEnergy) {
		if err := checkFloat(float64(r.Energy), 0, float64(lim.MaxEnergy), "energy", idx); err != nil {
			return err
		}
	}
	if t.HasEnergyTotal {
		if err := checkFloat(float64(t.EnergyTotal), 0, float64(lim.MaxTotal), "energy_total", idx); err != nil {
			return err
		}
	}
	if r.Is(power.FieldFrequency) {
		if err := checkFloat(float64(r.Frequency), float64(lim.MinFrequency), float64(lim.MaxFrequency), "frequency", idx); err != nil {
			return err
		}
	}
	if r.Is(power.FieldPF) {
		if err := checkFloat(float64(r.PF), 0, float64(lim.MaxPF), "pf", idx); err != nil {
			return err
		}
	}
	if f := t.Features; f != nil {
		if f.V < 1 {
			return fieldErr(ReasonOutOfRange, "features.v", idx)
		}
		if len(f.Values) > lim.MaxFeatures {
			return fieldErr(ReasonTooLarge, "features", idx)
		}
		for k, v := range f.Values {
			if k == "" || k == "v" || len(k) > 64 {
				return fieldErr(ReasonBadValue, "features", idx)
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fieldErr(ReasonNaNOrInf, "features."+k, idx)
			}
		}
	}
	return nil
}

// --- decoding ---

// Field types that record presence and a type problem instead of failing
// the whole decode, so that the error can name the field. They allocate
// nothing for numbers and booleans.

type optFloat struct {
	v   float64
	set bool
	bad Reason
}

func (o *optFloat) UnmarshalJSON(b []byte) error {
	o.set = true
	if len(b) == 0 || !(b[0] == '-' || b[0] >= '0' && b[0] <= '9') {
		o.bad = ReasonBadType
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		if math.IsInf(f, 0) {
			o.bad = ReasonNaNOrInf
		} else if f != 0 { // underflow to 0 is fine
			o.bad = ReasonBadType
		}
	}
	o.v = f
	return nil
}

type optInt struct {
	v   int64
	set bool
	bad Reason
}

func (o *optInt) UnmarshalJSON(b []byte) error {
	o.set = true
	if len(b) == 0 || !(b[0] == '-' || b[0] >= '0' && b[0] <= '9') {
		o.bad = ReasonBadType
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			o.bad = ReasonOutOfRange
		} else {
			o.bad = ReasonBadType // a fraction or exponent
		}
	}
	o.v = n
	return nil
}

type optBool struct {
	v   bool
	set bool
	bad Reason
}

func (o *optBool) UnmarshalJSON(b []byte) error {
	o.set = true
	switch string(b) {
	case "true":
		o.v = true
	case "false":
	default:
		o.bad = ReasonBadType
	}
	return nil
}

type optString struct {
	v   string
	set bool
	bad Reason
}

func (o *optString) UnmarshalJSON(b []byte) error {
	o.set = true
	if len(b) == 0 || b[0] != '"' {
		o.bad = ReasonBadType
		return nil
	}
	if bytes.IndexByte(b[1:len(b)-1], '\\') < 0 {
		o.v = string(b[1 : len(b)-1])
		return nil
	}
	if err := json.Unmarshal(b, &o.v); err != nil {
		o.bad = ReasonBadType
	}
	return nil
}

type optFeatures struct {
	v   map[string]float64
	set bool
	bad Reason
}

func (o *optFeatures) UnmarshalJSON(b []byte) error {
	o.set = true
	if len(b) == 0 || b[0] != '{' {
		o.bad = ReasonBadType
		return nil
	}
	if err := json.Unmarshal(b, &o.v); err != nil {
		o.bad = ReasonBadType
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Value == "number" {
			o.bad = ReasonNaNOrInf // a number that float64 cannot hold
		} else if errors.As(err, &te) && len(te.Value) > 7 && te.Value[:7] == "number " {
			o.bad = ReasonNaNOrInf
		}
	}
	return nil
}

// syntaxReason distinguishes a JSON syntax error caused by a bare NaN or
// Infinity (as some encoders write) from any other malformed payload.
func syntaxReason(payload []byte) Reason {
	if bytes.Contains(payload, []byte("NaN")) || bytes.Contains(payload, []byte("Infinity")) {
		return ReasonNaNOrInf
	}
	return ReasonMalformedJSON
}

func floatField(o *optFloat, name string, idx int, bit power.Field, has *power.Field) (float64, error) {
	if !o.set {
		return 0, nil
	}
	if o.bad != "" {
		return 0, fieldErr(o.bad, name, idx)
	}
	*has |= bit
	return o.v, nil
}
