package store

// MetricInfo describes one of the series loadwatch stores, for
// /api/v1/metadata and documentation.
type MetricInfo struct {
	Name   string
	Type   string // Prometheus metric type: gauge or counter
	Unit   string
	Help   string
	Labels []string // labels besides __name__
}

// Metrics lists every series family loadwatch stores.
var Metrics = []MetricInfo{
	{MetricVoltage, "gauge", "volts", "RMS voltage measured by the meter.", []string{LabelDevice}},
	{MetricCurrent, "gauge", "amperes", "RMS current measured by the meter.", []string{LabelDevice}},
	{MetricPower, "gauge", "watts", "Active power measured by the meter.", []string{LabelDevice}},
	{MetricEnergy, "counter", "joules", "Energy used since the device was registered (reset-proof ledger).", []string{LabelDevice}},
	{MetricFrequency, "gauge", "hertz", "Mains frequency measured by the meter.", []string{LabelDevice}},
	{MetricPowerFactor, "gauge", "ratio", "Power factor measured by the meter (0..1).", []string{LabelDevice}},
	{MetricClassConfidence, "gauge", "ratio", "Classifier confidence of the appliance class currently on (label class).", []string{LabelDevice, LabelClass}},
	{MetricEvents, "gauge", "", "One sample of value 1 per detected event (label event: its kind).", []string{LabelDevice, LabelEvent}},
}
