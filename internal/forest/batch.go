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
	nan := make([]bool, batchRows)
	for start := 0; start < n; start += batchRows {
		rows := min(batchRows, n-start)
		clear(acc[:rows*nc])
		xb := X[start*nf : (start+rows)*nf]
		for r := range rows {
			nan[r] = hasNaN(xb[r*nf : (r+1)*nf])
		}
		for _, root := range f.roots {
			f.walkRows(root, xb, nf, acc, nan[:rows])
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

// walkRows walks one tree for every row of xb, eight rows at a time so that
// their independent walks overlap in the CPU, and adds each row's leaf
// distribution to its accumulator in acc. Rows holding a NaN take the
// slower stepNaN path.
func (f *Forest) walkRows(root int32, xb []float32, nf int, acc []float64, nan []bool) {
	nodes := f.nodes
	nc := f.nClasses
	rows := len(nan)
	r := 0
	for ; r+8 <= rows; r += 8 {
		x := xb[r*nf : (r+8)*nf]
		x0, x1, x2, x3 := x[0*nf:1*nf], x[1*nf:2*nf], x[2*nf:3*nf], x[3*nf:4*nf]
		x4, x5, x6, x7 := x[4*nf:5*nf], x[5*nf:6*nf], x[6*nf:7*nf], x[7*nf:8*nf]
		if n := nan[r : r+8]; n[0] || n[1] || n[2] || n[3] || n[4] || n[5] || n[6] || n[7] {
			for k := range 8 {
				f.walkOne(root, x[k*nf:(k+1)*nf], nan[r+k], acc[(r+k)*nc:(r+k+1)*nc])
			}
			continue
		}
		i0, i1, i2, i3, i4, i5, i6, i7 := root, root, root, root, root, root, root, root
		for {
			j0 := step(nodes, x0, i0)
			j1 := step(nodes, x1, i1)
			j2 := step(nodes, x2, i2)
			j3 := step(nodes, x3, i3)
			j4 := step(nodes, x4, i4)
			j5 := step(nodes, x5, i5)
			j6 := step(nodes, x6, i6)
			j7 := step(nodes, x7, i7)
			if (j0^i0)|(j1^i1)|(j2^i2)|(j3^i3)|(j4^i4)|(j5^i5)|(j6^i6)|(j7^i7) == 0 {
				break
			}
			i0, i1, i2, i3, i4, i5, i6, i7 = j0, j1, j2, j3, j4, j5, j6, j7
		}
		a := acc[r*nc : (r+8)*nc]
		f.addLeaf(i0, a[0*nc:1*nc])
		f.addLeaf(i1, a[1*nc:2*nc])
		f.addLeaf(i2, a[2*nc:3*nc])
		f.addLeaf(i3, a[3*nc:4*nc])
		f.addLeaf(i4, a[4*nc:5*nc])
		f.addLeaf(i5, a[5*nc:6*nc])
		f.addLeaf(i6, a[6*nc:7*nc])
		f.addLeaf(i7, a[7*nc:8*nc])
	}
	for ; r < rows; r++ {
		f.walkOne(root, xb[r*nf:(r+1)*nf], nan[r], acc[r*nc:(r+1)*nc])
	}
}

func (f *Forest) walkOne(i int32, x []float32, nan bool, acc []float64) {
	nodes := f.nodes
	for {
		var j int32
		if nan {
			j = stepNaN(nodes, x, i)
		} else {
			j = step(nodes, x, i)
		}
		if j == i {
			break
		}
		i = j
	}
	f.addLeaf(i, acc)
}
