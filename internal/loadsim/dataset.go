package loadsim

import (
	"errors"
	"fmt"
	"math"
	"time"

	"loadwatch/internal/power"
)

// DatasetConfig configures Dataset. Zero fields take the defaults.
type DatasetConfig struct {
	Rows     int           // default 2452, the size of the original design's set; rows x interval at most 30 days
	Seed     int64         // circuit seed
	Interval time.Duration // time between rows; default 1 s
	Start    time.Time     // first block starts here; default DefaultStart
}

// Dataset defaults and limits.
const (
	DefaultRows    = 2452
	MaxRows        = 10_000_000
	datasetBlocks  = 48 // three passes over the 16 appliance sets
	meterWindow    = time.Second
	meterSubsample = 10
)

// ErrDataset is wrapped by Dataset's configuration errors.
var ErrDataset = errors.New("bad dataset configuration")

// Row is one labelled reading of a generated dataset.
type Row struct {
	Reading power.Reading // voltage, current, power, energy, frequency, pf
	Label   string
}

// Weights of a dataset block's length per appliance in the set: the
// soldering station draws about 30 % and the printer about 25 % of the time
// they are on, so sets with them get longer blocks and their combinations
// enough rows.
const (
	solderBlockWeight  = 2.5
	printerBlockWeight = 3
)

// DatasetSchedule is the plan Dataset records: a walk through all 16
// on/off sets of the four appliances in Gray-code order (one appliance
// switches per block, as in real life), three times over. Block lengths
// are weighted so that the rarer drawing states get rows too; together
// they cover rows x interval.
func DatasetSchedule(rows int, interval time.Duration) Schedule {
	names := Appliances()
	gray := func(b int) int { g := b % 16; return g ^ g>>1 }
	weight := func(g int) float64 {
		w := 1.0
		for i, n := range names {
			if g&(1<<i) == 0 {
				continue
			}
			switch n {
			case Solder:
				w *= solderBlockWeight
			case Printer:
				w *= printerBlockWeight
			}
		}
		return w
	}
	total := 0.0
	for b := 0; b < datasetBlocks; b++ {
		total += weight(gray(b))
	}
	span := float64(time.Duration(rows) * interval)
	var sc Schedule
	prev, at := 0, 0.0
	for b := 0; b < datasetBlocks; b++ {
		g := gray(b)
		off := time.Duration(at).Round(interval)
		for i, n := range names {
			bit := 1 << i
			if b == 0 || g&bit != prev&bit {
				sc.Events = append(sc.Events, Event{At: off, Kind: KindSwitch, Appliance: n, On: g&bit != 0})
			}
		}
		prev = g
		at += span * weight(g) / total
	}
	return sc
}

// Dataset generates a labelled readings dataset and passes each row to
// emit in time order. Each row is what a PZEM-004T would report: the
// circuit averaged over the second before the row's time (the meter's
// refresh window), quantised to the meter's resolution (0.1 V, 0.001 A,
// 0.1 W, 1 Wh, 0.1 Hz, 0.01), with its starting threshold (below 0.4 W or
// 0.01 A it reads 0) and an energy counter integrating power. The label is
// the set of appliances drawing during most of that window.
func Dataset(cfg DatasetConfig, emit func(Row) error) error {
	if cfg.Rows == 0 {
		cfg.Rows = DefaultRows
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Rows < 0 || cfg.Rows > MaxRows {
		return fmt.Errorf("%w: rows %d not in 1..%d", ErrDataset, cfg.Rows, MaxRows)
	}
	if cfg.Interval < 100*time.Millisecond || cfg.Interval > time.Hour {
		return fmt.Errorf("%w: interval %v not in 100ms..1h", ErrDataset, cfg.Interval)
	}
	if time.Duration(cfg.Rows) > maxOffset/cfg.Interval {
		return fmt.Errorf("%w: %d rows of %v span more than %v", ErrDataset, cfg.Rows, cfg.Interval, maxOffset)
	}
	if cfg.Start.IsZero() {
		cfg.Start = DefaultStart
	}
	c := NewCircuit(Config{Seed: cfg.Seed, Start: cfg.Start, Schedule: DatasetSchedule(cfg.Rows, cfg.Interval)})
	win := min(meterWindow, cfg.Interval)
	step := win / meterSubsample
	var energyWs float64
	var counts [16]int
	var buf [4]drawn
	for i := 0; i < cfg.Rows; i++ {
		t := cfg.Start.Add(time.Duration(i+1) * cfg.Interval)
		var v, cur, p, f float64
		clear(counts[:])
		c.mu.Lock()
		for k := meterSubsample - 1; k >= 0; k-- {
			r, ls := c.state(t.Add(-time.Duration(k)*step), buf[:0])
			v += float64(r.Voltage)
			cur += float64(r.Current)
			p += float64(r.Power)
			f += float64(r.Frequency)
			counts[labelBits(ls)]++
		}
		c.mu.Unlock()
		v, cur, p, f = v/meterSubsample, cur/meterSubsample, p/meterSubsample, f/meterSubsample
		energyWs += p * cfg.Interval.Seconds() // the averaged power holds for the whole interval
		r := Quantise(power.Reading{
			Time: t, Voltage: power.Volts(v), Current: power.Amperes(cur), Power: power.Watts(p),
			Frequency: power.Hertz(f), Energy: power.WattHours(energyWs / 3600),
			Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldEnergy | power.FieldFrequency | power.FieldPF,
		})
		best := 0
		for b := range counts {
			if counts[b] > counts[best] {
				best = b
			}
		}
		if err := emit(Row{Reading: r, Label: bitsLabel(best)}); err != nil {
			return err
		}
	}
	return nil
}

// Quantise applies the PZEM-004T's resolution and starting threshold to a
// true reading: 0.1 V, 0.001 A, 0.1 W, 1 Wh (truncated, as a counter),
// 0.1 Hz, PF 0.01 computed from P / (V x I); below 0.4 W or 0.01 A current,
// power and PF read 0.
func Quantise(r power.Reading) power.Reading {
	// round(x*10^d)/10^d is the float64 nearest the decimal, so the values
	// print as short decimals (230.1, not 230.10000000000002).
	q := func(x float64, decimals int) float64 {
		p := math.Pow10(decimals)
		return math.Round(x*p) / p
	}
	pf := 0.0
	if s := float64(r.Voltage) * float64(r.Current); s > 0 {
		pf = math.Min(1, float64(r.Power)/s)
	}
	if r.Power < 0.4 || r.Current < 0.01 {
		r.Power, r.Current, pf = 0, 0, 0
	}
	r.Voltage = power.Volts(q(float64(r.Voltage), 1))
	r.Current = power.Amperes(q(float64(r.Current), 3))
	r.Power = power.Watts(q(float64(r.Power), 1))
	r.Energy = power.WattHours(math.Floor(float64(r.Energy)))
	r.Frequency = power.Hertz(q(float64(r.Frequency), 1))
	r.PF = power.PowerFactor(q(pf, 2))
	return r
}

// labelBits turns the drawing appliances into a bit set in Appliances()
// order.
func labelBits(ls []drawn) int {
	b := 0
	for _, x := range ls {
		if !x.l.active {
			continue
		}
		for i, n := range Appliances() {
			if n == x.name {
				b |= 1 << i
			}
		}
	}
	return b
}

func bitsLabel(b int) string {
	ls := make([]drawn, 0, 4)
	for i, n := range Appliances() {
		if b&(1<<i) != 0 {
			ls = append(ls, drawn{name: n, l: load{active: true}})
		}
	}
	return label(ls)
}
