package agent

import (
	"loadwatch/internal/safety"
	"loadwatch/internal/telemetry"
)

// noteRelay runs on the sampling loop after every safety step. When the
// relay's state (closed, open, tripped, latched) differs from the one the
// status last carried, it keeps the new state for the network side and
// asks it to publish the retained status again, so the broker's status
// always says what the relay is doing. A state change without a switching
// counts too (a trip that latches, a relay_off on a tripped relay).
func (a *Agent) noteRelay(d *device) {
	if d.relay == nil {
		return
	}
	s := int32(d.safety.State())
	if d.relayState.Swap(s) == s {
		return
	}
	a.statusDue.Store(true)
	a.wake()
}

// relayFor is the relay member of the status of id: the state of the
// device's relay, or empty when id is not a device with a relay (the
// agent's own id when it has several meters: each device says its own).
func (a *Agent) relayFor(id string) telemetry.RelayState {
	d := a.byID[id]
	if d == nil || d.relay == nil {
		return ""
	}
	return telemetry.RelayState(safety.State(d.relayState.Load()).String())
}
