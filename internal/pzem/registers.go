package pzem

import (
	"fmt"
	"time"

	"loadwatch/internal/power"
)

// Input registers (function 0x04): the ten measurement registers.
const (
	RegVoltage     = 0x0000 // 0.1 V
	RegCurrentLow  = 0x0001 // 0.001 A, low word
	RegCurrentHigh = 0x0002
	RegPowerLow    = 0x0003 // 0.1 W, low word
	RegPowerHigh   = 0x0004
	RegEnergyLow   = 0x0005 // 1 Wh, low word
	RegEnergyHigh  = 0x0006
	RegFrequency   = 0x0007 // 0.1 Hz
	RegPF          = 0x0008 // 0.01
	RegAlarm       = 0x0009 // 0xFFFF alarm, 0x0000 none
	NumInput       = 10
)

// Holding registers (functions 0x03 / 0x06).
const (
	RegAlarmThreshold = 0x0001 // 1 W
	RegSlaveAddress   = 0x0002 // 0x01..0xF7
)

// AlarmOn is the value of RegAlarm when the power is above the threshold.
const AlarmOn = 0xFFFF

// CalibrationKey is the data the calibration function (0x41) carries.
var CalibrationKey = []byte{0x37, 0x21}

// Measurements are the ten input registers in raw integer units.
type Measurements struct {
	Voltage   uint16 // 0.1 V
	Current   uint32 // 0.001 A
	Power     uint32 // 0.1 W
	Energy    uint32 // 1 Wh
	Frequency uint16 // 0.1 Hz
	PF        uint16 // 0.01
	Alarm     bool
}

// Registers returns m as the ten input registers (32-bit values low word
// first).
func (m Measurements) Registers() []uint16 {
	alarm := uint16(0)
	if m.Alarm {
		alarm = AlarmOn
	}
	return []uint16{
		m.Voltage,
		uint16(m.Current), uint16(m.Current >> 16),
		uint16(m.Power), uint16(m.Power >> 16),
		uint16(m.Energy), uint16(m.Energy >> 16),
		m.Frequency, m.PF, alarm,
	}
}

// ParseMeasurements reads the ten input registers. Any non-zero alarm
// register counts as an alarm.
func ParseMeasurements(regs []uint16) (Measurements, error) {
	if len(regs) != NumInput {
		return Measurements{}, fmt.Errorf("pzem: %d input registers, want %d", len(regs), NumInput)
	}
	return Measurements{
		Voltage:   regs[RegVoltage],
		Current:   uint32(regs[RegCurrentLow]) | uint32(regs[RegCurrentHigh])<<16,
		Power:     uint32(regs[RegPowerLow]) | uint32(regs[RegPowerHigh])<<16,
		Energy:    uint32(regs[RegEnergyLow]) | uint32(regs[RegEnergyHigh])<<16,
		Frequency: regs[RegFrequency],
		PF:        regs[RegPF],
		Alarm:     regs[RegAlarm] != 0,
	}, nil
}

// Reading converts m to physical units, stamped with t, every meter field set.
func (m Measurements) Reading(t time.Time) power.Reading {
	return power.Reading{
		Time:      t,
		Voltage:   power.Volts(float64(m.Voltage) / 10),
		Current:   power.Amperes(float64(m.Current) / 1000),
		Power:     power.Watts(float64(m.Power) / 10),
		Energy:    power.WattHours(m.Energy),
		Frequency: power.Hertz(float64(m.Frequency) / 10),
		PF:        power.PowerFactor(float64(m.PF) / 100),
		Alarm:     m.Alarm,
		Has:       power.AllMeterFields,
	}
}
