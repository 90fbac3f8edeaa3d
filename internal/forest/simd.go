package forest

import (
	"math/bits"
	"os"
)

// The vector batch walk (amd64 with AVX-512, simd_amd64.s).
//
// A block of up to 64 rows is transposed once (blockX: value c of row r at
// c*64 + r, each feature twice as for the lock-step walk, NaN as -Inf and
// +Inf). Then walkAVX512 takes up to 16 trees at a time: pair k of the call
// is row k mod B of the block against tree k / B of the chunk, B the block
// size rounded up to a power of two. Two walkers of 16 lanes each hold a
// pair per lane; a step gathers each lane's packed node (threshold and
// meta), then the row's value at the node's column, compares with
// VCMPPS(GT_OQ) exactly as the scalar walk compares (false for a NaN
// threshold, so a leaf stays put), and moves to the left or right child.
// The meta's leaf bits (pLeftLeaf, pRightLeaf) tell at once that a lane
// reached a leaf: its pair and leaf are written out (compressed, in the
// order they finish) and the lane takes the next pair at that tree's root,
// so no lane waits for a deeper row as in the lock-step walk. Lanes past the
// last pair stop; the call returns when both walkers are empty, having
// written the leaf of every pair. The votes are then added in Go, tree by
// tree in order for each row, exactly as Predict adds them: the results are
// bit for bit those of Predict.

// The tree-lane walk (walkTreesAVX512), for forests of up to 8 features:
// the lanes are (row, tree) pairs of the same row (two consecutive rows at
// a row change), so a lane's value is picked from two registers holding a
// row's 16 values each (VPERMI2PS) instead of gathered, and the nodes carry
// global indices (treeLaneNodes). Each of two walkers takes half of the
// block's rows, row after row, all trees of a chunk for each; a lane that
// reaches a leaf takes the next tree of its walker's row, or the first
// trees of the next row once no lane is left on the row before. Measured
// on the benchmark forest (8 features) 15-20 % faster than the row-lane
// walk above; wider forests use the row-lane walk, by default after the
// top of each tree (top_rows.go).
//
// By default the tree-lane walk does not start at the roots: topAVX512
// first finds each (row, tree) pair's exit from the top 31 splits of the
// tree with compares on registers (no gather), and walkTopAVX512 goes on
// from there (top.go): on the benchmark forest 3.5 instead of 8.6 steps
// per pair.

// simdBatch selects the vector walks for PredictBatch: true when the CPU
// and OS support AVX-512 (amd64 only), unless the environment variable
// LOADWATCH_FOREST_NOSIMD is set; simdTreeLanes (default true) lets forests
// that qualify use the tree-lane walk, false unless
// LOADWATCH_FOREST_NOSIMD=treelanes. The variable exists to compare the
// walks in one binary; tests switch both to cover every walk.
//
// simdTop (default true) lets the tree-lane walk find the top of each tree
// from registers first (top.go), and the row-lane walk from the transposed
// block (top_rows.go); LOADWATCH_FOREST_NOSIMD=notop selects both walks
// from the roots instead (the walks before the top phases), and
// LOADWATCH_FOREST_NOSIMD=treelanes the row-lane walk with its top phase
// for every forest.
var (
	simdBatch     = haveAVX512 && (os.Getenv("LOADWATCH_FOREST_NOSIMD") == "" || os.Getenv("LOADWATCH_FOREST_NOSIMD") == "treelanes" || os.Getenv("LOADWATCH_FOREST_NOSIMD") == "notop")
	simdTreeLanes = os.Getenv("LOADWATCH_FOREST_NOSIMD") != "treelanes"
	simdTop       = os.Getenv("LOADWATCH_FOREST_NOSIMD") != "notop"
)

const (
	laneMaxFeatures = 8       // 2 x 8 values per row: one register
	laneMinTrees    = 16      // a walker's 16 lanes never reach past the next row
	laneMaxNodes    = 1 << 24 // global node indices in 24 bits of meta
	laneChunk       = 32      // trees per walkTreesAVX512 call (the last call takes 32-63)
)

