package forest

import (
	"math"
	"slices"
	"testing"
)

// TestPackedMatchesNodes checks the packed layout (Predict, PredictProba
// and PredictBatch use it) against the pre-order node walk, bit for bit, on
// forests with pure and mixed leaves, rows with and without NaN, +-Inf, -0,
// and row counts around the group, lane and block sizes, on every batch
// walk this machine has (batchPaths).
func TestPackedMatchesNodes(t *testing.T) {
	inf := float32(math.Inf(1))
	cases := []struct {
		name string
		cfg  Config
		nan  int
	}{
		{"full depth", DefaultConfig(), 0},
		{"min leaf 5 with NaN", Config{Trees: 37, Bootstrap: true, MinSamplesLeaf: 5, Seed: 3}, 4},
		{"stumps", Config{Trees: 9, MaxDepth: 1, Seed: 2}, 2},
		{"single leaves", Config{Trees: 17, Bootstrap: true, MinSamplesSplit: 100000, Seed: 4}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := train(t, synthetic(800, 11, c.nan), c.cfg)
			p := f.packed()
			if p == nil {
				t.Fatal("forest does not pack")
			}
			batchPaths(t, func(t *testing.T) {
				test := synthetic(200, 12, 3)
				negZero := float32(math.Copysign(0, -1))
				X := append(test.X, 0, nan, inf, -inf, nan, nan, nan, nan, -1e30, 1e30, 0, 0, inf, 0, nan, 0,
					negZero, negZero, negZero, negZero, negZero, negZero, negZero, negZero)
				nc := f.NumClasses()
				for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, len(X) / 8} {
					classes := make([]int32, n)
					probs := make([]float32, n*nc)
					f.PredictBatch(X[:n*8], classes, probs)
					for r := range n {
						x := X[r*8 : (r+1)*8]
						want := make([]float64, nc)
						got := make([]float64, nc)
						f.accumulateNodes(x, want)
						f.accumulatePacked(p, x, got)
						if !slices.Equal(want, got) {
							t.Fatalf("row %d %v: packed %v, nodes %v", r, x, got, want)
						}
						c, prob := f.Predict(x)
						wc, wp := f.argmax(want)
						if c != wc || prob != float32(wp) || classes[r] != int32(wc) {
							t.Fatalf("row %d: Predict %d %v, batch %d, want %d %v", r, c, prob, classes[r], wc, wp)
						}
						for k := range nc {
							if probs[r*nc+k] != float32(want[k]) {
								t.Fatalf("row %d of %d: batch probabilities %v, want %v", r, n, probs[r*nc:(r+1)*nc], want)
							}
						}
					}
				}
			})
		})
	}
}

// TestPackFallback checks that a forest the packed layout cannot hold (too
// many features, an infinite threshold) still predicts through the nodes.
func TestPackFallback(t *testing.T) {
	wide := make([]float32, 0, 2*(pMaxFeatures+2))
	for r := range 2 {
		for j := range pMaxFeatures + 1 {
			wide = append(wide, float32(r*j))
		}
		wide = append(wide, float32(r))
	}
	f := train(t, tiny([]string{"a", "b"}, [][]float32{wide[:pMaxFeatures+2], wide[pMaxFeatures+2:]}...), Config{Trees: 3, MaxFeatures: -1})
	if f.packed() != nil {
		t.Fatal("a forest wider than the packed layout packed")
	}
	x := wide[pMaxFeatures+2 : 2*pMaxFeatures+3]
	if c, _ := f.Predict(x); c != 1 {
		t.Errorf("Predict = %d, want 1", c)
	}
	classes := make([]int32, 9)
	X := slices.Repeat(x, 9)
	f.PredictBatch(X, classes, nil)
	for _, c := range classes {
		if c != 1 {
			t.Fatalf("PredictBatch = %v", classes)
		}
	}
	g := train(t, tiny([]string{"a", "b"}, []float32{1, 0}, []float32{2, 1}), Config{Trees: 1, MaxFeatures: -1})
	g.nodes[0].thr = float32(math.Inf(1))
	if g.pack() != nil {
		t.Error("an infinite threshold packed")
	}
}

// TestPackConcurrent has several goroutines make the first predictions of
// a forest at once (the packed layout is built once, under sync.Once); run
// with -race.
func TestPackConcurrent(t *testing.T) {
	d := synthetic(300, 4, 3)
	f := train(t, d, Config{Trees: 12, Bootstrap: true, Seed: 5})
	want := make([]int32, d.Rows())
	for r := range want {
		c, _ := f.accumulateNodesArgmax(d.X[r*8 : (r+1)*8])
		want[r] = int32(c)
	}
	done := make(chan []int32)
	for g := range 4 {
		go func() {
			got := make([]int32, d.Rows())
			if g%2 == 0 {
				f.PredictBatch(d.X, got, nil)
			} else {
				for r := range got {
					c, _ := f.Predict(d.X[r*8 : (r+1)*8])
					got[r] = int32(c)
				}
			}
			done <- got
		}()
	}
	for range 4 {
		if got := <-done; !slices.Equal(got, want) {
			t.Fatal("concurrent first predictions differ from the node walk")
		}
	}
}

func (f *Forest) accumulateNodesArgmax(x []float32) (int, float64) {
	acc := make([]float64, f.nClasses)
	f.accumulateNodes(x, acc)
	return f.argmax(acc)
}
