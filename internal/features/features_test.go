package features

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"loadwatch/internal/power"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func idx(t *testing.T, name string) int {
	t.Helper()
	i := slices.Index(lw1Names, name)
	if i < 0 {
		t.Fatalf("no feature %q", name)
	}
	return i
}

func push(t *testing.T, e *Extractor, rs []power.Reading) [][]float32 {
	t.Helper()
	var outs [][]float32
	for _, r := range rs {
		out := make([]float32, e.NumFeatures())
		e.Push(r, out)
		outs = append(outs, out)
	}
	return outs
}

func full(sec float64, v, i, p, pf float64) power.Reading {
	return power.Reading{
		Time:    t0.Add(time.Duration(sec * float64(time.Second))),
		Voltage: power.Volts(v), Current: power.Amperes(i), Power: power.Watts(p), PF: power.PowerFactor(pf), Frequency: 50,
		Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldPF | power.FieldFrequency,
	}
}

func pOnly(sec float64, p float64) power.Reading {
	return power.Reading{Time: t0.Add(time.Duration(sec * float64(time.Second))), Power: power.Watts(p), Has: power.FieldPower}
}

func near(a float32, b float64) bool {
	if math.IsNaN(b) {
		return math.IsNaN(float64(a))
	}
	return math.Abs(float64(a)-b) <= 1e-3*math.Max(1, math.Abs(b))
}

func TestNames(t *testing.T) {
	n, err := Names(SetLW1)
	if err != nil || len(n) != iSt+stBins {
		t.Fatalf("lw1: %d names (want %d), %v", len(n), iSt+stBins, err)
	}
	if n[iSt] != "st_4w" || n[len(n)-1] != "st_3000w" {
		t.Errorf("state tracker bins %s..%s", n[iSt], n[len(n)-1])
	}
	for _, name := range n {
		if name == "energy" || name == "e" {
			t.Errorf("lw1 must not hold the raw counter: %q", name)
		}
	}
	if n, _ := Names(SetLegacy); !slices.Equal(n, []string{"power", "energy"}) {
		t.Errorf("legacy = %v", n)
	}
	if _, err := New("nope", Config{}); !errors.Is(err, ErrUnknownSet) {
		t.Errorf("unknown set: %v", err)
	}
}