// treeLaneNodes returns the packed nodes with global child indices for the
// tree-lane walk: meta = column (2 x feature + NaN goes right, 0-15) |
// left child is a leaf << 4 | right child is a leaf << 5 | left child << 8.
func (p *packedForest) treeLaneNodes() []pnode {
	s := make([]pnode, len(p.nodes))
	for t := range len(p.start) - 1 {
		base := uint32(p.start[t])
		for i := p.start[t]; i < p.start[t+1]; i++ {
			n := p.nodes[i]
			leafBits := n.meta & (pLeftLeaf | pRightLeaf)
			s[i] = pnode{thr: n.thr, meta: (n.meta&pColField)/groupRows | leafBits<<4 | (base+n.meta>>pColBits)<<8}
		}
	}
	return s
}

// laneScratch is predictTreeLanes' working memory, on the stack.
type laneScratch struct {
	rows   [blockRows * 2 * laneMaxFeatures]float32
	starts [blockRows * (2*laneChunk - 1)]uint32 // with the top: each pair's start node
	out    [blockRows * (2*laneChunk - 1)]uint32
	list   [2 * (blockRows*(2*laneChunk-1) + 16)]uint32
	roots  [2*laneChunk - 1 + 16]int32
	votes  [blockRows]uint64 // with byte counts (top.go)
	acc    [blockRows * stackProbs]float64
}

// voteByte[c] counts a vote for class c in a row's byte counts (top.go).
var voteByte = [8]uint64{1, 1 << 8, 1 << 16, 1 << 24, 1 << 32, 1 << 40, 1 << 48, 1 << 56}

// predictTreeLanes is the tree-lane walk. With top, each pair starts below
// the top of its tree (found by topAVX512, top.go), topChunk trees a call,
// and pure forests of up to 8 classes and 255 trees count their votes in
// bytes; without, it walks from the roots, laneChunk trees a call.
func (f *Forest) predictTreeLanes(p *packedForest, X []float32, classes []int32, probs []float32, top bool) {
	nf, nc := f.nFeatures, f.nClasses
	var s laneScratch
	nt := len(p.start) - 1
	chunk := laneChunk
	if top {
		chunk = topChunk
	}
	counts := top && p.class != nil && nc <= 8 && nt <= 255
	tb := p.top
	n := len(classes)
	for r0 := 0; r0 < n; r0 += blockRows {
		rows := min(blockRows, n-r0)
		for r := range rows {
			xs := s.rows[r*2*laneMaxFeatures:][:2*nf]
			for j, v := range X[(r0+r)*nf : (r0+r+1)*nf] {
				xs[2*j], xs[2*j+1] = nanSplit(v)
			}
		}
		acc := s.acc[:blockRows*nc]
		if counts {
			clear(s.votes[:])
		} else {
			clear(acc)
		}
		for t0 := 0; t0 < nt; {
			k := nt - t0
			if k >= 2*laneChunk {
				k = chunk
			}
			if top {
				topAVX512(&tb.col[0], &tb.thr[0], &tb.keep[0], &tb.base[0], &s.rows[0], &s.starts[0], uint32(nt), uint32(t0), uint32(k), uint32(rows))
				walkTopAVX512(&p.lanes[0], &s.rows[0], &s.starts[0], &s.out[0], &s.list[0], uint32(k), uint32((rows+1)/2), uint32(rows))
			} else {
				copy(s.roots[:], p.start[t0:t0+k])
				walkTreesAVX512(&p.lanes[0], &s.rows[0], &s.roots[0], &s.out[0], &s.list[0], uint32(k), uint32((rows+1)/2), uint32(rows))
			}
			if counts {
				cls := p.class
				for r := range rows {
					v := s.votes[r]
					for _, g := range s.out[r*k : (r+1)*k] {
						v += voteByte[cls[g]&7]
					}
					s.votes[r] = v
				}
			} else {
				// Tree by tree, each row in turn: a row's votes are still
				// added in tree order, and consecutive additions go to
				// different rows (no chain of dependent additions).
				for t := range k {
					for r := range rows {
						f.addPackedLeaf(p.leaf[s.out[r*k+t]], acc[r*nc:(r+1)*nc])
					}
				}
			}
			t0 += k
		}
		if counts {
			for r := range rows {
				v := s.votes[r]
				for c := range acc[r*nc : (r+1)*nc] {
					acc[r*nc+c] = float64(uint8(v >> (8 * c)))
				}
			}
		}
		f.finishBlock(acc, r0, rows, classes, probs)
	}
}

