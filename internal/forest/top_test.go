package forest

import (
	"math"
	"math/bits"
	"testing"
)

// TestTopExits checks the tables of the top-of-tree phase (topNodes) on
// every GOARCH, without the vector code: for every row and tree, the exit
// found QuickScorer-style from the slot tables (as topAVX512 computes it)
// must lie on the row's path, and walking on from its copy in the exit
// block must reach the leaf of the packed walk. Trees of every shape: full
// depth (tops of 31 splits), stumps and single leaves (unused slots).
func TestTopExits(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"full depth", DefaultConfig()},
		{"min leaf 5", Config{Trees: 20, Bootstrap: true, MinSamplesLeaf: 5, Seed: 3}},
		{"depth 3", Config{Trees: 20, Bootstrap: true, MaxDepth: 3, Seed: 5}},
		{"single leaves", Config{Trees: 17, Bootstrap: true, MinSamplesSplit: 100000, Seed: 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := train(t, synthetic(800, 11, 4), c.cfg)
			p := f.packed()
			lanes, tb := p.topNodes(p.treeLaneNodes())
			nt := len(p.start) - 1
			test := synthetic(300, 12, 3)
			inf := float32(math.Inf(1))
			X := append(test.X, 0, nan, inf, -inf, nan, nan, nan, nan, -1e30, 1e30, 0, 0, inf, 0, nan, 0)
			leafExits, pairs := 0, 0
			for r := range len(X) / 8 {
				var xs [2 * pMaxFeatures]float32
				for j, v := range X[r*8 : r*8+8] {
					xs[2*j], xs[2*j+1] = v, v
					if v != v {
						xs[2*j], xs[2*j+1] = float32(math.Inf(-1)), inf
					}
				}
				for tr := range nt {
					bitsLeft := ^uint32(0)
					for s := range topSplits {
						k := s*nt + tr
						if xs[tb.col[k]] > tb.thr[k] {
							bitsLeft &= tb.keep[k]
						}
					}
					e := bits.TrailingZeros32(bitsLeft)
					if uint32(e) != uint32(math.Float32bits(float32(bitsLeft&-bitsLeft))>>23)-127 {
						t.Fatalf("exponent trick gives another exit than %d", e)
					}
					g := uint32(int(tb.base[tr]) + e)
					if lanes[g].thr != lanes[g].thr {
						leafExits++
					}
					pairs++
					// Walk on from the copy: lanes layout, global indices.
					for range 64 {
						n := lanes[g]
						if n.thr != n.thr {
							g = n.meta >> 8 // a copy of a leaf steps to the leaf
							break
						}
						g = n.meta>>8 + b2u(xs[n.meta&15] > n.thr)
					}
					// The packed walk from the root.
					b := uint32(p.start[tr])
					i := b
					for {
						j := rstep(p.nodes, &xs, i, b)
						if j == i {
							break
						}
						i = j
					}
					if g != i || lanes[g].thr == lanes[g].thr {
						t.Fatalf("row %d tree %d: exit %d leads to node %d, the packed walk to leaf %d", r, tr, e, g, i)
					}
				}
			}
			t.Logf("%d trees, %d of %d (row, tree) pairs exit the top at a leaf", nt, leafExits, pairs)
		})
	}
}