func TestInstantaneous(t *testing.T) {
	e, _ := New(SetLW1, Config{})
	outs := push(t, e, []power.Reading{
		full(0, 230, 1, 200, 200.0/230),
		full(1, 220, 2, 400, 400.0/440),
	})
	o := outs[1]
	s := 220.0 * 2
	q := math.Sqrt(s*s - 400*400)
	q0 := math.Sqrt(230*230 - 200*200)
	cases := []struct {
		name string
		want float64
	}{
		{"p", 400}, {"i", 2}, {"vrms", 220}, {"pf", 400.0 / 440}, {"f", 50},
		{"p_norm", 400 * (230.0 / 220) * (230.0 / 220)},
		{"s", s}, {"q", q},
		{"dp", 200}, {"dq", q - q0}, {"dv", -10},
		{"p_mean_10s", 300}, {"p_min_10s", 200}, {"p_max_10s", 400},
		// 1 s of data is not a 10 s spread.
		{"p_std_10s", math.NaN()},
		{"p_std_60s", math.NaN()}, {"p_std_300s", math.NaN()},
		{"e_rate", math.NaN()},
	}
	for _, c := range cases {
		if got := o[idx(t, c.name)]; !near(got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	// The first reading has no steps.
	for _, name := range []string{"dp", "dq", "dv"} {
		if v := outs[0][idx(t, name)]; !math.IsNaN(float64(v)) {
			t.Errorf("first reading %s = %v, want NaN", name, v)
		}
	}
}

func TestMissingColumnsAreNaN(t *testing.T) {
	e, _ := New(SetLW1, Config{})
	o := push(t, e, []power.Reading{pOnly(0, 10), pOnly(2, 12)})[1]
	for _, name := range []string{"i", "vrms", "pf", "f", "p_norm", "s", "q", "dq", "dv", "e_rate"} {
		if v := o[idx(t, name)]; !math.IsNaN(float64(v)) {
			t.Errorf("%s = %v, want NaN for a power-only stream", name, v)
		}
	}
	if o[idx(t, "p")] != 12 || o[idx(t, "dp")] != 2 {
		t.Errorf("p, dp = %v, %v", o[idx(t, "p")], o[idx(t, "dp")])
	}
}

func TestGapResets(t *testing.T) {
	e, _ := New(SetLW1, Config{MaxGap: 10 * time.Second})
	outs := push(t, e, []power.Reading{pOnly(0, 100), pOnly(5, 300), pOnly(100, 50)})
	o := outs[2]
	if !math.IsNaN(float64(o[idx(t, "dp")])) || o[idx(t, "p_mean_10s")] != 50 || !math.IsNaN(float64(o[idx(t, "p_std_300s")])) {
		t.Errorf("after the gap: dp %v, mean %v, std %v", o[idx(t, "dp")], o[idx(t, "p_mean_10s")], o[idx(t, "p_std_300s")])
	}
	if o[idx(t, "st_169w")] != 0 {
		t.Errorf("state tracker survived the gap: %v", o[idx(t, "st_169w")])
	}
}

func TestEvents(t *testing.T) {
	e, _ := New(SetLW1, Config{})
	outs := push(t, e, []power.Reading{pOnly(0, 100), pOnly(1, 104), pOnly(2, 150), pOnly(3, 151), pOnly(5, 152)})
	// 100 -> 104 is below 8 W and no edge; 104 -> 150 is one (46 W,
	// booked in the 40-53 W bin when it ends); later drifts are not.
	bin := idx(t, "st_40w")
	if outs[1][bin] != 0 || outs[2][bin] != 0 || outs[3][bin] != 1 || outs[4][bin] != 1 {
		t.Errorf("40 W bin over time: %v %v %v %v", outs[1][bin], outs[2][bin], outs[3][bin], outs[4][bin])
	}
}

func TestEnergyRate(t *testing.T) {
	e, _ := New(SetLW1, Config{EnergyWrap: 1000})
	ri := idx(t, "e_rate")
	var got []float32
	// 360 W = 0.1 Wh/s: counter steps of 1 Wh every 10 s. It wraps at
	// 1000 Wh and is reset to 0 once.
	c := 990.0
	for s := 0; s <= 400; s += 10 {
		switch s {
		case 100:
			c = 0.0 // wrapped (990 + 10 steps = 1000 -> 0)
		case 250:
			c = 0 // explicit reset from 15 Wh: one interval is lost
		}
		r := pOnly(float64(s), 360)
		r.Energy, r.Has = power.WattHours(c), r.Has|power.FieldEnergy
		out := make([]float32, e.NumFeatures())
		e.Push(r, out)
		got = append(got, out[ri])
		c++
	}
	if !math.IsNaN(float64(got[3])) {
		t.Errorf("rate before a minute of data = %v, want NaN", got[3])
	}
	if !near(got[12], 360) { // t = 120 s, across the wrap
		t.Errorf("rate across wrap = %v, want 360", got[12])
	}
	// At 400 s the window (100..400 s) holds the reset interval where
	// 1 Wh of 30 was lost: 29 Wh over 300 s = 348 W.
	if !near(got[40], 29*3600.0/300) || got[40] < 0 {
		t.Errorf("rate after reset = %v, want %v", got[40], 29*3600.0/300)
	}
}

// TestWindowsMatchBruteForce compares the incremental windows with a
// direct computation over irregular timestamps, gaps and a small ring.
func TestWindowsMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, capacity := range []int{1024, 16, 100} {
		cfg := Config{MaxGap: 40 * time.Second, Capacity: capacity}
		e, _ := New(SetLW1, cfg)
		var hist []power.Reading
		var start time.Time
		sec := 0.0
		for n := 0; n < 3000; n++ {
			step := 1 + rng.Float64()*7
			if n >= 1000 && n < 2500 {
				step = 0.05 + rng.Float64()*0.2 // fast: the rings grow to the limit
			}
			if rng.IntN(200) == 0 {
				step = 60 // a gap
			}
			sec += step
			r := pOnly(sec, math.Round(rng.Float64()*500*10)/10)
			if len(hist) > 0 && r.Time.Sub(hist[len(hist)-1].Time) > cfg.MaxGap {
				hist = hist[:0]
			}
			if len(hist) == 0 {
				start = r.Time
			}
			hist = append(hist, r)
			out := make([]float32, e.NumFeatures())
			e.Push(r, out)
			for k, span := range windows {
				var in []float64
				for j := len(hist) - 1; j >= 0 && len(hist)-j <= capacity; j-- {
					if r.Time.Sub(hist[j].Time) > span {
						break
					}
					in = append(in, float64(hist[j].Power))
				}
				var sum, mn, mx = 0.0, math.Inf(1), math.Inf(-1)
				for _, v := range in {
					sum += v
					mn, mx = min(mn, v), max(mx, v)
				}
				mean := sum / float64(len(in))
				var ss float64
				for _, v := range in {
					ss += (v - mean) * (v - mean)
				}
				std := math.Sqrt(ss / float64(len(in)))
				if len(in) < 2 || 2*r.Time.Sub(start) < span {
					std = math.NaN()
				}
				if k > 0 {
					if got := out[iWin+3+k]; math.IsNaN(std) != math.IsNaN(float64(got)) || math.Abs(float64(got)-std) > 0.05 {
						t.Fatalf("cap %d reading %d window %v: std %v, want %v", capacity, n, span, got, std)
					}
					continue
				}
				b := iWin
				if !near(out[b], mean) || !near(out[b+1], mn) || !near(out[b+2], mx) || math.IsNaN(std) != math.IsNaN(float64(out[b+3])) || math.Abs(float64(out[b+3])-std) > 0.05 {
					t.Fatalf("cap %d reading %d window %v: got mean/min/max/std %v %v %v %v, want %v %v %v %v",
						capacity, n, span, out[b], out[b+1], out[b+2], out[b+3], mean, mn, mx, std)
				}
			}
		}
	}
}

// TestCausal changes the readings after row k and checks that the features
// of rows 0..k do not change.
func TestCausal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	base := make([]power.Reading, 400)
	for i := range base {
		base[i] = full(float64(i)*1.5, 225+rng.Float64()*10, rng.Float64()*3, rng.Float64()*600, rng.Float64())
		base[i].Energy, base[i].Has = power.WattHours(i/5), base[i].Has|power.FieldEnergy
	}
	e, _ := New(SetLW1, Config{})
	want := push(t, e, base)
	for _, k := range []int{0, 57, 200, 398} {
		changed := slices.Clone(base)
		for j := k + 1; j < len(changed); j++ {
			changed[j].Power = power.Watts(rng.Float64() * 3000)
			changed[j].Energy = 0
		}
		e, _ := New(SetLW1, Config{})
		got := push(t, e, changed)
		for i := 0; i <= k; i++ {
			for f := range got[i] {
				a, b := got[i][f], want[i][f]
				if a != b && !(math.IsNaN(float64(a)) && math.IsNaN(float64(b))) {
					t.Fatalf("row %d feature %s changed (%v -> %v) when rows after %d changed", i, lw1Names[f], b, a, k)
				}
			}
		}
	}
}

