package api

import (
	"time"

	"loadwatch/internal/ingest"
	"loadwatch/internal/power"
	"loadwatch/internal/store"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// IngestSource is what the metrics read from the pipeline
// (*ingest.Pipeline implements it).
type IngestSource interface {
	Devices
	Rejected() map[ingest.RejectKey]uint64
	Stats() ingest.Stats
}

// NewRegistry returns a registry with the Go and process collectors and
// the ingest metrics of src (nil: left out); bus (optional) adds its drop
// counter.
func NewRegistry(src IngestSource, bus *ingest.Bus, now func() time.Time) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src != nil {
		if now == nil {
			now = time.Now
		}
		reg.MustRegister(&ingestCollector{src: src, bus: bus, now: now})
	}
	return reg
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descRejected   = desc("loadwatch_ingest_rejected_total", "Messages or readings refused or dropped by ingest, by device and reason (duplicate: a replay acknowledged without storing it again).", "device", "reason")
	descMessages   = desc("loadwatch_ingest_messages_total", "MQTT messages handled by ingest.")
	descReadings   = desc("loadwatch_ingest_readings_total", "Readings stored.")
	descEvents     = desc("loadwatch_ingest_events_total", "Events stored (device's own and server-side).")
	descClassified = desc("loadwatch_ingest_classified_total", "Readings classified, by where the features came from (agent or server).", "features")
	descBusDropped = desc("loadwatch_events_dropped_total", "Events lost by slow live-stream subscribers.")
	descVoltage    = desc(store.MetricVoltage, "RMS voltage of the newest reading.", "device")
	descCurrent    = desc(store.MetricCurrent, "RMS current of the newest reading.", "device")
	descPower      = desc(store.MetricPower, "Active power of the newest reading.", "device")
	descEnergy     = desc(store.MetricEnergy, "Energy total (reset-proof ledger) of the newest reading.", "device")
	descFrequency  = desc(store.MetricFrequency, "Mains frequency of the newest reading.", "device")
	descPF         = desc(store.MetricPowerFactor, "Power factor of the newest reading.", "device")
	descConfidence = desc(store.MetricClassConfidence, "Classifier confidence of the newest reading's class.", "device", "class")
	descLastSeen   = desc("loadwatch_device_last_seen_timestamp_seconds", "When the device's last message was received (Unix time).", "device")
	descSkew       = desc("loadwatch_device_clock_skew_seconds", "Device reading time minus server receive time of its last live reading (positive: device clock ahead).", "device")
	descUp         = desc("loadwatch_device_up", "1 when the device is online or asleep, 0 when offline.", "device")
)

type ingestCollector struct {
	src IngestSource
	bus *ingest.Bus
	now func() time.Time
}

func (c *ingestCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRejected, descMessages, descReadings, descEvents, descClassified, descBusDropped,
		descVoltage, descCurrent, descPower, descEnergy, descFrequency, descPF, descConfidence, descLastSeen, descSkew, descUp} {
		ch <- d
	}
}

func (c *ingestCollector) Collect(ch chan<- prometheus.Metric) {
	for k, v := range c.src.Rejected() {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(v), k.Device, k.Reason)
	}
	s := c.src.Stats()
	ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(s.Messages))
	ch <- prometheus.MustNewConstMetric(descReadings, prometheus.CounterValue, float64(s.Readings))
	ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(s.Events))
	ch <- prometheus.MustNewConstMetric(descClassified, prometheus.CounterValue, float64(s.AgentFeatures), "agent")
	ch <- prometheus.MustNewConstMetric(descClassified, prometheus.CounterValue, float64(s.ServerFeatures), "server")
	if c.bus != nil {
		ch <- prometheus.MustNewConstMetric(descBusDropped, prometheus.CounterValue, float64(c.bus.Dropped()))
	}
	now := c.now()
	for _, d := range c.src.Devices() {
		if !d.LastSeen.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastSeen, prometheus.GaugeValue, float64(d.LastSeen.UnixMilli())/1000, d.ID)
		}
		up := 1.0
		if d.StateAt(now, 30*time.Second, 15*time.Minute) == ingest.StateOffline {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, d.ID)
		if d.HasSkew {
			ch <- prometheus.MustNewConstMetric(descSkew, prometheus.GaugeValue, d.ClockSkew.Seconds(), d.ID)
		}
		if !d.HasReading {
			continue
		}
		r := &d.Reading
		gauge := func(f power.Field, dd *prometheus.Desc, v float64) {
			if r.Is(f) {
				ch <- prometheus.MustNewConstMetric(dd, prometheus.GaugeValue, v, d.ID)
			}
		}
		gauge(power.FieldVoltage, descVoltage, float64(r.Voltage))
		gauge(power.FieldCurrent, descCurrent, float64(r.Current))
		gauge(power.FieldPower, descPower, float64(r.Power))
		gauge(power.FieldFrequency, descFrequency, float64(r.Frequency))
		gauge(power.FieldPF, descPF, float64(r.PF))
		if d.HasEnergy {
			ch <- prometheus.MustNewConstMetric(descEnergy, prometheus.CounterValue, d.Energy.Joules(), d.ID)
		}
		if d.Classified {
			ch <- prometheus.MustNewConstMetric(descConfidence, prometheus.GaugeValue, d.Confidence, d.ID, d.Class)
		}
	}
}
