// Package power holds the electrical quantities loadwatch measures, each in
// its own type so that a unit lives in the type and not in a comment.
// It imports only the standard library.
package power

import (
	"math"
	"strconv"
	"time"
)

// Volts is an RMS voltage.
type Volts float64

// Amperes is an RMS current.
type Amperes float64

// Watts is an active power.
type Watts float64

// WattHours is an energy.
type WattHours float64

// Hertz is a mains frequency.
type Hertz float64

// PowerFactor is the ratio of active to apparent power, 0..1.
type PowerFactor float64

func format(v float64, prec int, unit string) string {
	return strconv.FormatFloat(v, 'f', prec, 64) + " " + unit
}

func (v Volts) String() string       { return format(float64(v), 1, "V") }
func (a Amperes) String() string     { return format(float64(a), 3, "A") }
func (w Watts) String() string       { return format(float64(w), 1, "W") }
func (e WattHours) String() string   { return format(float64(e), 0, "Wh") }
func (f Hertz) String() string       { return format(float64(f), 1, "Hz") }
func (p PowerFactor) String() string { return strconv.FormatFloat(float64(p), 'f', 2, 64) }

// Joules converts an energy to joules (the base unit used in metrics).
func (e WattHours) Joules() float64 { return float64(e) * 3600 }

// Field names one quantity of a Reading.
type Field uint16

// The fields a Reading may carry.
const (
	FieldVoltage Field = 1 << iota
	FieldCurrent
	FieldPower
	FieldEnergy
	FieldFrequency
	FieldPF
	FieldAlarm
)

// AllMeterFields is what a PZEM-004T v3 reports in one read.
const AllMeterFields = FieldVoltage | FieldCurrent | FieldPower | FieldEnergy | FieldFrequency | FieldPF | FieldAlarm

// Reading is one measurement of one meter. Has says which fields were
// measured: a source that lacks a quantity leaves its bit clear, and the
// value must then be ignored (it is never a stand-in such as 0 or 230 V).
type Reading struct {
	Time      time.Time
	Voltage   Volts
	Current   Amperes
	Power     Watts
	Energy    WattHours // the meter's own cumulative counter
	Frequency Hertz
	PF        PowerFactor
	Alarm     bool
	Has       Field
}

// Is reports whether all of the fields in f were measured.
func (r Reading) Is(f Field) bool { return r.Has&f == f }

// Apparent returns S = V x I in volt-amperes, and false when V or I is missing.
func (r Reading) Apparent() (float64, bool) {
	if !r.Is(FieldVoltage | FieldCurrent) {
		return 0, false
	}
	return float64(r.Voltage) * float64(r.Current), true
}

// Reactive returns Q = sqrt(S^2 - P^2) in var (never negative), and false
// when V, I or P is missing.
func (r Reading) Reactive() (float64, bool) {
	s, ok := r.Apparent()
	if !ok || !r.Is(FieldPower) {
		return 0, false
	}
	d := s*s - float64(r.Power)*float64(r.Power)
	if d <= 0 {
		return 0, true
	}
	return math.Sqrt(d), true
}
