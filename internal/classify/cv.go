package classify

import (
	"context"
	"fmt"
	"math"
	"time"

	"loadwatch/internal/forest"
	"loadwatch/internal/readingscsv"
)

// Schemes of time-blocked cross-validation.
const (
	// SchemeClassBlocks cuts the rows of each (device, label) pair, in
	// time order, into K contiguous blocks; block k is tested in fold k.
	// Every class with at least K rows is then in the training part of
	// every fold, also when it is one contiguous run or one device.
	SchemeClassBlocks = "class-blocks"
	// SchemeDeviceBlocks cuts each device's rows, in time order, into K
	// contiguous blocks. A class that lives in one stretch of time may
	// then be missing from training in some folds.
	SchemeDeviceBlocks = "device-blocks"
	// SchemeRuns holds out whole runs: a run is a stretch of one device's
	// rows with one label (broken by a gap longer than RunGap). A class
	// with at least K runs has its runs, in file order, dealt to the K
	// folds as contiguous groups of about equal row count, so every test
	// row belongs to an episode the forest never saw any part of. A class
	// with fewer runs than K (one contiguous block, or one episode per
	// device) is split within, as in SchemeClassBlocks.
	SchemeRuns = "runs"
)

// RunGap is the gap between two readings of a device that ends a run.
const RunGap = 30 * time.Second

// Folds is a time-blocked fold assignment.
type Folds struct {
	K      int
	Scheme string
	Purge  time.Duration
	// Test is the fold in which each row is tested.
	Test []int32
	// Excluded has bit k set for a row kept out of fold k's training
	// because it lies within Purge of a block tested in fold k (the same
	// block group), where it would be a near copy of a test row.
	Excluded []uint64
}

// MakeFolds assigns rows to K time-blocked folds. Rows must be in time order
// per device (as read from a readings CSV). Purge (0 = none) keeps training
// rows of the same block group out of a fold's training when they lie within
// that time of the fold's test block.
func MakeFolds(rows []readingscsv.Row, k int, scheme string, purge time.Duration) (*Folds, error) {
	if k < 2 || k > 64 {
		return nil, fmt.Errorf("folds: K = %d, want 2..64", k)
	}
	key := func(r readingscsv.Row) string { return r.Device + "\x00" + r.Label }
	switch scheme {
	case SchemeClassBlocks, SchemeRuns:
	case SchemeDeviceBlocks:
		key = func(r readingscsv.Row) string { return r.Device }
	default:
		return nil, fmt.Errorf("folds: unknown scheme %q (want %s or %s)", scheme, SchemeClassBlocks, SchemeDeviceBlocks)
	}
	groups := map[string][]int{}
	var order []string
	for i, r := range rows {
		g := key(r)
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], i)
	}
	f := &Folds{K: k, Scheme: scheme, Purge: purge, Test: make([]int32, len(rows)), Excluded: make([]uint64, len(rows))}
	whole := map[string]bool{} // labels dealt out as whole runs
	if scheme == SchemeRuns {
		whole = dealRuns(rows, k, f.Test)
	}
	for _, g := range order {
		idx := groups[g]
		n := len(idx)
		if !whole[rows[idx[0]].Label] {
			for j, i := range idx {
				f.Test[i] = int32(j * k / n)
			}
		}
		if purge <= 0 {
			continue
		}
		// For each block [a, b) of this group, exclude from its fold's
		// training the neighbours within purge of the block's ends.
		for a := 0; a < n; {
			fold := f.Test[idx[a]]
			b := a
			for b < n && f.Test[idx[b]] == fold {
				b++
			}
			ta, tb := rows[idx[a]].Reading.Time, rows[idx[b-1]].Reading.Time
			for j := a - 1; j >= 0 && ta.Sub(rows[idx[j]].Reading.Time) <= purge; j-- {
				f.Excluded[idx[j]] |= 1 << fold
			}
			for j := b; j < n && rows[idx[j]].Reading.Time.Sub(tb) <= purge; j++ {
				f.Excluded[idx[j]] |= 1 << fold
			}
			a = b
		}
	}
	return f, nil
}

// dealRuns assigns whole runs to folds for every label with at least k
// runs, and returns those labels.
func dealRuns(rows []readingscsv.Row, k int, test []int32) map[string]bool {
	type run struct{ start, n int }
	type devState struct {
		label string
		t     time.Time
		run   int // index into runs[label]
	}
	runs := map[string][]run{}
	member := make([]int, len(rows)) // run index within its label
	last := map[string]*devState{}
	for i, r := range rows {
		st := last[r.Device]
		if st == nil || st.label != r.Label || r.Reading.Time.Sub(st.t) > RunGap {
			runs[r.Label] = append(runs[r.Label], run{start: i})
			st = &devState{label: r.Label, run: len(runs[r.Label]) - 1}
			last[r.Device] = st
		}
		st.t = r.Reading.Time
		runs[r.Label][st.run].n++
		member[i] = st.run
	}
	whole := map[string]bool{}
	foldOf := map[string][]int32{}
	for label, rs := range runs {
		if len(rs) < k {
			continue
		}
		whole[label] = true
		total := 0
		for _, r := range rs {
			total += r.n
		}
		cum := 0
		fo := make([]int32, len(rs))
		for j, r := range rs {
			// The fold is where the middle of the run falls.
			fo[j] = int32(min(k-1, (2*cum+r.n)*k/(2*total)))
			cum += r.n
		}
		foldOf[label] = fo
	}
	for i, r := range rows {
		if whole[r.Label] {
			test[i] = foldOf[r.Label][member[i]]
		}
	}
	return whole
}

