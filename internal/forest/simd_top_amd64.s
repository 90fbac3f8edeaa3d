//go:build amd64 && !purego

#include "textflag.h"

DATA iotaW<>+0(SB)/8, $0x0000000100000000
DATA iotaW<>+8(SB)/8, $0x0000000300000002
DATA iotaW<>+16(SB)/8, $0x0000000500000004
DATA iotaW<>+24(SB)/8, $0x0000000700000006
DATA iotaW<>+32(SB)/8, $0x0000000900000008
DATA iotaW<>+40(SB)/8, $0x0000000b0000000a
DATA iotaW<>+48(SB)/8, $0x0000000d0000000c
DATA iotaW<>+56(SB)/8, $0x0000000f0000000e
GLOBL iotaW<>(SB), RODATA|NOPTR, $64

// walkTopAVX512 is walkTreesAVX512 (simd_trees_amd64.s) with one change:
// a pair's lane starts at starts[pair] (the node topAVX512 found below the
// top of its tree) instead of its tree's root. The refilled lanes' pairs
// are consecutive, so their start nodes are one VPEXPANDD from memory.
// Registers:
//   SI nodes, DI rows (16 values each), R8 starts,
//   R13 leaves of finished pairs, R14 their pairs, DX their count;
//   AX, CX, R9 scratch.
//   Z4 column mask, Z5 ones, Z6 0..15, Z8 sixteen, Z16 ntrees,
//   Z24 even dword indices, Z25 odd dword indices.
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
	MOVL IR, AX \
	IMULL ntrees+40(FP), AX \
	ADDL NT, AX \
	VPEXPANDD (R8)(AX*4), K3, L \
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

// func walkTopAVX512(nodes *pnode, rows *float32, starts *uint32, out *uint32, list *uint32, ntrees, endA, endB uint32)
TEXT ·walkTopAVX512(SB), NOSPLIT, $0-52
	MOVQ nodes+0(FP), SI
	MOVQ rows+8(FP), DI
	MOVQ starts+16(FP), R8
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
	VMOVDQU32 iotaW<>(SB), Z6
	VPADDD Z6, Z6, Z24
	VPADDD Z5, Z24, Z25
	MOVL ntrees+40(FP), AX
	VPBROADCASTD AX, Z16
	
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

// EXIT turns exit bits A into base + lowest set bit and stores it at (R13).
#define EXIT(A, X, OFF) \
	VPSUBD A, Z28, X \
	VPANDD A, X, X \
	VCVTUDQ2PS X, X \
	VPSRLD $23, X, X \
	VPSUBD Z29, X, X \
	VPADDD Z30, X, X \
	VMOVDQU32 X, OFF(R13)

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
	EXIT(Z8, Z19, 0)
	ADDQ AX, R13
	EXIT(Z9, Z20, 0)
	ADDQ AX, R13
	EXIT(Z10, Z21, 0)
	ADDQ AX, R13
	EXIT(Z11, Z22, 0)
	ADDQ AX, R13
	EXIT(Z12, Z23, 0)
	ADDQ AX, R13
	EXIT(Z13, Z24, 0)
	ADDQ AX, R13
	EXIT(Z14, Z25, 0)
	ADDQ AX, R13
	EXIT(Z15, Z26, 0)

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
