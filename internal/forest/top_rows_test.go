package forest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// wideData returns rows x nf features in nc noisy overlapping classes
// (each class shifts a few features, the rest is noise), with the NaN
// pattern of ompm's rows when nanHeavy: every third row lacks the
// "voltage" and "power factor" features (a source that does not measure
// them: columns 1 and 2 and every seventh column after them), and any value
// is NaN with probability 1/25.
func wideData(nf, nc, rows int, seed uint64, nanHeavy bool) Dataset {
	rng := rand.New(rand.NewPCG(seed, 11))
	d := Dataset{NFeatures: nf}
	for j := range nf {
		d.Features = append(d.Features, fmt.Sprintf("f%d", j))
	}
	for c := range nc {
		d.Classes = append(d.Classes, fmt.Sprintf("c%d", c))
	}
	for r := range rows {
		c := rng.IntN(nc)
		for j := range nf {
			v := rng.NormFloat64()
			if (j+c)%3 == 0 {
				v += float64(c%5) * 0.7
			}
			if j%4 == 1 {
				v += float64(c) * 0.4
			}
			x := float32(v)
			if nanHeavy && (r%3 == 0 && (j == 1 || j == 2 || (j > 2 && j%7 == 0)) || rng.IntN(25) == 0) {
				x = nan
			}
			d.X = append(d.X, x)
		}
		d.Y = append(d.Y, int32(c))
	}
	return d
}

// TestRowTopExits checks the row-lane top tables (rowTopTables) on every
// GOARCH, without the vector code: for every row and tree, the exit found
// from the slots as topRowsAVX512 finds it must lie on the row's path (the
// packed walk on from it reaches the leaf of the walk from the root), and
// the leaf flag must be right. Forests of 9 to 128 features, NaN-heavy
// rows, full depth, a leaf limit, stumps and single leaves.
func TestRowTopExits(t *testing.T) {
	for _, c := range []struct {
		nf, nc int
		cfg    Config
	}{
		{9, 4, Config{Trees: 20, Bootstrap: true, MinSamplesLeaf: 5, Seed: 3}},
		{17, 3, DefaultConfig()},
		{42, 16, Config{Trees: 30, Bootstrap: true, MinSamplesLeaf: 5, Seed: 4}},
		{64, 5, Config{Trees: 20, Bootstrap: true, MaxDepth: 1, Seed: 5}},
		{128, 2, Config{Trees: 17, Bootstrap: true, MinSamplesSplit: 100000, Seed: 6}},
	} {
		t.Run(fmt.Sprintf("%d features", c.nf), func(t *testing.T) {
			f := train(t, wideData(c.nf, c.nc, 600, uint64(c.nf), true), c.cfg)
			p := f.packed()
			if p == nil {
				t.Fatal("forest does not pack")
			}
			rt := f.rowTopTables(p)
			nt := len(p.start) - 1
			X := wideData(c.nf, c.nc, 200, uint64(c.nf)+100, true).X
			X = append(X, slices.Repeat([]float32{nan}, c.nf)...)
			X = append(X, slices.Repeat([]float32{float32(math.Inf(1))}, c.nf)...)
			leafExits, pairs := 0, 0
			for r := range len(X) / c.nf {
				var xs [2 * pMaxFeatures]float32
				for j, v := range X[r*c.nf : (r+1)*c.nf] {
					xs[2*j], xs[2*j+1] = v, v
					if v != v {
						xs[2*j], xs[2*j+1] = float32(math.Inf(-1)), float32(math.Inf(1))
					}
				}
				for tr := range nt {
					b := uint32(p.start[tr])
					e := rt.rowTopExit(tr, xs[:])
					isLeaf := p.nodes[b+e].thr != p.nodes[b+e].thr
					flagged := false
					for _, x := range rt.exits[tr*topExits:][:topExits] {
						if x&^rowTopLeaf == e {
							flagged = x&rowTopLeaf != 0
						}
					}
					if isLeaf != flagged {
						t.Fatalf("row %d tree %d: exit %d is a leaf: %v, flagged: %v", r, tr, e, isLeaf, flagged)
					}
					if isLeaf {
						leafExits++
					}
					pairs++
					walk := func(i uint32) uint32 {
						for {
							j := rstep(p.nodes, &xs, i, b)
							if j == i {
								return i
							}
							i = j
						}
					}
					if got, want := walk(b+e), walk(b); got != want {
						t.Fatalf("row %d tree %d: exit %d leads to node %d, the walk from the root to %d", r, tr, e, got, want)
					}
				}
			}
			if c.cfg.MaxDepth == 0 && c.cfg.MinSamplesSplit == 0 && leafExits == pairs {
				t.Fatal("every exit is a leaf: the top is not tested below")
			}
			t.Logf("%d trees, %d of %d (row, tree) pairs exit the top at a leaf", nt, leafExits, pairs)
		})
	}
}

// TestBatchWide compares PredictBatch with Predict on forests wider than
// the tree-lane walk takes (9 to 128 features), with NaN-heavy rows like
// ompm's, pure and mixed leaves and 2 to 20 classes (one, two and three
// words of votes), on every walk (batchPaths).
func TestBatchWide(t *testing.T) {
	type wcase struct {
		name string
		f    *Forest
		X    []float32
	}
	var cases []wcase
	for _, c := range []struct {
		nf, nc, trees, minLeaf int
	}{
		{9, 4, 100, 5},
		{16, 16, 40, 5},
		{17, 3, 17, 1},
		{42, 4, 100, 5},
		{42, 16, 100, 5},
		{64, 9, 33, 2},
		{65, 20, 20, 5},
		{128, 2, 16, 1},
	} {
		f := train(t, wideData(c.nf, c.nc, 700, uint64(c.nf*c.nc), true), Config{Trees: c.trees, Bootstrap: true, MinSamplesLeaf: c.minLeaf, Seed: uint64(c.nf)})
		if f.packed() == nil {
			t.Fatalf("the %d-feature forest does not pack", c.nf)
		}
		X := wideData(c.nf, c.nc, 203, uint64(c.nf)+7, true).X
		cases = append(cases, wcase{fmt.Sprintf("%d features %d classes %d trees", c.nf, c.nc, c.trees), f, X})
	}
	batchPaths(t, func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				nf := c.f.NumFeatures()
				for _, n := range []int{8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 129, len(c.X) / nf} {
					checkBatch(t, c.f, c.X[:n*nf])
				}
			})
		}
	})
}
