package forest

import "fmt"

// batchRows is how many rows PredictBatch walks through one tree at a time:
// the tree stays in cache while the rows' accumulators stay in L1.
const batchRows = 128

// PredictBatch predicts len(classes) rows of X (row-major, NumFeatures per
// row). classes receives the predicted class of each row; probs, when not
// nil, receives NumClasses probabilities per row. Results equal Predict and
// PredictProba row by row. It allocates one scratch buffer per call and
// panics when the slice lengths disagree.
func (f *Forest) PredictBatch(X []float32, classes []int32, probs []float32) {
	nf, nc := f.nFeatures, f.nClasses
	n := len(classes)
	if len(X) < n*nf || (probs != nil && len(probs) < n*nc) {
		panic(fmt.Sprintf("forest.PredictBatch: %d values and %d probabilities for %d rows", len(X), len(probs), n))
	}
	acc := make([]float64, batchRows*nc)
	leaves := make([]int32, batchRows)
	for start := 0; start < n; start += batchRows {
		rows := min(batchRows, n-start)
		clear(acc[:rows*nc])
		xb := X[start*nf : (start+rows)*nf]
		for _, root := range f.roots {
			f.walk(root, xb, nf, leaves[:rows])
			for r, li := range leaves[:rows] {
				ln := &f.nodes[li]
				a := acc[r*nc : (r+1)*nc]
				if ln.feat == leafPure {
					a[ln.left]++
				} else {
					for c, p := range f.values[ln.left : int(ln.left)+nc] {
						a[c] += p
					}
				}
			}
		}
		for r := range rows {
			a := acc[r*nc : (r+1)*nc]
			c, _ := f.argmax(a)
			classes[start+r] = int32(c)
			if probs != nil {
				out := probs[(start+r)*nc : (start+r+1)*nc]
				for k := range out {
					out[k] = float32(a[k])
				}
			}
		}
	}
}

// walk finds the leaf of one tree for each row of xb, four rows at a time so
// that their independent walks overlap in the CPU.
func (f *Forest) walk(root int32, xb []float32, nf int, leaves []int32) {
	nodes := f.nodes
	rows := len(leaves)
	r := 0
	for ; r+4 <= rows; r += 4 {
		x0 := xb[r*nf : (r+1)*nf]
		x1 := xb[(r+1)*nf : (r+2)*nf]
		x2 := xb[(r+2)*nf : (r+3)*nf]
		x3 := xb[(r+3)*nf : (r+4)*nf]
		i0, i1, i2, i3 := root, root, root, root
		for {
			n0, n1, n2, n3 := &nodes[i0], &nodes[i1], &nodes[i2], &nodes[i3]
			if n0.feat < 0 && n1.feat < 0 && n2.feat < 0 && n3.feat < 0 {
				break
			}
			i0 = step(n0, x0, i0)
			i1 = step(n1, x1, i1)
			i2 = step(n2, x2, i2)
			i3 = step(n3, x3, i3)
		}
		leaves[r], leaves[r+1], leaves[r+2], leaves[r+3] = i0, i1, i2, i3
	}
	for ; r < rows; r++ {
		leaves[r] = f.leafOf(root, xb[r*nf:(r+1)*nf])
	}
}

// step moves one node down (a leaf stays where it is).
func step(n *node, x []float32, i int32) int32 {
	ft := n.feat
	if ft < 0 {
		return i
	}
	v := x[ft&featMask]
	if v <= n.thr || (v != v && ft&nanLeftBit != 0) {
		return n.left
	}
	return n.right
}
