package store

import (
	"loadwatch/internal/power"
)

// DeviceLabels returns the label set of a device's meter series.
func DeviceLabels(device string) []Label { return []Label{{Name: LabelDevice, Value: device}} }

// ReadingSamples appends to dst one sample per measured quantity of r
// (voltage, current, power, frequency, power factor), at r.Time, with the
// given labels (usually DeviceLabels). Quantities whose Has bit is clear are
// left out, never stored as 0. The meter's own energy counter is not stored:
// store the reset-proof ledger with EnergySample.
func ReadingSamples(dst []Sample, labels []Label, r power.Reading) []Sample {
	t := Millis(r.Time)
	add := func(f power.Field, metric string, v float64) {
		if r.Is(f) {
			dst = append(dst, Sample{Metric: metric, Labels: labels, T: t, V: v})
		}
	}
	add(power.FieldVoltage, MetricVoltage, float64(r.Voltage))
	add(power.FieldCurrent, MetricCurrent, float64(r.Current))
	add(power.FieldPower, MetricPower, float64(r.Power))
	add(power.FieldFrequency, MetricFrequency, float64(r.Frequency))
	add(power.FieldPF, MetricPowerFactor, float64(r.PF))
	return dst
}

// EnergySample is the ledger's energy total as a MetricEnergy sample in
// joules at time t (ms).
func EnergySample(labels []Label, t int64, total power.WattHours) Sample {
	return Sample{Metric: MetricEnergy, Labels: labels, T: t, V: total.Joules()}
}

// ClassSample is the classifier's current class and confidence (0..1).
func ClassSample(device, class string, t int64, confidence float64) Sample {
	return Sample{Metric: MetricClassConfidence, Labels: []Label{{Name: LabelClass, Value: class}, {Name: LabelDevice, Value: device}}, T: t, V: confidence}
}

// EventSample records one event of the given kind (e.g. "load_on",
// "grid_surge", "relay_trip") as value 1.
func EventSample(device, kind string, t int64) Sample {
	return Sample{Metric: MetricEvents, Labels: []Label{{Name: LabelDevice, Value: device}, {Name: LabelEvent, Value: kind}}, T: t, V: 1}
}
