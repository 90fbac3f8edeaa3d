package forest

import "math"

// The top of each tree from registers (amd64 with AVX-512, simd_top_amd64.s).
//
// The first topSplits splits of a tree in breadth-first order form a
// connected subtree at its top, with at most topExits exits (its children
// that are not among those splits: leaves or deeper splits), numbered left to
// right. A row's exit is found without walking, QuickScorer-style (Lucchese
// et al., SIGIR 2015): start with all exit bits set; every split of the
// subtree where the row goes right (x > threshold) clears the bits of the
// exits of its left subtree; the row's exit is the lowest bit left. (Every
// split on the row's path to its exit keeps that exit, and each exit to its
// left is cleared by the split where the two paths part.) topAVX512 does
// this for 16 trees of a row at once, the lanes of a vector: per split slot,
// one VPERMPS picks each lane's value from the row's 16 values (the same
// column numbering as the tree-lane walk, NaN as -Inf and +Inf), one VCMPPS
// (GT_OQ, exactly Go's >) compares and one masked VPANDD clears the bits.
// The exit becomes a start node for walkTopAVX512: a copy of the exit's
// node, stored in a block of topExits nodes per tree after the forest's
// nodes in the tree-lane layout (lanes), so that start = block + exit needs
// no table. A copy steps to the same children as the node (global
// indices), so the walk continues as if it had come down from the root; a
// copy of a leaf steps to the leaf itself.
//
// Votes: in a forest whose leaves are all pure (one class each, as in a
// fully grown forest on distinct rows), Predict adds 1.0 per tree to the
// class of the leaf, so its sums are vote counts, exact in float64 whatever
// the order. With at most 8 classes and 255 trees, predictTreeLanes counts them in
// a byte per class of one uint64 per row (no chain of float64 additions to
// memory), then converts: the same float64 values, bit for bit.

const (
	topSplits = 31 // split slots per tree: 32 exits, one bit each in a dword lane
	topExits  = topSplits + 1
	// topChunk is the trees per topAVX512 + walkTopAVX512 call while 64 or
	// more remain (the last call takes 16-63): a multiple of 16, so that
	// the 16-tree windows of topAVX512 do not overlap, and larger than the
	// tree-lane walk's 32, so that a walker changes rows less often (48 was
	// about 4 % faster than 32 on the benchmark forest).
	topChunk = 48
)

// topTables holds, slot-major for 16 consecutive trees to load at once,
// each tree's split slots (slot s of tree t at s*nt + t): the column
// (2 x feature + NaN goes right, 0-15), the threshold (NaN for an unused
// slot: x > NaN is false, so it never clears a bit) and the bits of the
// exits it leaves when x > threshold. base[t] is the lanes index of tree t's
// block of exit nodes.
type topTables struct {
	col  []uint32
	thr  []float32
	keep []uint32
	base []int32
}

// topNodes returns the tree-lane nodes (treeLaneNodes) followed by each
// tree's exit block, and the tables of the split slots.
func (p *packedForest) topNodes(lanes []pnode) ([]pnode, *topTables) {
	nt := len(p.start) - 1
	n0 := len(lanes)
	out := make([]pnode, n0+topExits*nt)
	copy(out, lanes)
	tb := &topTables{
		col:  make([]uint32, topSplits*nt),
		thr:  make([]float32, topSplits*nt),
		keep: make([]uint32, topSplits*nt),
		base: make([]int32, nt),
	}
	for i := range tb.thr {
		tb.thr[i] = float32(math.NaN())
		tb.keep[i] = ^uint32(0)
	}
	var exits [topExits]int32
	for t := range nt {
		b := p.start[t]
		tn := p.nodes[b:p.start[t+1]]
		slot := 0
		treeTop(tn, &exits, func(i int32, keep uint32) {
			k := slot*nt + t
			tb.col[k] = (tn[i].meta & pColField) / groupRows
			tb.thr[k] = tn[i].thr
			tb.keep[k] = keep
			slot++
		})
		base := n0 + topExits*t
		tb.base[t] = int32(base)
		for e, src := range exits {
			out[base+e] = lanes[b+src]
		}
	}
	return out, tb
}

// treeTop finds the top of the packed tree tn (tree-local indices): its
// first topSplits splits in breadth-first (= index) order, which form a
// connected top since a split's parent comes before it. It calls split for
// each of them with the exits it keeps when x > threshold (all but those of
// its left subtree) and stores the exits left to right in exits (at most
// topExits; the rest of exits padded with the first).
func treeTop(tn []pnode, exits *[topExits]int32, split func(i int32, keep uint32)) {
	var sel [topSplits]int32
	ns := 0
	for i := range int32(len(tn)) {
		if ns == topSplits {
			break
		}
		if tn[i].thr == tn[i].thr { // leaves have a NaN threshold
			sel[ns] = i
			ns++
		}
	}
	inTop := func(i int32) bool {
		for _, s := range sel[:ns] {
			if s == i {
				return true
			}
		}
		return false
	}
	ne := 0
	var visit func(i int32)
	visit = func(i int32) {
		if !inTop(i) {
			exits[ne] = i
			ne++
			return
		}
		left := int32(tn[i].meta >> pColBits)
		e0 := ne
		visit(left)
		keep := ^uint32(0)
		for e := e0; e < ne; e++ {
			keep &^= 1 << e
		}
		split(i, keep)
		visit(left + 1)
	}
	visit(0)
	for e := ne; e < topExits; e++ {
		exits[e] = exits[0]
	}
}
