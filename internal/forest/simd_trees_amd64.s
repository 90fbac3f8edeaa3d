//go:build amd64 && !purego

#include "textflag.h"

DATA iotaT<>+0(SB)/8, $0x0000000100000000
DATA iotaT<>+8(SB)/8, $0x0000000300000002
DATA iotaT<>+16(SB)/8, $0x0000000500000004
DATA iotaT<>+24(SB)/8, $0x0000000700000006
DATA iotaT<>+32(SB)/8, $0x0000000900000008
DATA iotaT<>+40(SB)/8, $0x0000000b0000000a
DATA iotaT<>+48(SB)/8, $0x0000000d0000000c
DATA iotaT<>+56(SB)/8, $0x0000000f0000000e
GLOBL iotaT<>(SB), RODATA|NOPTR, $64

// walkTreesAVX512: the tree-lane walk for forests of up to 8 features (see
// simd.go). Each of two walkers owns a range of rows and walks them in
// order, row after row, 16 (row, tree) pairs at a time: its lanes are trees
// of the same row, or of two consecutive rows at a row change, so a row's
// values come from two registers holding a row each (one VPERMI2PS) instead
// of a gather. Nodes use global indices: meta = column (bits 0-3) | left
// child is a leaf (bit 4) | right child is a leaf (bit 5) | left child << 8.
// Registers:
//   SI nodes, DI rows (16 values each), R8 roots (16 readable past the last),
//   R13 leaves of finished pairs, R14 their pairs, DX their count;
//   AX, CX, R9 scratch.
//   Z4 column mask, Z5 ones, Z6 0..15, Z8 sixteen, Z16 ntrees,
//   Z17 roots[0:16], Z24 even dword indices, Z25 odd dword indices.
//   Walker A: L (node) Z0, P (pair = row*ntrees + tree) Z1, S (16 x row
//   parity) Z2, even row Z3, odd row Z7, K1 active lanes, K2 idle lanes,
//   R11 row being started, R12 its next tree.
//   Walker B: Z26, Z27, Z28, Z29, Z30, K5, K6, BX, R10.

// NODE gathers the 8-byte nodes (threshold, meta) of the active lanes.
#define NODE(L, LY, HIY, Q1, Q2, K) \
	VEXTRACTI64X4 $1, L, HIY \
	KMOVW K, K3 \
	KSHIFTRW $8, K, K4 \
	VPGATHERDQ (SI)(LY*8), K3, Q1 \
	VPGATHERDQ (SI)(HIY*8), K4, Q2

// SPLIT separates thresholds and metas; XI = column + 16 x row parity.
#define SPLIT(Q1, Q2, THR, META, S, XI) \
	VMOVDQA32 Z24, THR \
	VPERMI2D Q2, Q1, THR \
	VMOVDQA32 Z25, META \
	VPERMI2D Q2, Q1, META \
	VPANDD Z4, META, XI \
	VPORD S, XI, XI

// ADVANCE moves to the left child, or the right one when x > threshold;
// F gets the new node's leaf bit in bit 4.
#define ADVANCE(L, F, K, THR, META, XV) \
	VPSRLD $8, META, L \
	VCMPPS $0x1e, THR, XV, K, K7 \
	VPADDD Z5, L, K7, L \
	VMOVDQA32 META, F \
	VPSRLD $1, META, K7, F

// FINISH records the lanes that reached a leaf (leaf, pair) and leaves
// them in K7.
#define FINISH(L, F, P, K) \
	VPTESTMD Z8, F, K, K7 \
	KMOVW K7, AX \
	POPCNTL AX, CX \
	VPCOMPRESSD L, K7, Z21 \
	VPCOMPRESSD P, K7, Z22 \
	VMOVDQU32 Z21, (R13)(DX*4) \
	VMOVDQU32 Z22, (R14)(DX*4) \
	ADDQ CX, DX

// REFILL gives the candidate lanes (finished in K7, or idle) the next
// (row, tree) pairs of the walker: trees NT.. of row IR, then of row IR+1
// once no lane is left on row IR-1 (whose register row IR+1 takes);
// candidates that get no pair wait in I. Needs ntrees >= 16, so that 16
// lanes never reach past row IR+1.
#define REFILL(L, P, S, TA, TB, K, I, IR, NT, END, LSKIP, LNOX, LCAP, LODD) \
	KANDNW K, K7, K \
	KORW K7, I, K7 \
	KMOVW K7, AX \
	POPCNTL AX, CX \
	JZ   LSKIP \
	MOVL ntrees+40(FP), AX \
	SUBL NT, AX \
	CMPL CX, AX \
	JLS  LNOX \
	LEAL 1(IR), R9 \
	CMPL R9, END \
	JAE  LCAP \
	ANDL $1, R9 \
	SHLL $4, R9 \
	VPBROADCASTD R9, Z21 \
	VPCMPEQD Z21, S, K, K3 \
	KORTESTW K3, K3 \
	JNZ  LCAP \
	JMP  LNOX \
LCAP: \
	MOVL AX, CX \
