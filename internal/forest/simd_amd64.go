//go:build amd64 && !purego

package forest

// cpuAVX512 reports whether the CPU has AVX-512F and POPCNT and the OS
// saves the AVX-512 registers (CPUID and XGETBV).
func cpuAVX512() bool

// walkAVX512 walks npairs (tree, row) pairs: pair k is row k&rowMask of the
// transposed block x against the tree whose root is roots[k>>shift]
// (npairs>>shift <= 16), through the packed nodes. out[k] receives the
// global packed index of the pair's leaf. list is scratch for
// 2*(npairs+16) values.
//
//go:noescape
func walkAVX512(nodes *pnode, x *float32, roots *[16]int32, out *uint32, list *uint32, npairs, shift, rowMask uint32)

var haveAVX512 = cpuAVX512()

// walkTreesAVX512 walks the (row, tree) pairs of rows [0, endB) of the
// block rows (16 values per row: feature j as -Inf-for-NaN at 2j and
// +Inf-for-NaN at 2j+1) against ntrees (>= 16) trees whose roots are
// roots[0:ntrees] (16 more values readable after them), through nodes in
// the tree-lane layout (treeLaneNodes). out[row*ntrees+t] receives the
// leaf's global index; list is scratch for 2*(endB*ntrees+16) values.
// Rows [0, endA) go to one walker, the others to the second.
//
//go:noescape
func walkTreesAVX512(nodes *pnode, rows *float32, roots *int32, out *uint32, list *uint32, ntrees, endA, endB uint32)

// topAVX512 writes starts[row*k + t-t0] for rows [0, nrows) (rounded up to
// 8, rows holding 8 x 16 values each) and trees [t0, t0+k) (k >= 16): the
// lanes index of the copy of the row's exit from the top of tree t (top.go),
// from the slot tables (slot s of tree t at s*ntot + t) and the trees' exit
// blocks base.
//
//go:noescape
func topAVX512(col *uint32, thr *float32, keep *uint32, base *int32, rows *float32, starts *uint32, ntot, t0, k, nrows uint32)

// walkTopAVX512 is walkTreesAVX512 with the pair row*ntrees+t starting at
// node starts[row*ntrees+t] instead of the root of tree t.
//
//go:noescape
func walkTopAVX512(nodes *pnode, rows *float32, starts *uint32, out *uint32, list *uint32, ntrees, endA, endB uint32)

// topRowsAVX512 finds, for trees t < ntrees of the call (slots, ns, exits
// and base of the first of them) and rows r < rows of the transposed block
// x, the tree-local node e where the row leaves the top of the tree
// (top_rows.go): out[t<<shift + r] = base[t] + e, and when e is a split
// the pair t<<shift + r is appended to list[0:] and e to
// list[rowTopList:]; it returns their count. ngroups = max(1,
// (1<<shift)/16). Up to 16 values past the last tree's in out and past the
// ends of the list may be written.
//
//go:noescape
func topRowsAVX512(slots *topSlot, ns *uint32, exits *uint32, base *int32, x *float32, out *uint32, list *uint32, ntrees, shift, ngroups, rows uint32) uint32

// walkListAVX512 is walkAVX512 for the npairs pairs pairs[0:npairs] only,
// pair pairs[k] starting at the tree-local node pairs[rowTopList+k]
// instead of its tree's root (16 more values readable after each).
//
//go:noescape
func walkListAVX512(nodes *pnode, x *float32, roots *[16]int32, out *uint32, list *uint32, npairs, shift, rowMask uint32, pairs *uint32)

// transposeAVX512 is transposeBlock for the rows x[0:rows*nf] (rows <= 64,
// nf <= pMaxFeatures) into xb, with zeros in the rows of a 16-row tile past
// rows and in the columns of features past nf up to a multiple of 16.
//
//go:noescape
func transposeAVX512(xb *float32, x *float32, nf, rows uint32)

// votesAVX512 adds to acc[r*nc:(r+1)*nc], for rows r < rows and trees
// t < ntrees in order, the distribution vals[voff[g]:][:nc] of the leaf
// g = out[t<<shift + r].
//
//go:noescape
func votesAVX512(out *uint32, voff *uint32, vals *float64, acc *float64, ntrees, shift, rows, nc uint32)
