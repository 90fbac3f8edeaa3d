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
	"math"
	"sync"
)

// Node encoding in the flattened array: 16 bytes a node, trees stored one
// after the other, each in pre-order, so a split's left child is always the
// next node and only the right child is stored.
//
// A split node has leafBit clear: the low 30 bits of feat are the feature
// index and nanLeftBit says that a missing value (NaN) goes left.
//
// A leaf has leafBit set, feature 0, a NaN threshold and right = its own
// index: "x <= NaN" is false for every x, so stepping a leaf again stays on
// it and the walkers need no leaf test per step, only "did anyone move".
// leaf holds the class with probability 1 (>= 0) or -1-offset of its
// class distribution in Forest.values.
const (
	leafBit     = 1 << 31
	nanLeftBit  = 1 << 30
	featMask    = 1<<30 - 1
	maxFeatures = featMask // largest feature count the encoding allows
	stackProbs  = 64       // class counts up to this use a stack accumulator
)

type node struct {
	thr   float32
	feat  uint32
	right int32
	leaf  int32
}

func splitNode(feature int, nanLeft bool, thr float32, right int32) node {
	ft := uint32(feature)
	if nanLeft {
		ft |= nanLeftBit
	}
	return node{feat: ft, thr: thr, right: right}
}

func pureLeaf(self int32, class int) node {
	return node{feat: leafBit, thr: float32(math.NaN()), right: self, leaf: int32(class)}
}

func mixedLeaf(self int32, offset int) node {
	return node{feat: leafBit, thr: float32(math.NaN()), right: self, leaf: int32(-1 - offset)}
}

func (n *node) isLeaf() bool  { return n.feat&leafBit != 0 }
func (n *node) feature() int  { return int(n.feat & featMask) }
func (n *node) nanLeft() bool { return n.feat&nanLeftBit != 0 }
func (n *node) isMixed() bool { return n.leaf < 0 }
func (n *node) offset() int   { return int(-1 - n.leaf) }

// step moves from node i one level down for a row x without NaN; a leaf
// stays where it is. The compiler turns it into a conditional move.
func step(nodes []node, x []float32, i int32) int32 {
	n := &nodes[i]
	j := i + 1
	if !(x[n.feat&featMask] <= n.thr) {
		j = n.right
	}
	return j
}

// stepNaN is step for a row that may hold NaN: a NaN goes to the side the
// node learned.
func stepNaN(nodes []node, x []float32, i int32) int32 {
	n := &nodes[i]
	v := x[n.feat&featMask]
	if v <= n.thr || (v != v && n.feat&nanLeftBit != 0) {
		return i + 1
	}
	return n.right
}

func hasNaN(x []float32) bool {
	for _, v := range x {
		if v != v {
			return true
		}
	}
	return false
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

	packOnce sync.Once
	pk       *packedForest // batch layout (batch.go), nil if the forest does not fit it
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

// addLeaf adds leaf node li's class distribution to acc.
func (f *Forest) addLeaf(li int32, acc []float64) {
	l := f.nodes[li].leaf
	if l >= 0 {
		acc[l]++
		return
	}
	off := int(-1 - l)
	for c, v := range f.values[off : off+len(acc)] {
		acc[c] += v
	}
}

// accumulate adds every tree's class distribution for x to acc (length
// nClasses, zeroed by the caller), tree by tree in order: the same order
// of float64 additions as scikit-learn's predict_proba. It uses the packed
// layout of batch.go (built on first use) when the forest fits it: measured
// about 1.5 times faster than walking the pre-order nodes.
func (f *Forest) accumulate(x []float32, acc []float64) {
	if p := f.packed(); p != nil {
		f.accumulatePacked(p, x, acc)
		return
	}
	f.accumulateNodes(x, acc)
}

// accumulateNodes is accumulate on the pre-order nodes, for forests the
// packed layout cannot hold (and as the reference in tests). It walks four
// trees at once so that their independent memory loads overlap.
func (f *Forest) accumulateNodes(x []float32, acc []float64) {
	nodes := f.nodes
	roots := f.roots
	if hasNaN(x) {
		for _, i := range roots {
			for {
				j := stepNaN(nodes, x, i)
				if j == i {
					break
				}
				i = j
			}
			f.addLeaf(i, acc)
		}
		return
	}
	t := 0
	for ; t+4 <= len(roots); t += 4 {
		i0, i1, i2, i3 := roots[t], roots[t+1], roots[t+2], roots[t+3]
		for {
			j0 := step(nodes, x, i0)
			j1 := step(nodes, x, i1)
			j2 := step(nodes, x, i2)
			j3 := step(nodes, x, i3)
			if (j0^i0)|(j1^i1)|(j2^i2)|(j3^i3) == 0 {
				break
			}
			i0, i1, i2, i3 = j0, j1, j2, j3
		}
		f.addLeaf(i0, acc)
		f.addLeaf(i1, acc)
		f.addLeaf(i2, acc)
		f.addLeaf(i3, acc)
	}
	for ; t < len(roots); t++ {
		i := roots[t]
		for {
			j := step(nodes, x, i)
			if j == i {
				break
			}
			i = j
		}
		f.addLeaf(i, acc)
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
