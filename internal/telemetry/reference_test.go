package telemetry

// The first, encoding/json-based telemetry decoder, kept as a reference for
// the differential fuzz test of the hand-written one (scan.go).

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"

	"loadwatch/internal/power"
)

type wireReading struct {
	V           optInt      `json:"v"`
	Epoch       optString   `json:"epoch"`
	Seq         optInt      `json:"seq"`
	TS          optString   `json:"ts"`
	ClockSynced optBool     `json:"clock_synced"`
	Voltage     optFloat    `json:"voltage"`
	Current     optFloat    `json:"current"`
	Power       optFloat    `json:"power"`
	Energy      optFloat    `json:"energy"`
	EnergyTotal optFloat    `json:"energy_total"`
	Frequency   optFloat    `json:"frequency"`
	PF          optFloat    `json:"pf"`
	Alarm       optBool     `json:"alarm"`
	State       optString   `json:"state"`
	Features    optFeatures `json:"features"`
}

type wireMessage struct {
	wireReading
	Readings *[]wireReading `json:"readings"`
}

func refDecodeTelemetryInto(m *Message, payload []byte, now time.Time, lim Limits) error {
	if len(payload) > lim.MaxPayload {
		return &Error{Reason: ReasonTooLarge, Index: -1, Err: errString("payload of " + strconv.Itoa(len(payload)) + " bytes")}
	}
	var w wireMessage
	if err := json.Unmarshal(payload, &w); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &Error{Reason: syntaxReason(payload), Index: -1, Err: err}
		}
		// Not an object (e.g. an array or a number at the top level), or
		// "readings" of the wrong type.
		return &Error{Reason: ReasonMalformedJSON, Index: -1, Err: err}
	}
	if !w.V.set {
		return fieldErr(ReasonMissingField, "v", -1)
	}
	if w.V.bad != "" || w.V.v != Version {
		return fieldErr(ReasonUnsupportedVersion, "v", -1)
	}
	if w.Epoch.bad != "" {
		return fieldErr(w.Epoch.bad, "epoch", -1)
	}
	m.V = Version
	m.Epoch = w.Epoch.v
	if err := validateEpoch(m.Epoch); err != nil {
		return err
	}
	if w.Readings == nil {
		m.Batch = false
		m.Readings = make([]Telemetry, 1)
		if err := fromWire(&m.Readings[0], &w.wireReading, -1); err != nil {
			return err
		}
		return validateReading(&m.Readings[0], -1, now, &lim)
	}
	if w.Seq.set || w.TS.set {
		return &Error{Reason: ReasonMalformedJSON, Index: -1, Err: errString("a batch carries seq and ts inside readings only")}
	}
	rs := *w.Readings
	if len(rs) == 0 {
		return fieldErr(ReasonMissingField, "readings", -1)
	}
	if len(rs) > lim.MaxBatch {
		return fieldErr(ReasonTooLarge, "readings", -1)
	}
	m.Batch = true
	m.Readings = make([]Telemetry, len(rs))
	for i := range rs {
		if rs[i].V.set || rs[i].Epoch.set {
			return &Error{Reason: ReasonMalformedJSON, Field: "readings", Index: i, Err: errString("v and epoch belong to the message, not a reading")}
		}
		if err := fromWire(&m.Readings[i], &rs[i], i); err != nil {
			return err
		}
		if err := validateReading(&m.Readings[i], i, now, &lim); err != nil {
			return err
		}
	}
	return nil
}

func fromWire(t *Telemetry, w *wireReading, idx int) error {
	if !w.Seq.set {
		return fieldErr(ReasonMissingField, "seq", idx)
	}
	if w.Seq.bad != "" {
		return fieldErr(w.Seq.bad, "seq", idx)
	}
	if w.Seq.v < 0 {
		return fieldErr(ReasonOutOfRange, "seq", idx)
	}
	t.Seq = uint64(w.Seq.v)
	if !w.TS.set {
		return fieldErr(ReasonMissingField, "ts", idx)
	}
	if w.TS.bad != "" {
		return fieldErr(w.TS.bad, "ts", idx)
	}
	ts, err := time.Parse(time.RFC3339Nano, w.TS.v)
	if err != nil {
		return &Error{Reason: ReasonBadTimestamp, Field: "ts", Index: idx, Err: err}
	}
	r := &t.Reading
	r.Time = ts
	if w.ClockSynced.bad != "" {
		return fieldErr(w.ClockSynced.bad, "clock_synced", idx)
	}
	t.ClockSynced = w.ClockSynced.v
	var v float64
	if v, err = floatField(&w.Voltage, "voltage", idx, power.FieldVoltage, &r.Has); err != nil {
		return err
	}
	r.Voltage = power.Volts(v)
	if v, err = floatField(&w.Current, "current", idx, power.FieldCurrent, &r.Has); err != nil {
		return err
	}
	r.Current = power.Amperes(v)
	if v, err = floatField(&w.Power, "power", idx, power.FieldPower, &r.Has); err != nil {
		return err
	}
	r.Power = power.Watts(v)
	if v, err = floatField(&w.Energy, "energy", idx, power.FieldEnergy, &r.Has); err != nil {
		return err
	}
	r.Energy = power.WattHours(v)
	if v, err = floatField(&w.Frequency, "frequency", idx, power.FieldFrequency, &r.Has); err != nil {
		return err
	}
	r.Frequency = power.Hertz(v)
	if v, err = floatField(&w.PF, "pf", idx, power.FieldPF, &r.Has); err != nil {
		return err
	}
	r.PF = power.PowerFactor(v)
	if w.Alarm.set {
		if w.Alarm.bad != "" {
			return fieldErr(w.Alarm.bad, "alarm", idx)
		}
		r.Alarm = w.Alarm.v
		r.Has |= power.FieldAlarm
	}
	var hasTotal power.Field
	if v, err = floatField(&w.EnergyTotal, "energy_total", idx, 1, &hasTotal); err != nil {
		return err
	}
	t.EnergyTotal, t.HasEnergyTotal = power.WattHours(v), hasTotal != 0
	if w.State.bad != "" {
		return fieldErr(w.State.bad, "state", idx)
	}
	t.State = State(w.State.v)
	if w.Features.set {
		if w.Features.bad != "" {
			return fieldErr(w.Features.bad, "features", idx)
		}
		vals := w.Features.v
		fv, ok := vals["v"]
		if !ok {
			return fieldErr(ReasonMissingField, "features.v", idx)
		}
		if fv != math.Trunc(fv) || fv < 1 || fv > math.MaxInt32 {
			return fieldErr(ReasonOutOfRange, "features.v", idx)
		}
		delete(vals, "v")
		t.Features = &Features{V: int(fv), Values: vals}
	}
	return nil
}
