//go:build amd64 && !purego

#include "textflag.h"

DATA iota<>+0(SB)/8, $0x0000000100000000
DATA iota<>+8(SB)/8, $0x0000000300000002
DATA iota<>+16(SB)/8, $0x0000000500000004
DATA iota<>+24(SB)/8, $0x0000000700000006
DATA iota<>+32(SB)/8, $0x0000000900000008
DATA iota<>+40(SB)/8, $0x0000000b0000000a
DATA iota<>+48(SB)/8, $0x0000000d0000000c
DATA iota<>+56(SB)/8, $0x0000000f0000000e
GLOBL iota<>(SB), RODATA|NOPTR, $64

// func cpuAVX512() bool
TEXT ·cpuAVX512(SB), NOSPLIT, $0-1
	MOVL $0, AX
	XORL CX, CX
	CPUID
	CMPL AX, $7
	JB   no
	MOVL $1, AX
	XORL CX, CX
	CPUID
	// OSXSAVE (bit 27) and POPCNT (bit 23)
	ANDL $0x08800000, CX
	CMPL CX, $0x08800000
	JNE  no
	XORL CX, CX
	XGETBV
	// the OS saves XMM, YMM, the opmask registers and all of ZMM0-31
	ANDL $0xe6, AX
	CMPL AX, $0xe6
	JNE  no
	MOVL $7, AX
	XORL CX, CX
	CPUID
	// AVX512F (bit 16)
	ANDL $0x00010000, BX
	JZ   no
	MOVB $1, ret+0(FP)
	RET
no:
	MOVB $0, ret+0(FP)
	RET

// walkAVX512 walks (tree, row) pairs with two walkers of 16 lanes; see
// simd.go for the contract. Registers:
//   SI nodes, DI transposed block, R8 roots, R9 out, BX next pair,
//   R13 leaves of finished pairs, R14 their pairs, DX their count
//   Z4 column field mask, Z5 ones, Z6 0..15, Z16 npairs, Z17 row mask,
//   X8 shift, Z24 even dword indices, Z25 odd dword indices
//   walker A: L (tree-local node) Z0, B (tree base) Z1, P (pair) Z3, K1 active lanes
//   walker B: Z26, Z27, Z29, K5
// A step is split in phases so that both walkers' gathers are in flight
// together.

// NODE gathers the 8-byte nodes (threshold, meta) of the active lanes.
#define NODE(L, B, IDX, IDXY, HIY, Q1, Q2, K, KA, KB) \
	VPADDD L, B, IDX \
	VEXTRACTI64X4 $1, IDX, HIY \
	KMOVW K, KA \
	KSHIFTRW $8, K, KB \
	VPGATHERDQ (SI)(IDXY*8), KA, Q1 \
	VPGATHERDQ (SI)(HIY*8), KB, Q2

// SPLIT separates thresholds and metas and forms each lane's offset in the
// block: column x 64 + row.
#define SPLIT(Q1, Q2, THR, META, P, XI, TMP) \
	VMOVDQA32 Z24, THR \
	VPERMI2D Q2, Q1, THR \
	VMOVDQA32 Z25, META \
	VPERMI2D Q2, Q1, META \
	VPANDD Z4, META, XI \
	VPSLLD $3, XI, XI \
	VPANDD Z17, P, TMP \
	VPADDD TMP, XI, XI

#define XGATHER(XI, XV, K, KA) \
	KMOVW K, KA \
	VPGATHERDD (DI)(XI*4), KA, XV

// ADVANCE moves to the left child, or the right one when x > threshold
// (false for NaN: a leaf stays put); F gets the child's leaf bit in bit 0.
#define ADVANCE(L, K, THR, META, XV, KT, F) \
	VPSRLD $11, META, L \
	VCMPPS $0x1e, THR, XV, K, KT \
	VPADDD Z5, L, KT, L \
	VMOVDQA32 META, F \
	VPSRLD $1, META, KT, F

