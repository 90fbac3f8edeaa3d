package bench

import (
	"math"
	"time"

	"loadwatch/internal/loadsim"
	"loadwatch/internal/power"
	"loadwatch/internal/telemetry"
)

// simMeter is one simulated agent's meter and ledger, shared by the live
// fleet and the backfilled history so both send the same kind of data: a
// loadsim circuit read at an offset into its reference day, quantised as
// the PZEM-004T does, with the agent's energy total integrated from the
// readings and a sequence number per reading.
type simMeter struct {
	circ   *loadsim.Circuit
	off    time.Duration // where this device is in the circuit's day
	seq    uint64
	energy float64 // Wh, the agent's ledger
	lastP  float64
	lastAt time.Time
}

// newSimMeter returns the meter of device i, whose circuit comes from pool:
// devices sharing a circuit are 7 minutes apart in its day.
func newSimMeter(pool []*loadsim.Circuit, i int) simMeter {
	return simMeter{circ: pool[i%len(pool)], off: time.Duration(i/len(pool)) * 7 * time.Minute}
}

// read returns the telemetry of a reading at ts (whole milliseconds, UTC),
// since into the simulated day.
func (m *simMeter) read(ts time.Time, since time.Duration) telemetry.Telemetry {
	r := m.circ.At(loadsim.DefaultStart.Add(m.off).Add(since))
	if !m.lastAt.IsZero() {
		m.energy += float64(r.Power) * ts.Sub(m.lastAt).Hours()
	}
	m.lastAt = ts
	r.Energy = power.WattHours(m.energy)
	r.Has |= power.FieldEnergy
	r = loadsim.Quantise(r)
	r.Time = ts
	state := telemetry.StateHeartbeat
	if math.Abs(float64(r.Power)-m.lastP) > 5 {
		state = telemetry.StateActive
	}
	m.lastP = float64(r.Power)
	m.seq++
	return telemetry.Telemetry{Seq: m.seq, ClockSynced: true, Reading: r, EnergyTotal: power.WattHours(m.energy), HasEnergyTotal: true, State: state}
}
