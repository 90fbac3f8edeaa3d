package forest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// batchPaths runs fn once for every PredictBatch walk this machine has:
// the three AVX-512 walks when the CPU has them (tree lanes with the top of
// each tree from registers, the default for forests of up to 8 features and
// 16 trees or more; tree lanes from the roots; row lanes), and the pure-Go
// lock-step walk (the one every other GOARCH uses). Tests using it must not
// run in parallel: it switches the package's simdBatch, simdTreeLanes and
// simdTop.
func batchPaths(t *testing.T, fn func(t *testing.T)) {
	t.Helper()
	saved, savedLanes, savedTop := simdBatch, simdTreeLanes, simdTop
	defer func() { simdBatch, simdTreeLanes, simdTop = saved, savedLanes, savedTop }()
	if haveAVX512 {
		simdBatch, simdTreeLanes, simdTop = true, true, true
		t.Run("avx512-top", fn)
		simdTop = false
		t.Run("avx512-treelanes", fn)
		simdTreeLanes, simdTop = false, true
		t.Run("avx512-rowtop", fn)
		simdTop = false
		t.Run("avx512-rowlanes", fn)
	} else {
		t.Log("no AVX-512 here: only the pure-Go walk is tested")
	}
	simdBatch = false
	t.Run("purego", fn)
}

// checkBatch compares PredictBatch on the rows of X (with and without
// probabilities) with the pre-order node walk and with Predict, bit for bit.
func checkBatch(t *testing.T, f *Forest, X []float32) {
	t.Helper()
	nf, nc := f.NumFeatures(), f.NumClasses()
	n := len(X) / nf
	classes := make([]int32, n)
	probs := make([]float32, n*nc)
	f.PredictBatch(X, classes, probs)
	only := make([]int32, n)
	f.PredictBatch(X, only, nil)
	want := make([]float64, nc)
	for r := range n {
		x := X[r*nf : (r+1)*nf]
		clear(want)
		f.accumulateNodes(x, want)
		wc, wp := f.argmax(want)
		c, p := f.Predict(x)
		if c != wc || p != float32(wp) || classes[r] != int32(wc) || only[r] != int32(wc) {
			t.Fatalf("row %d of %d %v: batch %d (without probabilities %d), Predict %d %v, want %d %v",
				r, n, x, classes[r], only[r], c, p, wc, wp)
		}
		for k := range nc {
			if probs[r*nc+k] != float32(want[k]) {
				t.Fatalf("row %d of %d %v: batch probabilities %v, want %v", r, n, x, probs[r*nc:(r+1)*nc], want)
			}
		}
	}
}

// TestBatchShapes covers forest shapes the synthetic forests of
// TestPackedMatchesNodes do not: trees that are a single leaf next to
// split trees, 1 to 33 trees (around the 16 trees of a vector call), the
// widest forest the packed layout holds (128 features: the largest column
// offsets) and more than 64 classes (the row-by-row fallback).
func TestBatchShapes(t *testing.T) {
	inf := float32(math.Inf(1))
	negZero := float32(math.Copysign(0, -1))
	// Three rows: a bootstrap sample is often pure, so some trees are a
	// single leaf and others split.
	three := tiny([]string{"a", "b", "c"}, []float32{0, 1, 0}, []float32{1, 0, 1}, []float32{2, 2, 2})
	mixed := train(t, three, Config{Trees: 40, Bootstrap: true, Seed: 9})
	single := 0
	for _, root := range mixed.roots {
		if mixed.nodes[root].isLeaf() {
			single++
		}
	}
	if single == 0 || single == len(mixed.roots) {
		t.Fatalf("%d of %d trees are a single leaf: the test needs both kinds", single, len(mixed.roots))
	}
	threeX := []float32{0, 1, 1, 0, 2, 2, -1, nan, nan, 3, inf, -inf, negZero, negZero, 0.5, 0.5, 1.5, 1.5}
	threeX = slices.Repeat(threeX, 11) // 99 rows

	rng := rand.New(rand.NewPCG(3, 4))
	const wideF = pMaxFeatures
	var wideRows [][]float32
	for r := range 300 {
		row := make([]float32, wideF+1)
		for j := range wideF {
			row[j] = float32(rng.NormFloat64())
			if rng.IntN(20) == 0 {
				row[j] = nan
			}
		}
		// The class depends on the last features, so deep columns are used.
		row[wideF] = float32(r % 3)
		row[wideF-1] += row[wideF]
		row[wideF-2] -= row[wideF]
		wideRows = append(wideRows, row)
	}
	wide := train(t, tiny([]string{"x", "y", "z"}, wideRows...), Config{Trees: 20, Bootstrap: true, MaxFeatures: -1, Seed: 2})
	if wide.packed() == nil {
		t.Fatal("the 128-feature forest does not pack")
	}
	var wideX []float32
	for _, row := range wideRows[:150] {
		wideX = append(wideX, row[:wideF]...)
	}

	n := stackProbs + 6
	var manyRows [][]float32
	names := make([]string, n)
	for c := range n {
		names[c] = string(rune('A'+c%26)) + string(rune('a'+c/26))
		manyRows = append(manyRows, []float32{float32(c), 0, float32(c)}, []float32{float32(c) + 0.25, 1, float32(c)})
	}
	many := train(t, tiny(names, manyRows...), Config{Trees: 10, MaxFeatures: -1})
	var manyX []float32
	for c := range 2 * n {
		manyX = append(manyX, float32(c)/2, float32(c%2))
	}

	d := synthetic(600, 21, 5)
	test := synthetic(150, 22, 4)
	pure := map[int]*Forest{}
	for _, trees := range []int{16, 17, 47, 63, 64, 65, 97, 100, 256} {
		f := train(t, synthetic(200, 23, 5), Config{Trees: trees, Bootstrap: true, Seed: uint64(trees)})
		if haveAVX512 && f.packed().class == nil {
			t.Fatalf("the %d-tree forest has mixed leaves: the test needs pure ones", trees)
		}
		pure[trees] = f
	}
	batchPaths(t, func(t *testing.T) {
		t.Run("single-leaf trees", func(t *testing.T) { checkBatch(t, mixed, threeX) })
		t.Run("128 features", func(t *testing.T) { checkBatch(t, wide, wideX) })
		t.Run("more than 64 classes", func(t *testing.T) { checkBatch(t, many, manyX) })
		for _, trees := range []int{1, 2, 15, 16, 17, 32, 33} {
			f := train(t, d, Config{Trees: trees, Bootstrap: true, MinSamplesLeaf: 2, Seed: uint64(trees)})
			t.Run("trees", func(t *testing.T) { checkBatch(t, f, test.X) })
		}
		// Pure leaves (votes counted in bytes by the top walk) with tree
		// counts around its 16-tree windows and 48-tree calls, and 256
		// trees (one too many for a byte count).
		for _, trees := range []int{16, 17, 47, 63, 64, 65, 97, 100, 256} {
			f := pure[trees]
			t.Run("pure trees", func(t *testing.T) { checkBatch(t, f, test.X) })
		}
	})
}

