package forest

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

var nan = float32(math.NaN())

// tiny builds a dataset from rows of features plus a class.
func tiny(classes []string, rows ...[]float32) Dataset {
	d := Dataset{NFeatures: len(rows[0]) - 1, Classes: classes}
	for _, r := range rows {
		d.X = append(d.X, r[:len(r)-1]...)
		d.Y = append(d.Y, int32(r[len(r)-1]))
	}
	return d
}

func train(t *testing.T, d Dataset, cfg Config) *Forest {
	t.Helper()
	f, err := Train(context.Background(), d, cfg)
	if err != nil {
		t.Fatalf("Train: %v", err)
	}
	return f
}

func TestTrainSeparable(t *testing.T) {
	threshold := tiny([]string{"low", "high"},
		[]float32{1, 0}, []float32{2, 0}, []float32{3, 0}, []float32{10, 1}, []float32{11, 1}, []float32{12, 1})
	// XOR needs two levels; every class in two corners.
	xor := tiny([]string{"a", "b"},
		[]float32{0, 0, 0}, []float32{0.1, 0.1, 0}, []float32{1, 1, 0}, []float32{0.9, 0.9, 0},
		[]float32{0, 1, 1}, []float32{0.1, 0.9, 1}, []float32{1, 0, 1}, []float32{0.9, 0.1, 1})
	// Three classes on the second of three features; the others are noise.
	three := tiny([]string{"x", "y", "z"},
		[]float32{5, 0, 9, 0}, []float32{1, 0.5, 2, 0}, []float32{3, 1, 4, 0},
		[]float32{2, 5, 7, 1}, []float32{4, 5.5, 1, 1}, []float32{6, 6, 3, 1},
		[]float32{1, 9, 5, 2}, []float32{7, 9.5, 6, 2}, []float32{5, 10, 2, 2})
	cases := []struct {
		name   string
		d      Dataset
		cfg    Config
		probes [][]float32 // extra points and their class (last element)
	}{
		{"threshold", threshold, DefaultConfig(), [][]float32{{-5, 0}, {4, 0}, {9, 1}, {1000, 1}}},
		{"xor all features no bootstrap", xor, Config{Trees: 5, MaxFeatures: -1, Seed: 2}, [][]float32{{0.05, 0.05, 0}, {0.95, 0.05, 1}}},
		{"three classes", three, Config{Trees: 50, MaxFeatures: -1, Bootstrap: true, Seed: 9}, [][]float32{{0, 0.2, 0, 0}, {0, 5.2, 0, 1}, {0, 9.7, 0, 2}}},
		{"stumps", threshold, Config{Trees: 10, MaxDepth: 1}, [][]float32{{2.5, 0}, {10.5, 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := train(t, c.d, c.cfg)
			if f.NumFeatures() != c.d.NFeatures || f.NumClasses() != len(c.d.Classes) {
				t.Fatalf("shape %d features %d classes", f.NumFeatures(), f.NumClasses())
			}
			probe := func(x []float32, want int) {
				t.Helper()
				cls, p := f.Predict(x)
				if cls != want {
					t.Errorf("Predict(%v) = %d (p %v), want %d", x, cls, p, want)
				}
				probs := make([]float32, f.NumClasses())
				f.PredictProba(x, probs)
				s := float32(0)
				for _, v := range probs {
					s += v
				}
				if math.Abs(float64(s-1)) > 1e-5 || probs[cls] != p {
					t.Errorf("PredictProba(%v) = %v (sum %v), Predict prob %v", x, probs, s, p)
				}
			}
			for r := range c.d.Rows() {
				probe(c.d.X[r*c.d.NFeatures:(r+1)*c.d.NFeatures], int(c.d.Y[r]))
			}
			for _, p := range c.probes {
				probe(p[:len(p)-1], int(p[len(p)-1]))
			}
		})
	}
}

func TestTreeLimits(t *testing.T) {
	d := synthetic(400, 3, 0)
	full := train(t, d, Config{Trees: 10, Bootstrap: true})
	if full.NumNodes() < 10*20 {
		t.Fatalf("unlimited trees are tiny: %d nodes", full.NumNodes())
	}
	stumps := train(t, d, Config{Trees: 10, MaxDepth: 1, Bootstrap: true})
	if stumps.NumNodes() != 10*3 {
		t.Errorf("depth 1: %d nodes, want 30", stumps.NumNodes())
	}
	// No leaf may hold fewer distinct rows than MinSamplesLeaf, so with
	// more than half the rows required nothing can split.
	none := train(t, d, Config{Trees: 4, MinSamplesLeaf: 201, Bootstrap: false})
	if none.NumNodes() != 4 {
		t.Errorf("min leaf 201 of 400 rows: %d nodes, want 4", none.NumNodes())
	}
	big := train(t, d, Config{Trees: 10, MinSamplesLeaf: 20, Bootstrap: true})
	if big.NumNodes() >= full.NumNodes()/3 {
		t.Errorf("min leaf 20: %d nodes, unlimited %d", big.NumNodes(), full.NumNodes())
	}
	split := train(t, d, Config{Trees: 4, MinSamplesSplit: 401, Bootstrap: false})
	if split.NumNodes() != 4 {
		t.Errorf("min split 401 of 400 rows: %d nodes, want 4", split.NumNodes())
	}
}

func TestClassWeight(t *testing.T) {
	// 80 rows of class 0 and 20 of class 1 at the same point: no split is
	// possible, the single leaf holds the (weighted) class shares.
	var rows [][]float32
	for i := range 100 {
		c := float32(0)
		if i >= 80 {
			c = 1
		}
		rows = append(rows, []float32{1, c})
	}
	d := tiny([]string{"common", "rare"}, rows...)
	plain := train(t, d, Config{Trees: 3})
	if c, p := plain.Predict([]float32{1}); c != 0 || p != 0.8 {
		t.Errorf("equal weights: class %d p %v, want 0 at 0.8", c, p)
	}
	bal := train(t, d, Config{Trees: 3, ClassWeight: "balanced"})
	probs := make([]float32, 2)
	bal.PredictProba([]float32{1}, probs)
	if probs[0] != 0.5 || probs[1] != 0.5 {
		t.Errorf("balanced: %v, want [0.5 0.5]", probs)
	}
}

func TestTrainErrors(t *testing.T) {
	good := tiny([]string{"a", "b"}, []float32{1, 0}, []float32{2, 1})
	bad := func(mut func(d *Dataset)) Dataset {
		d := good
		d.X = slices.Clone(good.X)
		d.Y = slices.Clone(good.Y)
		mut(&d)
		return d
	}
	cases := []struct {
		name string
		d    Dataset
		cfg  Config
	}{
		{"no rows", Dataset{NFeatures: 1, Classes: []string{"a"}}, DefaultConfig()},
		{"no features", bad(func(d *Dataset) { d.NFeatures = 0 }), DefaultConfig()},
		{"no classes", bad(func(d *Dataset) { d.Classes = nil }), DefaultConfig()},
		{"short X", bad(func(d *Dataset) { d.X = d.X[:1] }), DefaultConfig()},
		{"label out of range", bad(func(d *Dataset) { d.Y[1] = 2 }), DefaultConfig()},
		{"negative label", bad(func(d *Dataset) { d.Y[0] = -1 }), DefaultConfig()},
		{"feature names", bad(func(d *Dataset) { d.Features = []string{"a", "b"} }), DefaultConfig()},
		{"groups", bad(func(d *Dataset) { d.Groups = []int32{1} }), DefaultConfig()},
		{"infinite value", bad(func(d *Dataset) { d.X[1] = float32(math.Inf(-1)) }), DefaultConfig()},
		{"class weight", good, Config{ClassWeight: "balanced_subsample"}},
		{"negative trees", good, Config{Trees: -1}},
		{"negative depth", good, Config{MaxDepth: -2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if f, err := Train(context.Background(), c.d, c.cfg); err == nil {
				t.Fatalf("Train succeeded with %d nodes", f.NumNodes())
			}
		})
	}
}

func TestTrainCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Train(ctx, synthetic(200, 1, 0), DefaultConfig())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled training: %v", err)
	}
}

