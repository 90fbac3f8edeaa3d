package demo

import (
	"fmt"
	"time"

	"loadwatch/internal/loadsim"
	"loadwatch/internal/safety"
)

// Agent describes one simulated agent of a scenario: its id (the device
// id it reports as), what it shows, the appliance schedule of its circuit
// (loadsim syntax, offsets from the demo's start), the circuit's seed and
// source impedance, and the local safety limits of its relay.
type Agent struct {
	ID    string
	About string // one line printed at start
	// Schedule is a loadsim schedule (see loadsim.ParseSchedule).
	Schedule string
	Seed     int64
	// Impedance is the grid source impedance in ohms (0: loadsim's
	// default 0.47 ohm). A larger one (a long extension lead) makes the
	// voltage sag more when a load switches on.
	Impedance float64
	// Safety are the relay's limits. Every demo agent has a relay; a
	// meter with a relay and a limit is also read every second for the
	// safety check, between duty-cycle wakes.
	Safety safety.Config
}

// Scenario returns the four agents of `loadwatch demo`. Within the first
// minute it shows a load-on sag (office, about 10 s after start), a grid
// surge (bench, at 20 s) and one relay trip on overload (garage, about
// 25 s); their schedules repeat, so the events come back every few
// minutes. Every agent runs appliance combinations.
func Scenario() []Agent {
	// 2.5 kW is a 10 A socket's comfortable limit: it never trips on the
	// demo's loads, but makes the meter a safety-read one (every second).
	def := safety.Config{MaxPower: 2500, Hold: 2 * time.Second, Recovery: 20 * time.Second, MaxRetries: 3}
	return []Agent{
		{
			ID:    "bench",
			About: "laptop, then a soldering station in combination; a +12 V grid surge at 20 s",
			// The surge comes while the laptop alone draws a steady load,
			// so that it is a grid event, not a load step.
			Schedule: "0s:laptop; 20s:surge+12V/8s; 40s:+solder; 2m:-solder; 2m30s:laptop+solder; repeat=3m",
			Seed:     11,
			Safety:   def,
		},
		{
			ID:        "office",
			About:     "laptop, then a laser printer warming up at 10 s on a long extension lead (1.2 ohm): a load-on sag of a few volts",
			Schedule:  "0s:laptop; 10s:+printer; 90s:-laptop; 2m:laptop+printer; repeat=4m",
			Seed:      12,
			Impedance: 1.2,
			Safety:    def,
		},
		{
			ID:    "garage",
			About: "3D printer and laptop, then the soldering station at 20 s: over the 350 W limit, the relay trips after 2 s and recovers 20 s later",
			// 3D printer heat-up (about 300 W) + laptop stays under the
			// limit; the soldering station's heat-up (62.5 W) takes the
			// circuit over it. The 3D printer is switched off at 40 s,
			// before the relay recovers, so the circuit stays within the
			// limit until the next period.
			Schedule: "0s:laptop; 5s:+3d_printer; 20s:+solder; 40s:-3d_printer; 90s:-solder; repeat=5m",
			Seed:     13,
			Safety:   safety.Config{MaxPower: 350, Hold: 2 * time.Second, Recovery: 20 * time.Second, MaxRetries: 3},
		},
		{
			ID:       "studio",
			About:    "soldering station, laptop and 3D printer in changing combinations",
			Schedule: "0s:solder; 15s:laptop+solder; 60s:3d_printer+laptop; 2m30s:nothing; 2m45s:solder; repeat=4m",
			Seed:     14,
			Safety:   def,
		},
	}
}

// circuit builds the loadsim circuit of a, starting at start.
func (a Agent) circuit(start time.Time) (*loadsim.Circuit, error) {
	s, err := loadsim.ParseSchedule(a.Schedule)
	if err != nil {
		return nil, fmt.Errorf("demo: agent %s: %w", a.ID, err)
	}
	return loadsim.NewCircuit(loadsim.Config{Seed: a.Seed, Start: start, Schedule: s, Grid: loadsim.Grid{Impedance: a.Impedance}}), nil
}