// TestBatchAllocs checks that PredictBatch does not allocate, on every walk,
// for an 8-feature forest and a 42-feature one with mixed leaves.
func TestBatchAllocs(t *testing.T) {
	d := synthetic(500, 1, 3)
	f := train(t, d, Config{Trees: 20, Bootstrap: true, MinSamplesLeaf: 2})
	classes := make([]int32, 130)
	probs := make([]float32, 130*f.NumClasses())
	f.PredictBatch(d.X[:130*8], classes, probs)
	w := wideData(42, 16, 300, 5, true)
	fw := train(t, w, Config{Trees: 20, Bootstrap: true, MinSamplesLeaf: 5})
	wprobs := make([]float32, 130*fw.NumClasses())
	fw.PredictBatch(w.X[:130*42], classes, wprobs)
	batchPaths(t, func(t *testing.T) {
		if a := testing.AllocsPerRun(20, func() { f.PredictBatch(d.X[:130*8], classes, probs) }); a != 0 {
			t.Errorf("PredictBatch allocates %v times", a)
		}
		if a := testing.AllocsPerRun(20, func() { fw.PredictBatch(w.X[:130*42], classes, wprobs) }); a != 0 {
			t.Errorf("PredictBatch allocates %v times on the 42-feature forest", a)
		}
	})
}

var fuzzForest = sync.OnceValue(func() *Forest {
	f, err := Train(t0(), synthetic(400, 31, 4), Config{Trees: 24, Bootstrap: true, MinSamplesLeaf: 2, Seed: 6})
	if err != nil {
		panic(err)
	}
	return f
})

// fuzzWide is a 42-feature forest (the width of the lw1 models) with mixed
// leaves, trained on NaN-heavy rows: the row-lane walks with the top phase.
var fuzzWide = sync.OnceValue(func() *Forest {
	f, err := Train(t0(), wideData(42, 5, 500, 32, true), Config{Trees: 24, Bootstrap: true, MinSamplesLeaf: 3, Seed: 7})
	if err != nil {
		panic(err)
	}
	return f
})

// FuzzPredictBatch compares PredictBatch (every walk this machine has)
// with Predict on fuzzed rows: any float32 bit pattern (NaN payloads,
// +-Inf, -0, subnormals), any row count up to 150, on an 8-feature forest
// and a 42-feature one.
func FuzzPredictBatch(f *testing.F) {
	seed := make([]byte, 0, 9*32)
	for _, v := range []float32{0, float32(math.Copysign(0, -1)), nan, float32(math.Inf(1)), float32(math.Inf(-1)),
		1e-40, 45, 230, 0.55, 50, 120, -3, 1e30, 15, 0.99, 48} {
		seed = binary.LittleEndian.AppendUint32(seed, math.Float32bits(v))
	}
	f.Add(seed)
	f.Add(slices.Repeat(seed, 9))
	f.Add(slices.Repeat(seed, 60)) // 22 rows of the 42-feature forest
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		saved, savedLanes, savedTop := simdBatch, simdTreeLanes, simdTop
		defer func() { simdBatch, simdTreeLanes, simdTop = saved, savedLanes, savedTop }()
		for _, fo := range []*Forest{fuzzForest(), fuzzWide()} {
			nf, nc := fo.NumFeatures(), fo.NumClasses()
			X := make([]float32, min(len(b)/4, 150*nf)/nf*nf)
			for i := range X {
				X[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
			n := len(X) / nf
			// Walks 0-3: AVX-512 tree lanes with and without the top
			// phase, row lanes with and without it; 4: pure Go.
			for walk := range 5 {
				simd := walk < 4
				if simd && !haveAVX512 {
					continue
				}
				simdBatch, simdTreeLanes, simdTop = simd, walk <= 1, walk%2 == 0
				classes := make([]int32, n)
				probs := make([]float32, n*nc)
				fo.PredictBatch(X, classes, probs)
				one := make([]float32, nc)
				for r := range n {
					x := X[r*nf : (r+1)*nf]
					c, p := fo.Predict(x)
					fo.PredictProba(x, one)
					if classes[r] != int32(c) || !slices.Equal(one, probs[r*nc:(r+1)*nc]) || one[c] != p {
						t.Fatalf("%d features, walk %d, row %d of %d %v: batch %d %v, Predict %d %v %v", nf, walk, r, n, x, classes[r], probs[r*nc:(r+1)*nc], c, p, one)
					}
				}
			}
		}
	})
}
