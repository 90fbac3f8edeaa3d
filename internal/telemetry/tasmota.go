package telemetry

import (
	"time"

	"loadwatch/internal/power"
)

// Tasmota's energy drivers (PZEM-004T, HLW8012, CSE7766, BL0937...) publish
// tele/<topic>/SENSOR every TelePeriod with a payload such as
//
//	{"Time":"2024-03-01T12:00:00","ENERGY":{"TotalStartTime":"2023-01-01T00:00:00",
//	 "Total":12.345,"Yesterday":0.5,"Today":0.2,"Period":1,"Power":45,
//	 "ApparentPower":50,"ReactivePower":22,"Factor":0.90,"Frequency":50,
//	 "Voltage":231,"Current":0.217}}
//
// Total, Yesterday and Today are kWh; Period is Wh since the last message.
// Frequency is only sent by drivers that measure it. "Time" is local time
// without a zone (unless the device is configured to add one).

type wireTasmotaEnergy struct {
	Total     optFloat `json:"Total"`
	Power     optFloat `json:"Power"`
	Voltage   optFloat `json:"Voltage"`
	Current   optFloat `json:"Current"`
	Factor    optFloat `json:"Factor"`
	Frequency optFloat `json:"Frequency"`
}

type wireTasmota struct {
	Time   optString          `json:"Time"`
	Energy *wireTasmotaEnergy `json:"ENERGY"`
}

// TasmotaLayout is Tasmota's "Time" format (no zone).
const TasmotaLayout = "2006-01-02T15:04:05"

// DecodeTasmota decodes a Tasmota tele/<topic>/SENSOR payload carrying an
// ENERGY object into a Reading. Time is read in loc unless it carries its
// own offset (loc nil means UTC). Total (kWh) becomes Reading.Energy in Wh:
// Tasmota's own total, which a reset or a new device restarts, so the
// server runs a ledger over it. Fields Tasmota did not send stay absent.
// Multi-phase devices send arrays; they are refused with ReasonBadType (only
// single-phase is supported). Ranges are checked as for telemetry, except
// that Total is bounded by MaxTotal rather than the PZEM counter range.
func DecodeTasmota(payload []byte, loc *time.Location, now time.Time, lim Limits) (power.Reading, error) {
	lim = lim.withDefaults()
	var r power.Reading
	var w wireTasmota
	if err := unmarshalObject(payload, &w, &lim); err != nil {
		return r, err
	}
	if !w.Time.set {
		return r, fieldErr(ReasonMissingField, "Time", -1)
	}
	if w.Time.bad != "" {
		return r, fieldErr(w.Time.bad, "Time", -1)
	}
	if loc == nil {
		loc = time.UTC
	}
	ts, err := time.ParseInLocation(TasmotaLayout, w.Time.v, loc)
	if err != nil {
		ts, err = time.Parse(time.RFC3339Nano, w.Time.v)
		if err != nil {
			return r, &Error{Reason: ReasonBadTimestamp, Field: "Time", Index: -1, Err: err}
		}
	}
	if !now.IsZero() && ts.Sub(now) > lim.MaxFuture {
		return r, fieldErr(ReasonFutureTimestamp, "Time", -1)
	}
	r.Time = ts
	e := w.Energy
	if e == nil {
		return r, fieldErr(ReasonMissingField, "ENERGY", -1)
	}
	var v float64
	if v, err = floatField(&e.Total, "ENERGY.Total", -1, power.FieldEnergy, &r.Has); err != nil {
		return r, err
	}
	r.Energy = power.WattHours(v * 1000)
	if v, err = floatField(&e.Power, "ENERGY.Power", -1, power.FieldPower, &r.Has); err != nil {
		return r, err
	}
	r.Power = power.Watts(v)
	if v, err = floatField(&e.Voltage, "ENERGY.Voltage", -1, power.FieldVoltage, &r.Has); err != nil {
		return r, err
	}
	r.Voltage = power.Volts(v)
	if v, err = floatField(&e.Current, "ENERGY.Current", -1, power.FieldCurrent, &r.Has); err != nil {
		return r, err
	}
	r.Current = power.Amperes(v)
	if v, err = floatField(&e.Factor, "ENERGY.Factor", -1, power.FieldPF, &r.Has); err != nil {
		return r, err
	}
	r.PF = power.PowerFactor(v)
	if v, err = floatField(&e.Frequency, "ENERGY.Frequency", -1, power.FieldFrequency, &r.Has); err != nil {
		return r, err
	}
	r.Frequency = power.Hertz(v)
	if r.Has == 0 {
		return r, fieldErr(ReasonMissingField, "ENERGY.Power", -1)
	}
	tl := lim
	tl.MaxEnergy = lim.MaxTotal
	if err := checkMeter(&r, "ENERGY", &tl); err != nil {
		return r, err
	}
	return r, nil
}
