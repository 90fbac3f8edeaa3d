package forest

import (
	"math"
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

// simdBatch selects the vector walk for PredictBatch. It is true when the
// CPU and OS support AVX-512 (amd64 only) unless the environment variable
// LOADWATCH_FOREST_NOSIMD is set (to compare both walks in one binary);
// tests switch it to cover both.
var simdBatch = haveAVX512 && os.Getenv("LOADWATCH_FOREST_NOSIMD") == ""

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
			lo, hi := v, v
			if v != v {
				lo, hi = float32(math.Inf(-1)), float32(math.Inf(1))
			}
			xb[2*j*blockRows+r] = lo
			xb[(2*j+1)*blockRows+r] = hi
		}
	}
}

// simdScratch is predictSIMD's working memory, on the stack.
type simdScratch struct {
	x     blockX
	out   [simdTrees * blockRows]uint32          // leaf (global packed index) per pair
	list  [2 * (simdTrees*blockRows + 16)]uint32 // walkAVX512's finished leaves and pairs
	roots [simdTrees]int32
	acc   [blockRows * stackProbs]float64
}

func (f *Forest) predictSIMD(p *packedForest, X []float32, classes []int32, probs []float32) {
	nf, nc := f.nFeatures, f.nClasses
	var s simdScratch
	nt := len(p.start) - 1
	n := len(classes)
	for r0 := 0; r0 < n; r0 += blockRows {
		rows := min(blockRows, n-r0)
		shift := uint(bits.Len(uint(rows - 1)))
		transposeBlock(&s.x, X, nf, r0, rows)
		acc := s.acc[:blockRows*nc]
		clear(acc)
		for t0 := 0; t0 < nt; t0 += simdTrees {
			k := min(simdTrees, nt-t0)
			copy(s.roots[:], p.start[t0:t0+k])
			walkAVX512(&p.nodes[0], &s.x[0], &s.roots, &s.out[0], &s.list[0], uint32(k)<<shift, uint32(shift), 1<<shift-1)
			for t := range k {
				for r, g := range s.out[t<<shift:][:rows] {
					l := p.leaf[g]
					a := acc[r*nc : (r+1)*nc]
					if l >= 0 {
						a[l]++
						continue
					}
					addVotes(a, f.values[-1-int(l):][:nc])
				}
			}
		}
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
}