LNOX: \
	VPEXPANDD Z6, K7, Z21 \
	VPBROADCASTD CX, Z22 \
	VPCMPUD $1, Z22, Z21, K7, K3 \
	KANDNW K7, K3, I \
	KORW K, K3, K \
	VPBROADCASTD NT, Z22 \
	VPADDD Z21, Z22, Z9 \
	VPCMPUD $5, Z16, Z9, K3, K4 \
	VMOVDQU32 (R8)(NT*4), Z10 \
	VPERMD Z10, Z21, K3, L \
	VPSUBD Z16, Z9, K4, Z9 \
	VPERMD Z17, Z9, K4, L \
	MOVL IR, AX \
	IMULL ntrees+40(FP), AX \
	ADDL NT, AX \
	VPBROADCASTD AX, Z22 \
	VPADDD Z21, Z22, K3, P \
	MOVL IR, AX \
	ANDL $1, AX \
	SHLL $4, AX \
	VPBROADCASTD AX, Z22 \
	VMOVDQA32 Z22, K3, S \
	VPXORD Z8, S, K4, S \
	ADDL CX, NT \
	CMPL NT, ntrees+40(FP) \
	JLS  LSKIP \
	SUBL ntrees+40(FP), NT \
	INCL IR \
	MOVL IR, AX \
	SHLQ $6, AX \
	TESTL $64, AX \
	JNZ  LODD \
	VMOVUPS (DI)(AX*1), TA \
	JMP  LSKIP \
LODD: \
	VMOVUPS (DI)(AX*1), TB \
LSKIP:

// func walkTreesAVX512(nodes *pnode, rows *float32, roots *int32, out *uint32, list *uint32, ntrees, endA, endB uint32)
TEXT ·walkTreesAVX512(SB), NOSPLIT, $0-52
	MOVQ nodes+0(FP), SI
	MOVQ rows+8(FP), DI
	MOVQ roots+16(FP), R8
	MOVQ list+32(FP), R13
	MOVL ntrees+40(FP), AX
	MOVL endB+48(FP), CX
	IMULL AX, CX
	LEAQ 64(R13)(CX*4), R14
	XORQ DX, DX

	MOVL $0x0f, AX
	VPBROADCASTD AX, Z4
	MOVL $1, AX
	VPBROADCASTD AX, Z5
	MOVL $16, AX
	VPBROADCASTD AX, Z8
	VMOVDQU32 iotaT<>(SB), Z6
	VPADDD Z6, Z6, Z24
	VPADDD Z5, Z24, Z25
	MOVL ntrees+40(FP), AX
	VPBROADCASTD AX, Z16
	VMOVDQU32 (R8), Z17

	// Walker A: rows [0, endA); B: rows [endA, endB); an empty range starts
	// with no idle lane.
	XORL R11, R11
	XORL R12, R12
	MOVL endA+44(FP), BX
	XORL R10, R10
	KXORW K1, K1, K1
	KXORW K5, K5, K5
	KXORW K7, K7, K7
	KXORW K2, K2, K2
	KXORW K6, K6, K6
	VPXORD Z2, Z2, Z2
	VPXORD Z28, Z28, Z28
	MOVL $0xffff, AX
	CMPL R11, endA+44(FP)
	JAE  emptyA
	KMOVW AX, K2
	VMOVUPS (DI), Z3
emptyA:
	CMPL BX, endB+48(FP)
	JAE  emptyB
	KMOVW AX, K6
	MOVL BX, AX
	SHLQ $6, AX
	TESTL $64, AX
	JNZ  oddB
	VMOVUPS (DI)(AX*1), Z29
	JMP  emptyB
oddB:
	VMOVUPS (DI)(AX*1), Z30
emptyB:
	KXORW K7, K7, K7
	REFILL(Z0, Z1, Z2, Z3, Z7, K1, K2, R11, R12, endA+44(FP), sA0, nA0, cA0, oA0)
	KXORW K7, K7, K7
	REFILL(Z26, Z27, Z28, Z29, Z30, K5, K6, BX, R10, endB+48(FP), sB0, nB0, cB0, oB0)

loop:
	NODE(Z0, Y0, Y19, Z21, Z22, K1)
	NODE(Z26, Y26, Y20, Z23, Z31, K5)
	SPLIT(Z21, Z22, Z9, Z10, Z2, Z11)
	SPLIT(Z23, Z31, Z14, Z15, Z28, Z18)
	VPERMI2PS Z7, Z3, Z11
	VPERMI2PS Z30, Z29, Z18
	ADVANCE(Z0, Z13, K1, Z9, Z10, Z11)
	ADVANCE(Z26, Z12, K5, Z14, Z15, Z18)
	NODE(Z0, Y0, Y19, Z21, Z22, K1)
	NODE(Z26, Y26, Y20, Z23, Z31, K5)
	SPLIT(Z21, Z22, Z9, Z10, Z2, Z11)
	SPLIT(Z23, Z31, Z14, Z15, Z28, Z18)
	VPERMI2PS Z7, Z3, Z11
	VPERMI2PS Z30, Z29, Z18
	ADVANCE(Z0, Z13, K1, Z9, Z10, Z11)
	ADVANCE(Z26, Z12, K5, Z14, Z15, Z18)
	FINISH(Z0, Z13, Z1, K1)
	REFILL(Z0, Z1, Z2, Z3, Z7, K1, K2, R11, R12, endA+44(FP), sA, nA, cA, oA)
	FINISH(Z26, Z12, Z27, K5)
	REFILL(Z26, Z27, Z28, Z29, Z30, K5, K6, BX, R10, endB+48(FP), sB, nB, cB, oB)
	KORTESTW K1, K5
	JNZ  loop
	VZEROUPPER

	// out[pair] = leaf, for the pairs in the order they finished
	MOVQ out+24(FP), R9
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