// finishBlock divides a block's accumulated votes and writes its classes
// and probabilities.
func (f *Forest) finishBlock(acc []float64, r0, rows int, classes []int32, probs []float32) {
	nc := f.nClasses
	for r := range rows {
		a := acc[r*nc : (r+1)*nc]
		c, _ := f.argmax(a)
		row := r0 + r
		classes[row] = int32(c)
		if probs != nil {
			out := probs[row*nc : (row+1)*nc]
			for k := range out {
				out[k] = float32(a[k])
			}
		}
	}
}

const simdTrees = 16 // trees per walkAVX512 call (the roots fit one vector)

// blockX is a block of rows transposed for the vector walk: value c (see
// pnode) of row r at c*blockRows + r.
type blockX [2 * pMaxFeatures * blockRows]float32

// transposeBlock copies rows r0 .. r0+rows-1 of X into xb, each feature
// twice (NaN as -Inf, then as +Inf). Rows of xb past rows keep older values:
// they are walked (the pair count is a power of two) but not used.
func transposeBlock(xb *blockX, X []float32, nf, r0, rows int) {
	for r := range rows {
		for j, v := range X[(r0+r)*nf : (r0+r+1)*nf] {
			xb[2*j*blockRows+r], xb[(2*j+1)*blockRows+r] = nanSplit(v)
		}
	}
}

// rowLaneScratch is predictRowLanes' working memory, on the stack.
type rowLaneScratch struct {
	x     blockX
	out   [simdTrees*blockRows + 16]uint32       // leaf (global packed index) per pair (topRowsAVX512 writes 16 more)
	pairs [2 * rowTopList]uint32                 // with the top: the pairs that leave it at a split, then their start nodes
	list  [2 * (simdTrees*blockRows + 16)]uint32 // the walk's finished leaves and pairs
	roots [simdTrees]int32
	acc   [blockRows * stackProbs]float64
}

// predictRowLanes is the row-lane walk. With top, the block is transposed
// by transposeAVX512, topRowsAVX512 finds where each pair leaves the top
// of its tree (and writes the leaves of the pairs that leave it at a
// leaf), only the other pairs are walked on and votesAVX512 adds the votes
// (top_rows.go); without, every pair is walked from its root and the votes
// are added in Go.
func (f *Forest) predictRowLanes(p *packedForest, X []float32, classes []int32, probs []float32, top bool) {
	nf, nc := f.nFeatures, f.nClasses
	var s rowLaneScratch
	rt := p.rtop
	nt := len(p.start) - 1
	n := len(classes)
	for r0 := 0; r0 < n; r0 += blockRows {
		rows := min(blockRows, n-r0)
		shift := uint(bits.Len(uint(rows - 1)))
		if top {
			transposeAVX512(&s.x[0], &X[r0*nf], uint32(nf), uint32(rows))
		} else {
			transposeBlock(&s.x, X, nf, r0, rows)
		}
		acc := s.acc[:blockRows*nc]
		clear(acc)
		for t0 := 0; t0 < nt; t0 += simdTrees {
			k := min(simdTrees, nt-t0)
			copy(s.roots[:], p.start[t0:t0+k])
			if top {
				np := topRowsAVX512(&rt.slots[t0*topSplits], &rt.ns[t0], &rt.exits[t0*topExits], &p.start[t0], &s.x[0], &s.out[0], &s.pairs[0],
					uint32(k), uint32(shift), uint32(max(1, (1<<shift)/16)), uint32(rows))
				if np > 0 {
					walkListAVX512(&p.nodes[0], &s.x[0], &s.roots, &s.out[0], &s.list[0], np, uint32(shift), 1<<shift-1, &s.pairs[0])
				}
				votesAVX512(&s.out[0], &rt.voff[0], &rt.vals[0], &acc[0], uint32(k), uint32(shift), uint32(rows), uint32(nc))
				continue
			}
			walkAVX512(&p.nodes[0], &s.x[0], &s.roots, &s.out[0], &s.list[0], uint32(k)<<shift, uint32(shift), 1<<shift-1)
			for t := range k {
				for r, g := range s.out[t<<shift:][:rows] {
					f.addPackedLeaf(p.leaf[g], acc[r*nc:(r+1)*nc])
				}
			}
		}
		f.finishBlock(acc, r0, rows, classes, probs)
	}
}
