package forest

import (
	"math"
	"math/rand/v2"
)

// synthetic returns a labelled set shaped like the loadwatch seed classes:
// power, current, voltage, pf, frequency, apparent, reactive and
// voltage-normalised power, with overlapping noisy classes (printer standby
// near a laptop) so the trees are not trivially shallow. nanEvery > 0 blanks
// the voltage of every nanEvery-th row (a source without voltage).
func synthetic(rows int, seed uint64, nanEvery int) Dataset {
	type app struct {
		name   string
		p, sdP float64
		pf     float64
	}
	apps := []app{
		{"laptop", 45, 12, 0.55},
		{"solder", 48, 4, 0.99},
		{"printer", 15, 25, 0.65},
		{"3d_printer", 120, 40, 0.9},
	}
	classes := []string{"nothing", "laptop", "solder", "printer", "3d_printer", "laptop+solder", "3d_printer+laptop", "laptop+printer"}
	combos := [][]int{nil, {0}, {1}, {2}, {3}, {0, 1}, {3, 0}, {0, 2}}
	rng := rand.New(rand.NewPCG(seed, 7))
	d := Dataset{
		NFeatures: 8,
		Features:  []string{"power", "current", "voltage", "pf", "frequency", "apparent", "reactive", "power_norm"},
		Classes:   classes,
	}
	for r := range rows {
		c := rng.IntN(len(classes))
		v := 230 + rng.NormFloat64()*3
		var p, q float64
		p = 0.4 + rng.Float64()*0.6 // standby
		for _, a := range combos[c] {
			ap := math.Max(1, apps[a].p+rng.NormFloat64()*apps[a].sdP)
			p += ap
			pf := min(1, max(0.05, apps[a].pf+rng.NormFloat64()*0.03))
			q += ap * math.Tan(math.Acos(pf))
		}
		s := math.Hypot(p, q)
		pf := p / s
		i := s / v
		row := []float32{float32(p), float32(i), float32(v), float32(pf), float32(50 + rng.NormFloat64()*0.02),
			float32(s), float32(q), float32(p * 230 * 230 / (v * v))}
		if nanEvery > 0 && r%nanEvery == 0 {
			row[2] = float32(math.NaN())
			row[7] = float32(math.NaN())
		}
		d.X = append(d.X, row...)
		d.Y = append(d.Y, int32(c))
	}
	return d
}
