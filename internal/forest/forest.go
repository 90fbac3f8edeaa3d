// Package forest is loadwatch's Random Forest classifier: CART trees grown
// with the Gini criterion on bootstrap samples (training), a flattened node
// array for allocation-free inference (prediction), a versioned model file
// (Model, Save, Load) and classification scores (Evaluate).
//
// Inputs are float32 feature vectors; NaN means "not measured". A split
// sends x to the left child when x <= threshold (compared as float32, as
// scikit-learn does), and a NaN to the side the node learned for missing
// values. See docs/FOREST.md for the algorithm and the file format.
//
// It imports only the standard library.
package forest

import (
	"sync"
)

// Node encoding in the flattened array.
//
// A split node has feat >= 0: the low 30 bits are the feature index and
// nanLeftBit says that a missing value (NaN) goes to the left child. left
// and right are indices into Forest.nodes.
//
// A leaf has feat = leafPure (left holds the one class with probability 1)
// or feat = leafMixed (left holds the offset of its class distribution in
// Forest.values).
const (
	nanLeftBit  = 1 << 30
	featMask    = nanLeftBit - 1
	leafPure    = -1
	leafMixed   = -2
	maxFeatures = featMask // largest feature count the encoding allows
	stackProbs  = 64       // class counts up to this use a stack accumulator
)

type node struct {
	feat  int32
	thr   float32
	left  int32
	right int32
}

// Forest is a trained (or imported) Random Forest. It is safe for
// concurrent use by many goroutines once built.
type Forest struct {
	nFeatures   int
	nClasses    int
	nodes       []node
	roots       []int32   // index of each tree's root in nodes
	values      []float64 // class distributions of mixed leaves, nClasses each
	importances []float64 // mean decrease in impurity, sums to 1 (or all 0)

	accPool sync.Pool // *[]float64 scratch when nClasses > stackProbs
}

// NumFeatures returns the length of the feature vector the forest expects.
func (f *Forest) NumFeatures() int { return f.nFeatures }

// NumClasses returns the number of classes the forest predicts.
func (f *Forest) NumClasses() int { return f.nClasses }

// NumTrees returns the number of trees.
func (f *Forest) NumTrees() int { return len(f.roots) }

// NumNodes returns the total number of nodes over all trees.
func (f *Forest) NumNodes() int { return len(f.nodes) }

// Importances returns the normalised mean decrease in Gini impurity per
// feature (summing to 1, or all zero when no tree split). The slice is a copy.
func (f *Forest) Importances() []float64 {
	out := make([]float64, f.nFeatures)
	copy(out, f.importances)
	return out
}

// leafOf walks one tree from root and returns the leaf's node index.
func (f *Forest) leafOf(root int32, x []float32) int32 {
	nodes := f.nodes
	i := root
	for {
		n := &nodes[i]
		ft := n.feat
		if ft < 0 {
			return i
		}
		v := x[ft&featMask]
		if v <= n.thr || (v != v && ft&nanLeftBit != 0) {
			i = n.left
		} else {
			i = n.right
		}
	}
}

// accumulate adds every tree's class distribution for x to acc (length
// nClasses, zeroed by the caller), tree by tree in order: the same order
// of float64 additions as scikit-learn's predict_proba.
func (f *Forest) accumulate(x []float32, acc []float64) {
	nodes := f.nodes
	values := f.values
	nc := f.nClasses
	for _, root := range f.roots {
		i := root
		for {
			n := &nodes[i]
			ft := n.feat
			if ft < 0 {
				break
			}
			v := x[ft&featMask]
			if v <= n.thr || (v != v && ft&nanLeftBit != 0) {
				i = n.left
			} else {
				i = n.right
			}
		}
		n := &nodes[i]
		if n.feat == leafPure {
			acc[n.left]++
		} else {
			vals := values[n.left : int(n.left)+nc]
			for c, p := range vals {
				acc[c] += p
			}
		}
	}
}

func (f *Forest) getAcc() *[]float64 {
	if p, ok := f.accPool.Get().(*[]float64); ok {
		clear(*p)
		return p
	}
	s := make([]float64, f.nClasses)
	return &s
}

// Predict returns the most probable class for x (length NumFeatures) and its
// probability, the mean of the trees' class distributions. Ties go to the
// lower class index. It does not allocate.
func (f *Forest) Predict(x []float32) (class int, prob float32) {
	x = x[:f.nFeatures]
	if f.nClasses <= stackProbs {
		var buf [stackProbs]float64
		acc := buf[:f.nClasses]
		f.accumulate(x, acc)
		c, p := f.argmax(acc)
		return c, float32(p)
	}
	p := f.getAcc()
	f.accumulate(x, *p)
	c, pr := f.argmax(*p)
	f.accPool.Put(p)
	return c, float32(pr)
}

// argmax divides acc by the tree count (in place) and returns the first
// maximum, as numpy.argmax does on scikit-learn's averaged probabilities.
func (f *Forest) argmax(acc []float64) (int, float64) {
	n := float64(len(f.roots))
	best, bp := 0, -1.0
	for c := range acc {
		acc[c] /= n
		if acc[c] > bp {
			best, bp = c, acc[c]
		}
	}
	return best, bp
}

// PredictProba writes the class probabilities for x into out (length
// NumClasses). It does not allocate.
func (f *Forest) PredictProba(x []float32, out []float32) {
	x = x[:f.nFeatures]
	out = out[:f.nClasses]
	n := float64(len(f.roots))
	if f.nClasses <= stackProbs {
		var buf [stackProbs]float64
		acc := buf[:f.nClasses]
		f.accumulate(x, acc)
		for c := range out {
			out[c] = float32(acc[c] / n)
		}
		return
	}
	p := f.getAcc()
	f.accumulate(x, *p)
	for c := range out {
		out[c] = float32((*p)[c] / n)
	}
	f.accPool.Put(p)
}
