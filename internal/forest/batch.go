package forest

import (
	"fmt"
	"math"
)

// Packed prediction layout: a second copy of the trees in 8-byte nodes,
// each tree breadth-first so that both children of a split are stored next
// to each other, built the first time a prediction (Predict, PredictProba
// or PredictBatch) needs it. Forests it cannot hold predict through the
// pre-order nodes (accumulateNodes).
//
// A step is branch-free: j = left + (x > thr). A leaf points at itself with
// a NaN threshold ("x > NaN" is false), so stepping a leaf stays there, as
// in the pre-order layout.
//
// Missing values need no test per step either: the transposed block holds
// every feature twice, once with NaN replaced by -Inf (read by nodes that
// send NaN left: -Inf > thr is false) and once with NaN replaced by +Inf
// (nodes that send NaN right). Measured values are the same in both copies,
// so only NaN is affected. This needs finite thresholds, which pack checks.
type pnode struct {
	thr float32
	// bits 3-10: the node's column in a group's transposed rows,
	// (2 x feature + NaN goes right) x groupRows; bits 11-31: the tree-local
	// index of the left child (the right one follows it); for a leaf, its
	// own index and column 0. Bit 0 is set when the left child is a leaf,
	// bit 1 when the right one is (both for a leaf: it is its own child),
	// so the SIMD walk knows that a row reached a leaf without stepping it.
	meta uint32
}

const (
	pColBits     = 11
	pColMask     = 1<<pColBits - 1
	pColField    = pColMask &^ (groupRows - 1)       // the column bits of meta
	pLeftLeaf    = 1                                 // meta bit: the left child is a leaf
	pRightLeaf   = 2                                 // meta bit: the right child is a leaf
	pMaxFeatures = (1 << pColBits) / (2 * groupRows) // packed layout limit; wider forests use the row path
	pMaxTree     = 1 << (32 - pColBits)              // nodes per tree the packed layout allows

	blockShift = 6
	blockRows  = 1 << blockShift // rows walked through one tree before the next tree
	groupRows  = 8               // rows of a block stepped in lock-step
)

type packedForest struct {
	nodes []pnode
	start []int32 // tree t is nodes[start[t]:start[t+1]]
	leaf  []int32 // per packed leaf: class with probability 1 (>= 0) or -1-offset into Forest.values
	lanes []pnode // the nodes for the tree-lane vector walk (simd.go) and the exit blocks (top.go), or nil
	top   *topTables
	rtop  *rowTop // with AVX-512: the row-lane top tables (top_rows.go), else nil
	class []uint8 // with lanes, when every leaf has a single class below 256: the class per packed node (leaves only), else nil
}

// pack builds the batch layout, or nil when the forest is too wide, a tree
// too large or a threshold infinite.
func (f *Forest) pack() *packedForest {
	if f.nFeatures > pMaxFeatures {
		return nil
	}
	p := &packedForest{
		nodes: make([]pnode, 0, len(f.nodes)),
		start: make([]int32, 0, len(f.roots)+1),
		leaf:  make([]int32, len(f.nodes)),
	}
	var queue []int32
	for t, root := range f.roots {
		end := int32(len(f.nodes))
		if t+1 < len(f.roots) {
			end = f.roots[t+1]
		}
		if end-root > pMaxTree {
			return nil
		}
		base := int32(len(p.nodes))
		p.start = append(p.start, base)
		// Breadth-first: the children of a split are taken from the queue
		// together, so they land side by side.
		queue = append(queue[:0], root)
		for q := 0; q < len(queue); q++ {
			i := queue[q]
			n := &f.nodes[i]
			k := uint32(len(p.nodes) - int(base))
			if n.isLeaf() {
				p.nodes = append(p.nodes, pnode{thr: float32(math.NaN()), meta: k<<pColBits | pLeftLeaf | pRightLeaf})
				p.leaf[len(p.nodes)-1] = n.leaf
				continue
			}
			if math.IsInf(float64(n.thr), 0) {
				return nil
			}
			col := uint32(2 * n.feature())
			if !n.nanLeft() {
				col++
			}
			meta := col*groupRows | uint32(len(queue))<<pColBits
			if f.nodes[i+1].isLeaf() {
				meta |= pLeftLeaf
			}
			if f.nodes[n.right].isLeaf() {
				meta |= pRightLeaf
			}
			p.nodes = append(p.nodes, pnode{thr: n.thr, meta: meta})
			queue = append(queue, i+1, n.right)
		}
	}
	p.start = append(p.start, int32(len(p.nodes)))
	if haveAVX512 && f.nFeatures <= laneMaxFeatures && len(f.roots) >= laneMinTrees && len(p.nodes)+topExits*len(f.roots) < laneMaxNodes {
		p.lanes, p.top = p.topNodes(p.treeLaneNodes())
		p.class = make([]uint8, len(p.nodes))
		for i, n := range p.nodes {
			if n.thr != n.thr {
				if l := p.leaf[i]; l >= 0 && l < 256 {
					p.class[i] = uint8(l)
				} else {
					p.class = nil
					break
				}
			}
		}
	}
	if haveAVX512 {
		p.rtop = f.rowTopTables(p)
	}
	return p
}

