package dutycycle

import (
	"fmt"
	"math"
	"time"

	"loadwatch/internal/power"
)

// Profile is the current draw of an ESP32-class node in each phase. The
// defaults (ESP32Profile) are chip-level typical figures from Espressif's
// ESP32 Series Datasheet (section "Power Consumption", RF and CPU modes)
// plus commonly measured connection times; docs/AGENT.md lists the source
// of each. A development board's regulator and USB-UART bridge add several
// mA in every phase, deep sleep included: measure your board and set them.
type Profile struct {
	DeepSleepMA float64 // deep sleep with the RTC timer [0.01 mA = 10 uA]

	// The wake stub reads the meter without booting the application or
	// the radio: CPU active, RF off, for the boot plus one meter read.
	StubMA   float64       // [25 mA: modem-sleep figure at 80 MHz, 20-31 mA]
	StubTime time.Duration // [150 ms: ~20 ms stub boot + 110-130 ms PZEM read]

	// A full wake boots the application, connects Wi-Fi, and publishes
	// (MQTT connect, one QoS 1 publish, PUBACK, disconnect).
	BootMA       float64       // [40 mA]
	BootTime     time.Duration // [300 ms]
	ConnectMA    float64       // Wi-Fi association and DHCP, mostly RX listening with TX bursts [120 mA]
	ConnectTime  time.Duration // [1.5 s; about 0.5 s with a static IP and a fast AP, 3 s+ with slow DHCP]
	TransmitMA   float64       // MQTT session and publish [130 mA; TX peaks reach 240 mA]
	TransmitTime time.Duration // [400 ms without TLS; add about 1 s for a TLS handshake]

	// AlwaysOnMA is the average of a node that stays associated with Wi-Fi
	// (modem sleep between DTIM beacons) and reads the meter every wake
	// [30 mA; about 100 mA with power save off].
	AlwaysOnMA float64

	BatteryMAh float64 // usable capacity [2500 mAh, e.g. one 18650 cell after the regulator]
}

// ESP32Profile returns the default profile.
func ESP32Profile() Profile {
	return Profile{
		DeepSleepMA: 0.01,
		StubMA:      25, StubTime: 150 * time.Millisecond,
		BootMA: 40, BootTime: 300 * time.Millisecond,
		ConnectMA: 120, ConnectTime: 1500 * time.Millisecond,
		TransmitMA: 130, TransmitTime: 400 * time.Millisecond,
		AlwaysOnMA: 30,
		BatteryMAh: 2500,
	}
}

// Estimate compares a duty-cycled node with an always-on one over the same
// time.
type Estimate struct {
	Duration          time.Duration
	AvgMA             float64       // duty-cycled average current
	AlwaysOnMA        float64       // always-on average current
	BatteryLife       time.Duration // duty-cycled, on BatteryMAh
	AlwaysOnLife      time.Duration
	Messages          int     // reports sent duty-cycled
	AlwaysOnMessages  int     // one per wake period
	MessagesSavedPct  float64 // 100 * (1 - Messages/AlwaysOnMessages)
	MessagesPerHour   float64
	AlwaysOnPerHour   float64
	ChargeBreakdownMA map[string]float64 // average mA by phase: sleep, stub, confirm, report
}

func (e Estimate) String() string {
	return fmt.Sprintf("%.3f mA avg (always-on %.1f mA), battery %s vs %s, %.0f vs %.0f msg/h (%.1f %% saved)",
		e.AvgMA, e.AlwaysOnMA, roundDur(e.BatteryLife), roundDur(e.AlwaysOnLife),
		e.MessagesPerHour, e.AlwaysOnPerHour, e.MessagesSavedPct)
}

func roundDur(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	}
	return d.Round(time.Minute).String()
}

// Estimate turns the counts of a run with wake period wake into average
// currents, battery lives and message counts. Each confirming read is
// costed as one more stub wake (the node sleeps during ConfirmDelay).
func (p Profile) Estimate(c Counts, wake time.Duration) Estimate {
	dur := c.Duration()
	e := Estimate{Duration: dur, Messages: c.Reports, AlwaysOnMA: p.AlwaysOnMA}
	if dur <= 0 || wake <= 0 {
		return e
	}
	s := dur.Seconds()
	stub := float64(c.Checks) * p.StubMA * p.StubTime.Seconds()
	confirm := float64(c.Confirms) * p.StubMA * p.StubTime.Seconds()
	full := float64(c.Reports) * (p.BootMA*p.BootTime.Seconds() + p.ConnectMA*p.ConnectTime.Seconds() + p.TransmitMA*p.TransmitTime.Seconds())
	awake := float64(c.Checks+c.Confirms)*p.StubTime.Seconds() +
		float64(c.Reports)*(p.BootTime+p.ConnectTime+p.TransmitTime).Seconds()
	sleep := math.Max(0, s-awake) * p.DeepSleepMA
	e.ChargeBreakdownMA = map[string]float64{"sleep": sleep / s, "stub": stub / s, "confirm": confirm / s, "report": full / s}
	e.AvgMA = (sleep + stub + confirm + full) / s
	if e.AvgMA > 0 {
		e.BatteryLife = time.Duration(p.BatteryMAh / e.AvgMA * float64(time.Hour))
	}
	if p.AlwaysOnMA > 0 {
		e.AlwaysOnLife = time.Duration(p.BatteryMAh / p.AlwaysOnMA * float64(time.Hour))
	}
	e.AlwaysOnMessages = int(dur / wake)
	if e.AlwaysOnMessages > 0 {
		e.MessagesSavedPct = 100 * (1 - float64(e.Messages)/float64(e.AlwaysOnMessages))
	}
	e.MessagesPerHour = float64(e.Messages) / dur.Hours()
	e.AlwaysOnPerHour = float64(e.AlwaysOnMessages) / dur.Hours()
	return e
}

// Source gives the meter's reading at a time (a virtual meter, a recorded
// trace). Simulate uses it.
type Source func(t time.Time) power.Reading

// Simulate runs a Machine over [start, start+dur) against src, reading
// whenever the machine asks, and returns its counts and the reports it
// made (each with its reason). It is a pure driver for benchmarks, docs
// and tests; the agent runs the Machine against real time instead.
func Simulate(cfg Config, start time.Time, dur time.Duration, src Source) (Counts, []Sent) {
	m := New(cfg, start)
	end := start.Add(dur)
	var sent []Sent
	for t := m.Next(); t.Before(end); t = m.Next() {
		r := src(t)
		r.Time = t
		if d := m.Observe(r); d.Action == Report {
			sent = append(sent, Sent{Reading: r, Reason: d.Reason})
		}
	}
	c := m.Counts()
	c.End = end
	return c, sent
}

// Sent is one report made during Simulate.
type Sent struct {
	Reading power.Reading
	Reason  Reason
}