func TestProgress(t *testing.T) {
	var seen []int
	cfg := Config{Trees: 12, Workers: 3, Bootstrap: true, Progress: func(done, total int) {
		if total != 12 {
			t.Errorf("total %d", total)
		}
		seen = append(seen, done) // never called concurrently
	}}
	train(t, synthetic(200, 1, 0), cfg)
	want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if !slices.Equal(seen, want) {
		t.Errorf("progress %v", seen)
	}
}

func modelBytes(t *testing.T, d Dataset, f *Forest, cfg Config) []byte {
	t.Helper()
	m := &Model{Kind: KindLoadwatch, FeatureSet: "test-v1", Features: d.Features, Classes: d.Classes,
		DataHash: HashDataset(d), TrainedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Config: cfg, Forest: f}
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDeterministic(t *testing.T) {
	d := synthetic(600, 4, 7) // with NaN
	var first []byte
	for _, workers := range []int{1, 2, 3, 8} {
		cfg := DefaultConfig()
		cfg.Trees = 24
		cfg.Seed = 42
		cfg.Workers = workers
		b := modelBytes(t, d, train(t, d, cfg), cfg)
		if first == nil {
			first = b
		} else if !bytes.Equal(first, b) {
			t.Fatalf("workers %d: model differs from workers 1", workers)
		}
	}
	cfg := DefaultConfig()
	cfg.Trees = 24
	cfg.Seed = 43
	if bytes.Equal(first, modelBytes(t, d, train(t, d, cfg), cfg)) {
		t.Fatal("seed 43 gave the same model as seed 42")
	}
}

func TestMissingValues(t *testing.T) {
	// Feature 0 is measured for class "on" (values 5..20) and missing for
	// class "off"; feature 1 is noise. Missingness itself is the signal.
	var rows [][]float32
	for i := range 40 {
		noise := float32(i % 7)
		if i%2 == 0 {
			rows = append(rows, []float32{5 + float32(i)/2, noise, 1})
		} else {
			rows = append(rows, []float32{nan, noise, 0})
		}
	}
	d := tiny([]string{"off", "on"}, rows...)
	f := train(t, d, Config{Trees: 20, MaxFeatures: -1, Bootstrap: true, Seed: 3})
	for _, c := range []struct {
		x    []float32
		want int
	}{{[]float32{nan, 3}, 0}, {[]float32{nan, nan}, 0}, {[]float32{12, 3}, 1}, {[]float32{12, nan}, 1}, {[]float32{-100, 0}, 1}} {
		if got, p := f.Predict(c.x); got != c.want {
			t.Errorf("Predict(%v) = %d (%v), want %d", c.x, got, p, c.want)
		}
	}

	// NaN that training never saw follows the heavier child: 30 rows of
	// "low" below 10, 10 rows of "high" above.
	rows = rows[:0]
	for i := range 40 {
		if i < 30 {
			rows = append(rows, []float32{float32(i % 10), 0})
		} else {
			rows = append(rows, []float32{20 + float32(i), 1})
		}
	}
	g := train(t, tiny([]string{"low", "high"}, rows...), Config{Trees: 5})
	if got, _ := g.Predict([]float32{nan}); got != 0 {
		t.Errorf("unseen NaN went to class %d, want the heavier side 0", got)
	}
}

// TestBatchMatchesSingle checks PredictBatch against Predict and
// PredictProba on rows with and without NaN and a row count that is not a
// multiple of the walker width or block, on every batch walk this machine
// has (batchPaths: the AVX-512 walk and the pure-Go lock-step walk).
func TestBatchMatchesSingle(t *testing.T) {
	d := synthetic(1000, 5, 3)
	f := train(t, d, Config{Trees: 30, Bootstrap: true, MinSamplesLeaf: 3, Seed: 1})
	test := synthetic(333, 6, 5)
	nc := f.NumClasses()
	batchPaths(t, func(t *testing.T) {
		classes := make([]int32, test.Rows())
		probs := make([]float32, test.Rows()*nc)
		f.PredictBatch(test.X, classes, probs)
		one := make([]float32, nc)
		mixed := 0
		for r := range test.Rows() {
			x := test.X[r*8 : (r+1)*8]
			c, p := f.Predict(x)
			f.PredictProba(x, one)
			if int(classes[r]) != c || !slices.Equal(one, probs[r*nc:(r+1)*nc]) || one[c] != p {
				t.Fatalf("row %d: batch %d %v, single %d %v %v", r, classes[r], probs[r*nc:(r+1)*nc], c, p, one)
			}
			if p < 1 {
				mixed++
			}
		}
		if mixed == 0 {
			t.Fatal("no row had a mixed vote: the test does not cover mixed leaves")
		}
		// Without probabilities too.
		only := make([]int32, test.Rows())
		f.PredictBatch(test.X, only, nil)
		if !slices.Equal(only, classes) {
			t.Fatal("PredictBatch without probabilities differs")
		}
	})
}

func TestImportances(t *testing.T) {
	// Only feature 1 carries the class.
	var rows [][]float32
	for i := range 200 {
		c := float32(i % 2)
		rows = append(rows, []float32{float32(i*7%13) / 13, c*10 + float32(i%5), float32(i*3%11) / 11, c})
	}
	f := train(t, tiny([]string{"a", "b"}, rows...), DefaultConfig())
	imp := f.Importances()
	s := 0.0
	for _, v := range imp {
		s += v
	}
	if math.Abs(s-1) > 1e-9 || imp[1] < 0.9 {
		t.Errorf("importances %v (sum %v), want feature 1 dominant", imp, s)
	}
	imp[0] = 99
	if f.Importances()[0] == 99 {
		t.Error("Importances returned internal state")
	}
}

func TestPredictAllocs(t *testing.T) {
	d := synthetic(500, 1, 0)
	f := train(t, d, Config{Trees: 20, Bootstrap: true})
	x := d.X[:8]
	probs := make([]float32, f.NumClasses())
	if a := testing.AllocsPerRun(100, func() { f.Predict(x) }); a != 0 {
		t.Errorf("Predict allocates %v times", a)
	}
	if a := testing.AllocsPerRun(100, func() { f.PredictProba(x, probs) }); a != 0 {
		t.Errorf("PredictProba allocates %v times", a)
	}
	classes := make([]int32, 50)
	batchProbs := make([]float32, 50*f.NumClasses())
	if a := testing.AllocsPerRun(20, func() { f.PredictBatch(d.X[:50*8], classes, batchProbs) }); a != 0 {
		t.Errorf("PredictBatch allocates %v times", a)
	}
}

// TestManyClasses covers the pooled accumulator used above stackProbs classes.
func TestManyClasses(t *testing.T) {
	n := stackProbs + 6
	var rows [][]float32
	names := make([]string, n)
	for c := range n {
		names[c] = string(rune('A'+c%26)) + string(rune('a'+c/26))
		rows = append(rows, []float32{float32(c), float32(c)}, []float32{float32(c) + 0.25, float32(c)})
	}
	f := train(t, tiny(names, rows...), Config{Trees: 10, MaxFeatures: -1})
	probs := make([]float32, n)
	for c := range n {
		if got, _ := f.Predict([]float32{float32(c) + 0.1}); got != c {
			t.Errorf("class %d predicted as %d", c, got)
		}
	}
	f.PredictProba([]float32{3.1}, probs)
	if probs[3] != 1 {
		t.Errorf("probs %v", probs)
	}
	if a := testing.AllocsPerRun(50, func() { f.Predict([]float32{5}) }); a != 0 {
		t.Errorf("Predict with %d classes allocates %v times", n, a)
	}
}

func t0() context.Context { return context.Background() }

func TestSubset(t *testing.T) {
	d := tiny([]string{"a", "b"}, []float32{1, 2, 0}, []float32{3, 4, 1}, []float32{5, 6, 1})
	d.Groups = []int32{7, 8, 9}
	s := d.Subset([]int{2, 0, 2})
	if !slices.Equal(s.X, []float32{5, 6, 1, 2, 5, 6}) || !slices.Equal(s.Y, []int32{1, 0, 1}) ||
		!slices.Equal(s.Groups, []int32{9, 7, 9}) || s.NFeatures != 2 || s.Validate() != nil {
		t.Errorf("subset %+v", s)
	}
}