func (f *Forest) packed() *packedForest {
	f.packOnce.Do(func() { f.pk = f.pack() })
	return f.pk
}

// PredictBatch predicts len(classes) rows of X (row-major, NumFeatures per
// row). classes receives the predicted class of each row; probs, when not
// nil, receives NumClasses probabilities per row. Results equal Predict and
// PredictProba row by row, bit for bit. It runs on the calling goroutine,
// does not allocate when NumClasses <= 64 (after the forest's first
// prediction, which builds the packed layout), and panics when the slice
// lengths disagree.
//
// On amd64 with AVX-512 it walks 64 rows at a time through 16 trees at a
// time, 32 (tree, row) pairs in the lanes of two vector walkers that take
// the next pair as soon as a lane reaches a leaf (simd.go), after finding
// where each pair leaves the top 31 splits of its tree with compares on 16
// rows at a time (top_rows.go); forests of up to 8 features and 16 trees
// or more put the trees of one row in the lanes instead (no gather for the
// row's values), after finding the top 31 splits of each tree from
// registers (top.go). Elsewhere it
// takes 64 rows at a time through one tree after the other, so a tree's
// nodes stay in the L1 cache while the rows walk it, and steps 8 rows in
// lock-step so that their independent memory loads overlap, with the block
// ordered by the rows' leaves in the first tree so that rows walked
// together end at similar depths. Either way each row adds its trees' class
// distributions in tree order, as Predict does. Fewer than 8 rows, or more
// than 64 classes, go row by row.
func (f *Forest) PredictBatch(X []float32, classes []int32, probs []float32) {
	nf, nc := f.nFeatures, f.nClasses
	n := len(classes)
	if len(X) < n*nf || (probs != nil && len(probs) < n*nc) {
		panic(fmt.Sprintf("forest.PredictBatch: %d values and %d probabilities for %d rows", len(X), len(probs), n))
	}
	if p := f.packed(); p != nil && nc <= stackProbs && n >= groupRows {
		if simdBatch {
			if p.lanes != nil && simdTreeLanes {
				f.predictTreeLanes(p, X, classes, probs, simdTop)
				return
			}
			f.predictRowLanes(p, X, classes, probs, simdTop)
			return
		}
		f.predictPacked(p, X, classes, probs)
		return
	}
	f.predictRows(X, classes, probs)
}

