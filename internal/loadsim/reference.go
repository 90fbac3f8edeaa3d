package loadsim

// ReferenceScheduleText is the published reference hour used to benchmark
// the agent's duty cycle (docs/LOADSIM.md explains each step). It repeats
// every hour: standby only, a laptop alone (steady with level changes), the
// soldering station added (thermostat cycling), the laser printer (ready
// plateau with fuser bursts), a grid surge with the load flat, the 3D
// printer (heat-up then bed cycling) in combination, a sag, loads going
// off one by one, and a frequency excursion at the end.
const ReferenceScheduleText = "0s:nothing; 2m:+laptop; 10m:+solder; 18m:-solder; " +
	"20m:+printer; 30m:surge+8V/10s; 32m:+3d_printer; 45m:-printer; " +
	"50m:sag-10V/3s; 52m:-laptop; 55m:-3d_printer; 58m:freq-0.15Hz/20s; repeat=1h"

// ReferenceSchedule returns ReferenceScheduleText parsed.
func ReferenceSchedule() Schedule {
	s, err := ParseSchedule(ReferenceScheduleText)
	if err != nil {
		panic("loadsim: reference schedule: " + err.Error()) // covered by TestReferenceSchedule
	}
	return s
}
