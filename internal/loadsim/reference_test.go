package loadsim

import (
	"maps"
	"math"
	"slices"
	"testing"
	"time"
)

// TestReferenceDay checks that the published day parses, repeats daily and
// holds what docs/LOADSIM.md says it holds: every appliance, the
// combinations of the working hours, the grid events, and mostly standby.
// It also computes the table of the doc (hours per label, energy), sampled
// every 10 s from the circuit's truth.
func TestReferenceDay(t *testing.T) {
	s := ReferenceDay()
	if s.Repeat != 24*time.Hour {
		t.Fatalf("repeat = %v, want 24h", s.Repeat)
	}
	kinds := map[Kind]int{}
	for _, e := range s.Events {
		kinds[e.Kind]++
	}
	if kinds[KindSurge] != 1 || kinds[KindSag] != 1 || kinds[KindFrequency] != 1 {
		t.Errorf("grid events %v, want one surge, one sag, one frequency excursion", kinds)
	}
	c := NewCircuit(Config{Seed: 1, Schedule: s})
	const step = 10 * time.Second
	secs := map[string]float64{}
	var wh float64
	standby := 0
	for d := time.Duration(0); d < 24*time.Hour; d += step {
		tm := c.Start().Add(d)
		r := c.At(tm)
		wh += float64(r.Power) * step.Hours()
		secs[c.Label(tm)] += step.Seconds()
		if d < 8*time.Hour+30*time.Minute || d >= 22*time.Hour || (d >= 17*time.Hour+30*time.Minute && d < 21*time.Hour) {
			if r.Power > 2 {
				t.Fatalf("standby hours draw %v at %v", r.Power, d)
			}
			standby++
		}
	}
	for _, l := range []string{Nothing, Laptop, "laptop+solder", "3d_printer+laptop", "3d_printer+laptop+printer", "3d_printer+laptop+solder", "laptop+printer"} {
		if secs[l] == 0 {
			t.Errorf("reference day never shows %q (saw %v)", l, secs)
		}
	}
	if h := time.Duration(standby) * step; h != 14*time.Hour {
		t.Errorf("%v of standby, want 14h (0-8:30, 17:30-21, 22-24)", h)
	}
	// The day's energy: about 0.9 kWh, most of it the two 3D prints.
	if wh < 700 || wh > 1100 {
		t.Errorf("day energy %.0f Wh, want about 0.9 kWh", wh)
	}
	for _, l := range slices.Sorted(maps.Keys(secs)) {
		t.Logf("%-28s %6.2f h", l, secs[l]/3600)
	}
	t.Logf("energy %.1f Wh, mean %.1f W", wh, wh/24)
	if math.IsNaN(wh) {
		t.Fatal("NaN energy")
	}
}