// predictRows is the row-by-row path (Predict in a loop).
func (f *Forest) predictRows(X []float32, classes []int32, probs []float32) {
	nf, nc := f.nFeatures, f.nClasses
	var buf [stackProbs]float64
	var acc []float64
	if nc <= stackProbs {
		acc = buf[:nc]
	} else {
		p := f.getAcc()
		defer f.accPool.Put(p)
		acc = *p
	}
	for r := range len(classes) {
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

// batchScratch is PredictBatch's per-call working memory, on the stack.
type batchScratch struct {
	// The block transposed in groups: feature j of row k of group g at
	// xs[g][j*groupRows+k], so a step finds a row's value at a fixed
	// offset from the feature.
	xs   [blockRows / groupRows]groupX
	leaf [blockRows]uint32
	acc  [blockRows * stackProbs]float64
}

// groupX is a group's rows transposed: value j (see pnode) of row k at
// j*groupRows + k, with room for the largest column plus a row.
type groupX [pColMask + groupRows]float32

func (f *Forest) predictPacked(p *packedForest, X []float32, classes []int32, probs []float32) {
	nf, nc := f.nFeatures, f.nClasses
	var s batchScratch
	var ord [blockRows]uint32
	n := len(classes)
	for r0 := 0; r0 < n; r0 += blockRows {
		rows := min(blockRows, n-r0)
		for r := range ord {
			ord[r] = uint32(r)
		}
		s.transpose(X, nf, r0, rows, &ord)
		// Rows that reach nearby leaves of the first tree tend to walk
		// every tree to a similar depth: walking them side by side wastes
		// fewer lock-step steps on rows that already sit at a leaf (on the
		// benchmark's shuffled rows, 12.4 instead of 14.8 steps per group
		// and tree). So order the block by its leaves in tree 0
		// (breadth-first indices: shallower leaves first).
		if rows > groupRows {
			tn := p.nodes[p.start[0]:p.start[1]]
			for g := 0; g < rows; g += groupRows {
				walkGroup(tn, &s.xs[g/groupRows], s.leaf[g:g+groupRows])
			}
			for r := range rows {
				ord[r] = s.leaf[r]<<blockShift | uint32(r)
			}
			for r := 1; r < rows; r++ { // insertion sort, 64 keys at most
				k, q := ord[r], r
				for ; q > 0 && ord[q-1] > k; q-- {
					ord[q] = ord[q-1]
				}
				ord[q] = k
			}
			for r := range rows {
				ord[r] &= blockRows - 1
			}
			s.transpose(X, nf, r0, rows, &ord)
		}
		acc := s.acc[:blockRows*nc]
		clear(acc)
		for t := range len(p.start) - 1 {
			tn := p.nodes[p.start[t]:p.start[t+1]]
			for g := 0; g < rows; g += groupRows {
				walkGroup(tn, &s.xs[g/groupRows], s.leaf[g:g+groupRows])
			}
			lv := p.leaf[p.start[t]:p.start[t+1]]
			for r := range rows {
				f.addPackedLeaf(lv[s.leaf[r]], acc[r*nc:(r+1)*nc])
			}
		}
		for r := range rows {
			a := acc[r*nc : (r+1)*nc]
			c, _ := f.argmax(a)
			row := r0 + int(ord[r])
			classes[row] = int32(c)
			if probs != nil {
				out := probs[row*nc : (row+1)*nc]
				for k := range out {
					out[k] = float32(a[k])
				}
			}
		}
	}
}

// transpose copies rows r0+ord[r] of X (r < rows) into the groups, each
// feature twice (see pnode); a short block is padded with its first row so
// that every group is full.
func (s *batchScratch) transpose(X []float32, nf, r0, rows int, ord *[blockRows]uint32) {
	for r := range blockRows {
		src := r0
		if r < rows {
			src += int(ord[r])
		}
		xg := &s.xs[r/groupRows]
		k := r % groupRows
		for j, v := range X[src*nf : (src+1)*nf] {
			xg[2*j*groupRows+k], xg[(2*j+1)*groupRows+k] = nanSplit(v)
		}
	}
}

// nanSplit returns a value's two copies in the packed layout (see pnode):
// NaN as -Inf (for nodes that send NaN left) and as +Inf (right).
func nanSplit(v float32) (lo, hi float32) {
	if v != v {
		return float32(math.Inf(-1)), float32(math.Inf(1))
	}
	return v, v
}

// pstep moves row k of a group from node i one level down in tn.
func pstep(tn []pnode, xg *groupX, i uint32, k uint32) uint32 {
	n := tn[i]
	return n.meta>>pColBits + b2u(xg[n.meta&pColField+k&(groupRows-1)] > n.thr)
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// walkGroup walks the rows of a group from the root of tn to their leaves
// in lock-step and stores the leaves' tree-local indices in out.
func walkGroup(tn []pnode, xg *groupX, out []uint32) {
	var i0, i1, i2, i3, i4, i5, i6, i7 uint32
	for {
		j0 := pstep(tn, xg, i0, 0)
		j1 := pstep(tn, xg, i1, 1)
		j2 := pstep(tn, xg, i2, 2)
		j3 := pstep(tn, xg, i3, 3)
		j4 := pstep(tn, xg, i4, 4)
		j5 := pstep(tn, xg, i5, 5)
		j6 := pstep(tn, xg, i6, 6)
		j7 := pstep(tn, xg, i7, 7)
		// A second step before the test: fewer tests and moves per step,
		// and a row at a leaf stays there.
		i0 = pstep(tn, xg, j0, 0)
		i1 = pstep(tn, xg, j1, 1)
		i2 = pstep(tn, xg, j2, 2)
		i3 = pstep(tn, xg, j3, 3)
		i4 = pstep(tn, xg, j4, 4)
		i5 = pstep(tn, xg, j5, 5)
		i6 = pstep(tn, xg, j6, 6)
		i7 = pstep(tn, xg, j7, 7)
		if (j0^i0)|(j1^i1)|(j2^i2)|(j3^i3)|(j4^i4)|(j5^i5)|(j6^i6)|(j7^i7) == 0 {
			break
		}
	}
	out = out[:8]
	out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7] = i0, i1, i2, i3, i4, i5, i6, i7
}

// accumulatePacked is accumulate on the packed layout: four trees at once,
// branch-free steps, NaN through the two copies of each feature.
func (f *Forest) accumulatePacked(p *packedForest, x []float32, acc []float64) {
	// xs[c] for a node's column c = (2 x feature + NaN goes right) x groupRows.
	var xs [2 * pMaxFeatures]float32
	for j, v := range x {
		xs[2*j], xs[2*j+1] = nanSplit(v)
	}
	nodes, start := p.nodes, p.start
	nt := len(start) - 1
	t := 0
	for ; t+4 <= nt; t += 4 {
		b0, b1, b2, b3 := uint32(start[t]), uint32(start[t+1]), uint32(start[t+2]), uint32(start[t+3])
		i0, i1, i2, i3 := b0, b1, b2, b3
		for {
			j0 := rstep(nodes, &xs, i0, b0)
			j1 := rstep(nodes, &xs, i1, b1)
			j2 := rstep(nodes, &xs, i2, b2)
			j3 := rstep(nodes, &xs, i3, b3)
			i0 = rstep(nodes, &xs, j0, b0) // two steps per test, as in walkGroup
			i1 = rstep(nodes, &xs, j1, b1)
			i2 = rstep(nodes, &xs, j2, b2)
			i3 = rstep(nodes, &xs, j3, b3)
			if (j0^i0)|(j1^i1)|(j2^i2)|(j3^i3) == 0 {
				break
			}
		}
		f.addPackedLeaf(p.leaf[i0], acc)
		f.addPackedLeaf(p.leaf[i1], acc)
		f.addPackedLeaf(p.leaf[i2], acc)
		f.addPackedLeaf(p.leaf[i3], acc)
	}
	for ; t < nt; t++ {
		b := uint32(start[t])
		i := b
		for {
			j := rstep(nodes, &xs, i, b)
			if j == i {
				break
			}
			i = j
		}
		f.addPackedLeaf(p.leaf[i], acc)
	}
}

// rstep moves one row from global node i of the tree starting at base one
// level down.
func rstep(nodes []pnode, xs *[2 * pMaxFeatures]float32, i, base uint32) uint32 {
	n := nodes[i]
	return base + n.meta>>pColBits + b2u(xs[(n.meta&pColMask)/groupRows] > n.thr)
}

func (f *Forest) addPackedLeaf(l int32, acc []float64) {
	if l >= 0 {
		acc[l]++
		return
	}
	addVotes(acc, f.values[-1-int(l):][:len(acc)])
}

// addVotes adds a leaf's class distribution v to a (same length), four
// classes per iteration; each class is still one float64 addition.
func addVotes(a, v []float64) {
	a = a[:len(v)]
	c := 0
	for ; c+4 <= len(v); c += 4 {
		a4, v4 := a[c:c+4:c+4], v[c:c+4:c+4]
		a4[0] += v4[0]
		a4[1] += v4[1]
		a4[2] += v4[2]
		a4[3] += v4[3]
	}
	for ; c < len(v); c++ {
		a[c] += v[c]
	}
}