// TestStateTracker switches two loads of different size on and off, with
// one switch spread over two reads by the meter's averaging.
func TestStateTracker(t *testing.T) {
	e, _ := New(SetLW1, Config{})
	fan, lamp := idx(t, "st_22w"), idx(t, "st_40w")
	seq := []struct {
		p         float64
		fan, lamp float32
	}{
		{40, 0, 0}, // background of unlabelled loads
		{40, 0, 0},
		{54, 0, 0},  // fan on, half of it in this read
		{66, 0, 0},  // ... the rest in this one
		{66, 1, 0},  // edge ends: +26 W booked
		{113, 1, 0}, // lamp on (+47 W)
		{113, 1, 1},
		{87, 1, 1}, // fan off (-26 W)
		{87, 0, 1},
		{40, 0, 1}, // lamp off
		{40, 0, 0},
	}
	out := make([]float32, e.NumFeatures())
	for i, s := range seq {
		e.Push(pOnly(float64(i), s.p), out)
		if out[fan] != s.fan || out[lamp] != s.lamp {
			t.Errorf("reading %d (%v W): fan bin %v lamp bin %v, want %v %v", i, s.p, out[fan], out[lamp], s.fan, s.lamp)
		}
	}
}

func TestLegacy(t *testing.T) {
	e, _ := New(SetLegacy, Config{})
	r := pOnly(0, 42)
	out := make([]float32, 2)
	e.Push(r, out)
	if out[0] != 42 || !math.IsNaN(float64(out[1])) {
		t.Errorf("legacy without energy = %v", out)
	}
	r.Energy, r.Has = 7, r.Has|power.FieldEnergy
	e.Push(r, out)
	if out[0] != 42 || out[1] != 7 {
		t.Errorf("legacy = %v", out)
	}
}

