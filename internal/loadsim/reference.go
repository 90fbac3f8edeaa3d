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

// ReferenceDayText is the published reference day: a one-person maker's
// workshop or electronics lab on a working day, the representative duty
// the agent's duty cycle is measured on (docs/LOADSIM.md gives the
// rationale). The hour above is a dense test of every behaviour; the day
// is what a node mostly sees: a long standby night, a morning and an
// afternoon of work on the laptop with two soldering sessions (one while a
// print runs), two 3D prints (2 h 45 min and 1 h 30 min), two 15-minute
// laser-printer sessions, a grid surge during a print, an evening sag, an evening hour on the laptop,
// and a frequency excursion in the night. It repeats every 24 h.
const ReferenceDayText = "0s:nothing; 3h:freq-0.12Hz/30s; " +
	"8h30m:+laptop; 9h15m:+solder; 10h:-solder; 10h15m:+3d_printer; " +
	"11h:+printer; 11h15m:-printer; 12h30m:-laptop; 13h:-3d_printer; " +
	"13h15m:+laptop; 13h30m:+printer; 13h45m:-printer; 15h:+3d_printer; " +
	"15h20m:surge+8V/10s; 15h45m:+solder; 16h25m:-solder; 16h30m:-3d_printer; " +
	"17h30m:-laptop; 19h:sag-10V/3s; 21h:+laptop; 22h:-laptop; repeat=24h"

// ReferenceDay returns ReferenceDayText parsed.
func ReferenceDay() Schedule {
	s, err := ParseSchedule(ReferenceDayText)
	if err != nil {
		panic("loadsim: reference day: " + err.Error()) // covered by TestReferenceDay
	}
	return s
}
