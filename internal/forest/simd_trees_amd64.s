//go:build amd64 && !purego

#include "textflag.h"

#include "walk_amd64.h"

// walkTreesAVX512: the tree-lane walk for forests of up to 8 features from
// the roots (see simd.go, and walk_amd64.h for the walk). R8 holds the
// roots (16 readable past the last), Z17 roots[0:16].

// TREE_LANESTART: the new lanes start at their trees' roots, roots[NT+i]
// for lane i among the new pairs (Z21), or roots[NT+i-ntrees] (from Z17)
// for those past the last tree (K4): the first trees of the next row.
#define TREE_LANESTART(L, NT) \
	VMOVDQU32 (R8)(NT*4), Z10 \
	VPERMD Z10, Z21, K3, L \
	VPSUBD Z16, Z9, K4, Z9 \
	VPERMD Z17, Z9, K4, L

// func walkTreesAVX512(nodes *pnode, rows *float32, roots *int32, out *uint32, list *uint32, ntrees, endA, endB uint32)
TEXT ·walkTreesAVX512(SB), NOSPLIT, $0-52
	MOVQ roots+16(FP), R8
	VMOVDQU32 (R8), Z17
	TREE_WALK
	RET