// Train reports whether row i is in fold k's training part.
func (f *Folds) Train(i, k int) bool {
	return int(f.Test[i]) != k && f.Excluded[i]&(1<<k) == 0
}

// FoldScore is one fold's outcome.
type FoldScore struct {
	Fold      int     `json:"fold"`
	TrainRows int     `json:"train_rows"`
	TestRows  int     `json:"test_rows"`
	Accuracy  float64 `json:"accuracy"`
	MacroF1   float64 `json:"macro_f1"`
}

// CVResult is the outcome of a cross-validation: every fold, their mean and
// spread, and one report over all test predictions pooled.
type CVResult struct {
	Scheme      string        `json:"scheme"`
	K           int           `json:"k"`
	Purge       string        `json:"purge"`
	Folds       []FoldScore   `json:"folds"`
	MeanAcc     float64       `json:"mean_accuracy"`
	StdAcc      float64       `json:"std_accuracy"`
	MeanMacroF1 float64       `json:"mean_macro_f1"`
	StdMacroF1  float64       `json:"std_macro_f1"`
	Pooled      forest.Report `json:"pooled"`
	// Predicted is the class (an index into Pooled.Confusion.Classes)
	// predicted for each row in the fold that tested it.
	Predicted []int32 `json:"-"`
}

// CrossValidate trains one forest per fold on d's training part and tests
// it on the fold's test rows. progress, when set, is called after each
// fold.
func CrossValidate(ctx context.Context, d forest.Dataset, folds *Folds, cfg forest.Config, progress func(fold int, s FoldScore)) (*CVResult, error) {
	n := d.Rows()
	if len(folds.Test) != n {
		return nil, fmt.Errorf("cv: %d fold assignments for %d rows", len(folds.Test), n)
	}
	nf := d.NFeatures
	pred := make([]int32, n)
	res := &CVResult{Scheme: folds.Scheme, K: folds.K, Purge: folds.Purge.String()}
	for k := 0; k < folds.K; k++ {
		var tr forest.Dataset
		tr.NFeatures, tr.Classes, tr.Features = nf, d.Classes, d.Features
		var testIdx []int
		for i := 0; i < n; i++ {
			switch {
			case int(folds.Test[i]) == k:
				testIdx = append(testIdx, i)
			case folds.Train(i, k):
				tr.X = append(tr.X, d.X[i*nf:(i+1)*nf]...)
				tr.Y = append(tr.Y, d.Y[i])
			}
		}
		if len(testIdx) == 0 {
			continue
		}
		if len(tr.Y) == 0 {
			return nil, fmt.Errorf("cv: fold %d has no training rows", k)
		}
		f, err := forest.Train(ctx, tr, cfg)
		if err != nil {
			return nil, fmt.Errorf("cv fold %d: %w", k, err)
		}
		truth := make([]int32, len(testIdx))
		fp := make([]int32, len(testIdx))
		for j, i := range testIdx {
			c, _ := f.Predict(d.X[i*nf : (i+1)*nf])
			pred[i] = int32(c)
			fp[j] = int32(c)
			truth[j] = d.Y[i]
		}
		rep := forest.Evaluate(d.Classes, truth, fp)
		s := FoldScore{Fold: k, TrainRows: len(tr.Y), TestRows: len(testIdx), Accuracy: rep.Accuracy, MacroF1: rep.MacroF1}
		res.Folds = append(res.Folds, s)
		if progress != nil {
			progress(k, s)
		}
	}
	res.MeanAcc, res.StdAcc = meanStd(res.Folds, func(s FoldScore) float64 { return s.Accuracy })
	res.MeanMacroF1, res.StdMacroF1 = meanStd(res.Folds, func(s FoldScore) float64 { return s.MacroF1 })
	res.Pooled = forest.Evaluate(d.Classes, d.Y, pred)
	res.Predicted = pred
	return res, nil
}

// meanStd returns the mean and the sample standard deviation.
func meanStd(fs []FoldScore, get func(FoldScore) float64) (float64, float64) {
	if len(fs) == 0 {
		return math.NaN(), math.NaN()
	}
	var s float64
	for _, f := range fs {
		s += get(f)
	}
	m := s / float64(len(fs))
	if len(fs) == 1 {
		return m, 0
	}
	var v float64
	for _, f := range fs {
		d := get(f) - m
		v += d * d
	}
	return m, math.Sqrt(v / float64(len(fs)-1))
}
