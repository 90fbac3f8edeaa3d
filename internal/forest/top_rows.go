package forest

import "math/bits"

// The top of each tree for the row-lane walk (amd64 with AVX-512,
// simd_rowtop_amd64.s): every packed forest that does not take the
// tree-lane walk, such as the 42-feature lw1 models.
//
// The tree-lane top (top.go) holds 16 trees of one row in a vector and
// picks each lane's value from registers holding the row; with 42 features
// a row is 84 values, six registers, and every pick would take several
// permutes and merges. Here the lanes are 16 rows of one tree instead:
// every lane of a split slot reads the same column, so the 16 values are
// one vector load from the transposed block (blockX) the row-lane walk
// already uses, whatever the width of the forest (up to the packed
// layout's 128 features). Per slot and 16 rows: one VCMPPS with the
// column as a memory operand (thr < x: LT_OQ, exactly Go's x > thr, false
// for NaN) and one masked VPANDD of the slot's kept exit bits; the
// threshold and bits are broadcast once per slot for the block's four
// row groups. The exit (lowest bit left, from the float exponent as in
// top.go) becomes the tree-local index of the exit's node with one
// VPERMI2D from the tree's 32 exits in two registers, and walkListAVX512
// (walkAVX512 with a start node per pair instead of the root) goes on
// from there; an exit that is a leaf costs one step, as a root that is a
// leaf did before.
//
// The votes are added by votesAVX512, eight classes a VADDPD: every leaf
// has a distribution in vals (a mixed leaf its own, in Forest.values; a
// pure leaf a one-hot row), added row by row in tree order. Adding the
// 0.0 of a one-hot row leaves a sum unchanged (the sums start at +0 and
// only grow, so none is -0) and adding its 1.0 is the acc[l]++ of
// addPackedLeaf, so the sums are those of Predict bit for bit.

// rowTop holds the row-lane top tables of a packed forest.
type rowTop struct {
	slots []topSlot // tree t's split slots at t*topSplits, ns[t] of them used
	ns    []uint32
	exits []uint32  // tree t's exits (tree-local packed indices, | rowTopLeaf for a leaf) at t*topExits, padded with its first
	voff  []uint32  // per packed node: its distribution's offset in vals (leaves only)
	vals  []float64 // Forest.values, then a one-hot distribution per class
}

const (
	rowTopLeaf = 1 << 31                           // exits: the exit is a leaf
	rowTopList = simdTrees*blockRows + 2*simdTrees // topRowsAVX512's list: pairs, then their start nodes at this offset
)

// topSlot is a split of a tree's top: the byte offset of its column in
// blockX (column x blockRows x 4), its threshold and the exit bits it keeps
// when x > threshold.
type topSlot struct {
	off  uint32
	thr  float32
	keep uint32
}

// rowTopTables builds the row-lane top tables.
func (f *Forest) rowTopTables(p *packedForest) *rowTop {
	nt := len(p.start) - 1
	nc := f.nClasses
	rt := &rowTop{
		slots: make([]topSlot, topSplits*nt),
		ns:    make([]uint32, nt),
		exits: make([]uint32, topExits*nt),
		voff:  make([]uint32, len(p.nodes)),
		vals:  make([]float64, len(f.values)+nc*nc),
	}
	copy(rt.vals, f.values)
	for c := range nc {
		rt.vals[len(f.values)+c*nc+c] = 1
	}
	var exits [topExits]int32
	for t := range nt {
		tn := p.nodes[p.start[t]:p.start[t+1]]
		ns := 0
		treeTop(tn, &exits, func(i int32, keep uint32) {
			col := (tn[i].meta & pColField) / groupRows
			rt.slots[t*topSplits+ns] = topSlot{off: col * blockRows * 4, thr: tn[i].thr, keep: keep}
			ns++
		})
		rt.ns[t] = uint32(ns)
		for e, src := range exits {
			rt.exits[t*topExits+e] = uint32(src)
			if tn[src].thr != tn[src].thr {
				rt.exits[t*topExits+e] |= rowTopLeaf
			}
		}
	}
	for i, l := range p.leaf {
		if i >= len(p.nodes) || p.nodes[i].thr == p.nodes[i].thr {
			continue
		}
		if l >= 0 {
			rt.voff[i] = uint32(len(f.values) + int(l)*nc)
		} else {
			rt.voff[i] = uint32(-1 - l)
		}
	}
	return rt
}

// rowTopExit is topRowsAVX512 for one row and tree, in Go (for tests):
// the tree-local index of the node where the row leaves the top of tree t.
// xs holds the row's columns (feature j at 2j with NaN as -Inf, 2j+1 with
// NaN as +Inf).
func (rt *rowTop) rowTopExit(t int, xs []float32) uint32 {
	left := ^uint32(0)
	for _, s := range rt.slots[t*topSplits:][:rt.ns[t]] {
		if s.thr < xs[s.off/(blockRows*4)] {
			left &= s.keep
		}
	}
	e := bits.TrailingZeros32(left)
	return rt.exits[t*topExits+e] &^ rowTopLeaf
}