// FINISH records the lanes at a leaf (leaf, pair) and refills them.
#define FINISH(L, B, P, K, F) \
	VPTESTMD Z5, F, K, K4 \
	VPADDD L, B, Z14 \
	KMOVW K4, AX \
	POPCNTL AX, CX \
	VPCOMPRESSD Z14, K4, Z14 \
	VPCOMPRESSD P, K4, Z15 \
	VMOVDQU32 Z14, (R13)(DX*4) \
	VMOVDQU32 Z15, (R14)(DX*4) \
	ADDQ CX, DX \
	REFILL(L, B, P, K)

// REFILL gives the lanes in K4 (CX of them) the next pairs, at their
// tree's root; lanes past the last pair leave K.
#define REFILL(L, B, P, K) \
	VPBROADCASTD BX, Z15 \
	VPADDD Z6, Z15, Z15 \
	VPEXPANDD Z15, K4, P \
	ADDL CX, BX \
	VPCMPUD $1, Z16, P, K, K \
	VPSRLD X8, P, Z15 \
	VPERMD (R8), Z15, B \
	VPXORD L, L, K4, L

#define START(L, B, P, K) \
	VPXORD L, L, L \
	KMOVW AX, K4 \
	KMOVW AX, K \
	MOVL $16, CX \
	REFILL(L, B, P, K)

#define STEP \
	NODE(Z0, Z1, Z19, Y19, Y20, Z21, Z22, K1, K2, K3) \
	NODE(Z26, Z27, Z2, Y2, Y7, Z23, Z28, K5, K6, K7) \
	SPLIT(Z21, Z22, Z9, Z10, Z3, Z11, Z20) \
	SPLIT(Z23, Z28, Z30, Z31, Z29, Z2, Z7) \
	XGATHER(Z11, Z12, K1, K2) \
	XGATHER(Z2, Z19, K5, K6) \
	ADVANCE(Z0, K1, Z9, Z10, Z12, K3, Z13) \
	ADVANCE(Z26, K5, Z30, Z31, Z19, K7, Z18)

// func walkAVX512(nodes *pnode, x *float32, roots *[16]int32, out *uint32, list *uint32, npairs, shift, rowMask uint32)
TEXT ·walkAVX512(SB), NOSPLIT, $0-52
	MOVQ nodes+0(FP), SI
	MOVQ x+8(FP), DI
	MOVQ roots+16(FP), R8
	MOVQ out+24(FP), R9
	MOVQ list+32(FP), R13
	MOVL npairs+40(FP), R10
	MOVL shift+44(FP), R11
	MOVL rowMask+48(FP), R12
	LEAQ 64(R13)(R10*4), R14
	XORQ DX, DX

	MOVL $0x7f8, AX
	VPBROADCASTD AX, Z4
	MOVL $1, AX
	VPBROADCASTD AX, Z5
	VMOVDQU32 iota<>(SB), Z6
	VPADDD Z6, Z6, Z24
	VPADDD Z5, Z24, Z25
	VPBROADCASTD R10, Z16
	VPBROADCASTD R12, Z17
	MOVQ R11, X8

	XORL BX, BX
	MOVL $0xffff, AX
	START(Z0, Z1, Z3, K1)
	START(Z26, Z27, Z29, K5)

loop:
	STEP
#ifdef TWOSTEPS
	STEP
#endif
	FINISH(Z0, Z1, Z3, K1, Z13)
	FINISH(Z26, Z27, Z29, K5, Z18)
	KORTESTW K1, K5
	JNZ  loop
	VZEROUPPER

	// out[pair] = leaf, in the order the pairs finished
	XORQ CX, CX
	TESTQ DX, DX
	JZ   done
dist:
	MOVL (R14)(CX*4), AX
	MOVL (R13)(CX*4), R8
	MOVL R8, (R9)(AX*4)
	INCQ CX
	CMPQ CX, DX
	JB   dist
done:
	RET
