package loadsim

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/power"
)

func collect(t testing.TB, cfg DatasetConfig) []Row {
	t.Helper()
	var rows []Row
	if err := Dataset(cfg, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return rows
}

// allClasses is every subset of the four appliances as a label.
func allClasses() []string {
	names := Appliances()
	var out []string
	for b := 0; b < 16; b++ {
		var on []string
		for i, n := range names {
			if b&(1<<i) != 0 {
				on = append(on, n)
			}
		}
		if len(on) == 0 {
			out = append(out, Nothing)
		} else {
			out = append(out, strings.Join(on, "+"))
		}
	}
	return out
}

func TestDatasetDefault(t *testing.T) {
	rows := collect(t, DatasetConfig{})
	if len(rows) != DefaultRows {
		t.Fatalf("%d rows, want %d", len(rows), DefaultRows)
	}
	counts := map[string]int{}
	var prev power.Reading
	for i, r := range rows {
		counts[r.Label]++
		x := r.Reading
		if want := AllMeterFieldsButAlarm; x.Has != want {
			t.Fatalf("row %d: Has %b, want %b", i, x.Has, want)
		}
		if i > 0 {
			if d := x.Time.Sub(prev.Time); d != time.Second {
				t.Fatalf("row %d: %v after the previous row, want 1s", i, d)
			}
			if x.Energy < prev.Energy {
				t.Fatalf("row %d: energy went back from %v to %v", i, prev.Energy, x.Energy)
			}
		}
		for _, q := range []struct {
			name string
			v    float64
			dec  int
		}{{"voltage", float64(x.Voltage), 1}, {"current", float64(x.Current), 3}, {"power", float64(x.Power), 1}, {"energy", float64(x.Energy), 0}, {"frequency", float64(x.Frequency), 1}, {"pf", float64(x.PF), 2}} {
			p := math.Pow10(q.dec)
			if math.Round(q.v*p)/p != q.v {
				t.Fatalf("row %d: %s %v not at the meter's resolution", i, q.name, q.v)
			}
		}
		if x.PF > 1 || x.Voltage < 200 || x.Voltage > 260 || x.Frequency < 49.5 || x.Frequency > 50.5 {
			t.Fatalf("row %d: implausible %+v", i, x)
		}
		prev = x
	}
	for _, c := range allClasses() {
		if counts[c] == 0 {
			t.Errorf("class %q missing (counts %v)", c, counts)
		}
	}
	// The counter integrates power: the last energy value is the sum of
	// power x 1 s, truncated to whole Wh (within the rounding of P).
	var ws float64
	for _, r := range rows {
		ws += float64(r.Reading.Power)
	}
	if got, want := float64(rows[len(rows)-1].Reading.Energy), ws/3600; got > want+0.01 || got < want-1.01 {
		t.Errorf("final energy %v Wh, want floor of %.2f Wh", got, want)
	}
	// Labels agree with the power: nothing is standby-level, a printer
	// burst is big.
	for i, r := range rows {
		if r.Label == Nothing && r.Reading.Power > 25 && (i == 0 || rows[i-1].Label == Nothing) && (i+1 == len(rows) || rows[i+1].Label == Nothing) {
			t.Errorf("row %d: nothing at %v, inside a run of nothing", i, r.Reading.Power)
		}
	}
}

// AllMeterFieldsButAlarm is what the generator fills in.
const AllMeterFieldsButAlarm = power.AllMeterFields &^ power.FieldAlarm

func TestDatasetSeeds(t *testing.T) {
	a := collect(t, DatasetConfig{Seed: 11, Rows: 600})
	b := collect(t, DatasetConfig{Seed: 11, Rows: 600})
	c := collect(t, DatasetConfig{Seed: 12, Rows: 600})
	same, diff := true, 0
	for i := range a {
		same = same && a[i] == b[i]
		if a[i].Reading != c[i].Reading {
			diff++
		}
	}
	if !same {
		t.Error("same seed gave a different dataset")
	}
	if diff < 300 {
		t.Errorf("seeds 11 and 12 differ in %d of 600 rows", diff)
	}
	// Other seeds cover every class too.
	for seed := int64(2); seed <= 4; seed++ {
		counts := map[string]int{}
		for _, r := range collect(t, DatasetConfig{Seed: seed}) {
			counts[r.Label]++
		}
		if len(counts) != 16 {
			t.Errorf("seed %d: %d classes, want 16: %v", seed, len(counts), counts)
		}
	}
}

func TestDatasetConfig(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rows := collect(t, DatasetConfig{Rows: 10, Interval: 5 * time.Second, Start: start})
	if len(rows) != 10 || !rows[0].Reading.Time.Equal(start.Add(5*time.Second)) || !rows[9].Reading.Time.Equal(start.Add(50*time.Second)) {
		t.Errorf("10 rows at 5 s from %v: got %d rows, %v .. %v", start, len(rows), rows[0].Reading.Time, rows[len(rows)-1].Reading.Time)
	}
	for _, cfg := range []DatasetConfig{{Rows: -1}, {Rows: MaxRows + 1}, {Rows: 1000, Interval: time.Hour}, {Interval: time.Millisecond}, {Interval: 2 * time.Hour}} {
		if err := Dataset(cfg, func(Row) error { return nil }); !errors.Is(err, ErrDataset) {
			t.Errorf("Dataset(%+v) error %v, want ErrDataset", cfg, err)
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := Dataset(DatasetConfig{}, func(Row) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("emit error: got %v after %d rows, want it returned after 1", err, n)
	}
}

func TestQuantise(t *testing.T) {
	full := power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldEnergy | power.FieldFrequency
	tests := []struct {
		in, want power.Reading
	}{
		{power.Reading{Voltage: 230.04, Current: 0.26049, Power: 55.55, Energy: 12.99, Frequency: 49.96, Has: full},
			power.Reading{Voltage: 230, Current: 0.26, Power: 55.6, Energy: 12, Frequency: 50, PF: 0.93, Has: full}},
		// below the starting threshold: power, current and PF read 0
		{power.Reading{Voltage: 229.96, Current: 0.009, Power: 1.2, Energy: 3, Frequency: 50.04, Has: full},
			power.Reading{Voltage: 230, Current: 0, Power: 0, Energy: 3, Frequency: 50, PF: 0, Has: full}},
		{power.Reading{Voltage: 230, Current: 0.02, Power: 0.3, Has: full},
			power.Reading{Voltage: 230, Current: 0, Power: 0, Has: full}},
		// PF never above 1
		{power.Reading{Voltage: 230, Current: 1, Power: 231, Has: full},
			power.Reading{Voltage: 230, Current: 1, Power: 231, PF: 1, Has: full}},
	}
	for _, tc := range tests {
		if got := Quantise(tc.in); got != tc.want {
			t.Errorf("Quantise(%+v) =\n %+v, want\n %+v", tc.in, got, tc.want)
		}
	}
}

func BenchmarkDataset(b *testing.B) {
	for b.Loop() {
		n := 0
		if err := Dataset(DatasetConfig{Seed: 1}, func(Row) error { n++; return nil }); err != nil || n != DefaultRows {
			b.Fatal(err, n)
		}
	}
}
