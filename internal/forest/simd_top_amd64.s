//go:build amd64 && !purego

#include "textflag.h"

#include "walk_amd64.h"

// walkTopAVX512 is walkTreesAVX512 (simd_trees_amd64.s) with one change:
// a pair's lane starts at starts[pair] (the node topAVX512 found below the
// top of its tree) instead of its tree's root. The refilled lanes' pairs
// are consecutive, so their start nodes are one VPEXPANDD from memory.
// R8 holds starts.

#define TREE_LANESTART(L, NT) \
	VPEXPANDD (R8)(AX*4), K3, L

// func walkTopAVX512(nodes *pnode, rows *float32, starts *uint32, out *uint32, list *uint32, ntrees, endA, endB uint32)
TEXT ·walkTopAVX512(SB), NOSPLIT, $0-52
	MOVQ starts+16(FP), R8
	TREE_WALK
	RET

// topAVX512: for the 16-tree windows w = t0, t0+16, ... (the last one
// ending at t0+k, overlapping the one before), rows 0..nrows-1 rounded up
// to 8, starts[row*k + w-t0 + lane] = base[w+lane] + the row's exit of tree
// w+lane (see top.go). Eight rows at a time: rows Z0-Z7, their exit bits
// Z8-Z15; per slot, the 16 trees' columns Z16, thresholds Z17, kept bits
// Z18; Z19-Z26 values; Z27 all ones; Z28 zero; Z29 127.
//   SI columns, DI thresholds, R8 kept bits, R9 bases, R10 rows, R11 starts,
//   R12 slot stride (4 x ntot), BX window, CX last window, DX row group,
//   AX, R13, R14, R15 scratch.

#define TOPSTEP(R, A, X, K) \
	VPERMPS R, Z16, X \
	VCMPPS $0x1e, Z17, X, K \
	VPANDD Z18, A, K, A

// EXIT turns exit bits A into base + lowest set bit, stores it at (R13)
// and moves R13 to the next row (AX bytes on).
#define EXIT(A, X) \
	LOWBIT(A, X, Z28, Z29) \
	VPADDD Z30, X, X \
	VMOVDQU32 X, (R13) \
	ADDQ AX, R13

// func topAVX512(col *uint32, thr *float32, keep *uint32, base *int32, rows *float32, starts *uint32, ntot, t0, k, nrows uint32)
TEXT ·topAVX512(SB), NOSPLIT, $0-64
	MOVQ col+0(FP), SI
	MOVQ thr+8(FP), DI
	MOVQ keep+16(FP), R8
	MOVQ base+24(FP), R9
	MOVQ rows+32(FP), R10
	MOVQ starts+40(FP), R11
	MOVL ntot+48(FP), R12
	SHLQ $2, R12
	MOVL t0+52(FP), BX
	MOVL k+56(FP), CX
	ADDL BX, CX
	SUBL $16, CX

	VPTERNLOGD $0xff, Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	MOVL $127, AX
	VPBROADCASTD AX, Z29

window:
	VMOVDQU32 (R9)(BX*4), Z30
	XORL DX, DX
group:
	// R13 = &starts[row*k + w-t0], R14 = &rows[row*16], row = DX
	MOVL DX, AX
	IMULL k+56(FP), AX
	ADDL BX, AX
	SUBL t0+52(FP), AX
	LEAQ (R11)(AX*4), R13
	MOVL DX, AX
	SHLQ $6, AX
	LEAQ (R10)(AX*1), R14
	VMOVUPS 0(R14), Z0
	VMOVUPS 64(R14), Z1
	VMOVUPS 128(R14), Z2
	VMOVUPS 192(R14), Z3
	VMOVUPS 256(R14), Z4
	VMOVUPS 320(R14), Z5
	VMOVUPS 384(R14), Z6
	VMOVUPS 448(R14), Z7
	VMOVDQA32 Z27, Z8
	VMOVDQA32 Z27, Z9
	VMOVDQA32 Z27, Z10
	VMOVDQA32 Z27, Z11
	VMOVDQA32 Z27, Z12
	VMOVDQA32 Z27, Z13
	VMOVDQA32 Z27, Z14
	VMOVDQA32 Z27, Z15
	// R15 = byte offset of slot 0 of window w; 31 slots
	MOVL BX, R15
	SHLQ $2, R15
	MOVL $31, AX
slot:
	VMOVDQU32 (SI)(R15*1), Z16
	VMOVUPS (DI)(R15*1), Z17
	VMOVDQU32 (R8)(R15*1), Z18
	TOPSTEP(Z0, Z8, Z19, K1)
	TOPSTEP(Z1, Z9, Z20, K2)
	TOPSTEP(Z2, Z10, Z21, K3)
	TOPSTEP(Z3, Z11, Z22, K4)
	TOPSTEP(Z4, Z12, Z23, K5)
	TOPSTEP(Z5, Z13, Z24, K6)
	TOPSTEP(Z6, Z14, Z25, K7)
	TOPSTEP(Z7, Z15, Z26, K1)
	ADDQ R12, R15
	DECL AX
	JNZ  slot

	MOVL k+56(FP), AX
	SHLQ $2, AX
	EXIT(Z8, Z19)
	EXIT(Z9, Z20)
	EXIT(Z10, Z21)
	EXIT(Z11, Z22)
	EXIT(Z12, Z23)
	EXIT(Z13, Z24)
	EXIT(Z14, Z25)
	EXIT(Z15, Z26)

	ADDL $8, DX
	CMPL DX, nrows+60(FP)
	JB   group

	CMPL BX, CX
	JAE  topdone
	ADDL $16, BX
	CMPL BX, CX
	JBE  window
	MOVL CX, BX
	JMP  window
topdone:
	VZEROUPPER
	RET
