//go:build !amd64 || purego

package forest

// haveAVX512 is false off amd64 (and with the purego tag): PredictBatch
// uses the lock-step walk of batch.go.
const haveAVX512 = false

func walkAVX512(nodes *pnode, x *float32, roots *[16]int32, out *uint32, list *uint32, npairs, shift, rowMask uint32) {
	panic("forest: walkAVX512 without AVX-512")
}

func walkTreesAVX512(nodes *pnode, rows *float32, roots *int32, out *uint32, list *uint32, ntrees, endA, endB uint32) {
	panic("forest: walkTreesAVX512 without AVX-512")
}

func topAVX512(col *uint32, thr *float32, keep *uint32, base *int32, rows *float32, starts *uint32, ntot, t0, k, nrows uint32) {
	panic("forest: topAVX512 without AVX-512")
}

func walkTopAVX512(nodes *pnode, rows *float32, starts *uint32, out *uint32, list *uint32, ntrees, endA, endB uint32) {
	panic("forest: walkTopAVX512 without AVX-512")
}

func topRowsAVX512(slots *topSlot, ns *uint32, exits *uint32, base *int32, x *float32, out *uint32, list *uint32, ntrees, shift, ngroups, rows uint32) uint32 {
	panic("forest: topRowsAVX512 without AVX-512")
}

func walkListAVX512(nodes *pnode, x *float32, roots *[16]int32, out *uint32, list *uint32, npairs, shift, rowMask uint32, pairs *uint32) {
	panic("forest: walkListAVX512 without AVX-512")
}

func votesAVX512(out *uint32, voff *uint32, vals *float64, acc *float64, ntrees, shift, rows, nc uint32) {
	panic("forest: votesAVX512 without AVX-512")
}

func transposeAVX512(xb *float32, x *float32, nf, rows uint32) {
	panic("forest: transposeAVX512 without AVX-512")
}