func TestStreamsSeparateDevices(t *testing.T) {
	s, err := NewStreams(SetLW1, Config{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, s.NumFeatures())
	s.Push("a", pOnly(0, 100), out)
	s.Push("b", pOnly(0.5, 5), out)
	s.Push("a", pOnly(1, 120), out)
	if out[idx(t, "dp")] != 20 || out[idx(t, "p_min_10s")] != 100 {
		t.Errorf("device a mixed with b: dp %v min %v", out[idx(t, "dp")], out[idx(t, "p_min_10s")])
	}
}

// TestGrowingRingsMatchFull: buffers that start small and grow give bit
// for bit the features of buffers allocated at full capacity, through
// slow and fast phases, gaps, energy wraps and resets.
func TestGrowingRingsMatchFull(t *testing.T) {
	names, _ := Names(SetLW1)
	for _, capacity := range []int{1024, 100, 16} {
		cfg := Config{MaxGap: 40 * time.Second, Capacity: capacity}.withDefaults()
		small := newExtractor(SetLW1, len(names), cfg, minRing)
		big := newExtractor(SetLW1, len(names), cfg, capacity)
		rng := rand.New(rand.NewPCG(7, uint64(capacity)))
		a, b := make([]float32, len(names)), make([]float32, len(names))
		sec, energy := 0.0, 9_999_000.0
		for n := range 6000 {
			step := 2 + rng.Float64()*8
			switch {
			case n%2000 > 1200:
				step = 0.1 + rng.Float64()*0.3
			case rng.IntN(300) == 0:
				step = 90
			}
			sec += step
			energy += rng.Float64() * 2
			if energy >= 10_000_000 {
				energy -= 10_000_000
			}
			r := full(sec, 230+rng.Float64()*4, rng.Float64()*3, math.Round(rng.Float64()*700), 0.9)
			r.Energy, r.Has = power.WattHours(math.Floor(energy)), r.Has|power.FieldEnergy
			small.Push(r, a)
			big.Push(r, b)
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) && !(a[i] != a[i] && b[i] != b[i]) {
					t.Fatalf("cap %d reading %d: %s = %v growing, %v preallocated", capacity, n, names[i], a[i], b[i])
				}
			}
		}
		if small.RingSlots() > capacity {
			t.Errorf("cap %d: ring grew to %d", capacity, small.RingSlots())
		}
	}
}

// TestRingsFollowTheRate: a slow stream keeps small buffers, a fast one
// grows them to Capacity and no further.
func TestRingsFollowTheRate(t *testing.T) {
	for _, c := range []struct {
		every    time.Duration
		min, max int
	}{
		{5 * time.Second, 60, 128},           // 300 s / 5 s = 60 readings in the longest window
		{10 * time.Second, 30, 64},           // 30
		{time.Second, 300, 512},              // 300
		{100 * time.Millisecond, 1024, 1024}, // 3,000: capped
	} {
		e, _ := New(SetLW1, Config{})
		out := make([]float32, e.NumFeatures())
		r := full(0, 230, 1, 200, 0.87)
		r.Has |= power.FieldEnergy
		for range int(time.Hour / c.every) {
			r.Time = r.Time.Add(c.every)
			r.Power = 200 + power.Watts(r.Time.Unix()%7)
			r.Energy += 0.01
			e.Push(r, out)
		}
		if got := e.RingSlots(); got < c.min || got > c.max {
			t.Errorf("one reading every %v: %d ring slots, want %d..%d", c.every, got, c.min, c.max)
		}
		if e.eCap > c.max {
			t.Errorf("one reading every %v: %d energy slots, want <= %d", c.every, e.eCap, c.max)
		}
	}
}

func TestPushAllocatesNothing(t *testing.T) {
	e, _ := New(SetLW1, Config{})
	out := make([]float32, e.NumFeatures())
	r := full(0, 230, 1, 200, 0.87)
	r.Has |= power.FieldEnergy
	// Let the buffers grow to this rate first: after that, nothing.
	for range 400 {
		r.Time = r.Time.Add(1300 * time.Millisecond)
		r.Power += 3
		r.Energy += 0.1
		e.Push(r, out)
	}
	allocs := testing.AllocsPerRun(2000, func() {
		r.Time = r.Time.Add(1300 * time.Millisecond)
		r.Power += 3
		r.Energy += 0.1
		e.Push(r, out)
	})
	if allocs != 0 {
		t.Errorf("Push allocates %v times per reading", allocs)
	}
}

func BenchmarkPush(b *testing.B) {
	e, _ := New(SetLW1, Config{})
	out := make([]float32, e.NumFeatures())
	r := full(0, 230, 1, 200, 0.87)
	r.Has |= power.FieldEnergy
	i := 0
	for b.Loop() {
		i++
		r.Time = r.Time.Add(time.Second)
		r.Power = power.Watts(100 + i%50)
		r.Energy += 0.05
		e.Push(r, out)
	}
}

// TestStateTrackerSlowRampDown: a load that ramps down in steps too small to
// be edges is cleared once the total is below its size.
func TestStateTrackerSlowRampDown(t *testing.T) {
	e, _ := New(SetLW1, Config{})
	bin := idx(t, "st_40w")
	out := make([]float32, e.NumFeatures())
	ps := []float64{0, 45, 45, 41, 38, 35, 32, 30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0}
	for i, p := range ps {
		e.Push(pOnly(float64(i), p), out)
		if i == 2 && out[bin] != 1 {
			t.Fatalf("45 W load not booked: %v", out[bin])
		}
	}
	if out[bin] != 0 {
		t.Errorf("load still counted at 0 W: %v", out[bin])
	}
}
