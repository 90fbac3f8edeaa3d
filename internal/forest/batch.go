package forest

import "fmt"

// PredictBatch predicts len(classes) rows of X (row-major, NumFeatures per
// row). classes receives the predicted class of each row; probs, when not
// nil, receives NumClasses probabilities per row. Results equal Predict and
// PredictProba row by row. It runs on the calling goroutine, does not
// allocate when NumClasses <= 64, and panics when the slice lengths
// disagree.
//
// Each row walks four trees at a time (see accumulate). Walking one tree
// for a block of rows at a time, with eight or with all rows of the block
// interleaved, measured no faster on this machine (docs/FOREST.md), so the
// batch path is the single-row path in a loop.
func (f *Forest) PredictBatch(X []float32, classes []int32, probs []float32) {
	nf, nc := f.nFeatures, f.nClasses
	n := len(classes)
	if len(X) < n*nf || (probs != nil && len(probs) < n*nc) {
		panic(fmt.Sprintf("forest.PredictBatch: %d values and %d probabilities for %d rows", len(X), len(probs), n))
	}
	var buf [stackProbs]float64
	var acc []float64
	if nc <= stackProbs {
		acc = buf[:nc]
	} else {
		p := f.getAcc()
		defer f.accPool.Put(p)
		acc = *p
	}
	for r := range n {
		clear(acc)
		f.accumulate(X[r*nf:(r+1)*nf], acc)
		c, _ := f.argmax(acc)
		classes[r] = int32(c)
		if probs != nil {
			out := probs[r*nc : (r+1)*nc]
			for k := range out {
				out[k] = float32(acc[k])
			}
		}
	}
}
