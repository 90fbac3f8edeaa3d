// Package pzemagent adapts the PZEM-004T driver to the agent: Sensor is a
// *pzem.Dev (so it reads, resets energy and sets the alarm as the agent's
// Sensor, EnergyResetter and AlarmSetter) that also reports the driver's
// per-address link counters in the wire form (the agent's optional
// LinkReporter), so that the agent never imports the driver.
package pzemagent

import (
	"loadwatch/internal/pzem"
	"loadwatch/internal/telemetry"
)

// Sensor is the driver with the link-counter ability.
type Sensor struct {
	*pzem.Dev
}

// LinkStats returns the counters of every address the driver has used.
func (s Sensor) LinkStats() map[uint8]telemetry.LinkCounters {
	all := s.AllStats()
	out := make(map[uint8]telemetry.LinkCounters, len(all))
	for a, st := range all {
		out[a] = Counters(st)
	}
	return out
}

// Counters converts the driver's counters of one address.
func Counters(s pzem.Stats) telemetry.LinkCounters {
	return telemetry.LinkCounters{
		Requests: s.Requests, Replies: s.Replies, CRCErrors: s.CRCErrors, Timeouts: s.Timeouts,
		Exceptions: s.Exceptions, ShortFrames: s.ShortFrames, Resyncs: s.Resyncs, Retries: s.Retries,
		Other: s.Other, LastLatency: s.LastLatency,
	}
}
