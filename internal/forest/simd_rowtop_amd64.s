//go:build amd64 && !purego

#include "textflag.h"

#include "walk_amd64.h"

// topRowsAVX512: for trees t < ntrees of the call and rows r < rows of
// the transposed block x, finds the tree-local node e where the row leaves
// the top of tree t (top_rows.go) and writes out[t<<shift + r] = base[t] +
// e; when e is a split, it also appends the pair t<<shift + r to
// list[0:] and e to list[1056:], and returns how many it appended. Only
// the row groups g < ngroups (1, 2 or 4: 16 rows each) are computed
// further than the bits; with fewer than 16 rows per tree the next tree's
// stores overwrite the extra lanes of out, and up to 16 values past the
// last tree's and the list's ends are written.
// Registers: SI slots of the tree, R10 its slot count, R8 its exits (bit 31
// set for a leaf), R14 its base, DI block, R9 out of the tree, R11 trees
// left, R12 ngroups, R13 tree stride in out (bytes), DX list end, BX slot
// pointer, CX slots left, AX column or count.
// Z0-Z3 the exit bits of the four row groups, Z4 threshold, Z5 kept bits,
// Z6 Z7 the tree's 32 exits, Z18 rows of the group, Z19 rows, Z20 0..15,
// Z21 1<<shift, Z22 sixteen, Z23 pairs of the group, Z25 base, Z26
// 0x7fffffff, Z27 1<<31, Z28 first pairs of the tree, Z29 127, Z30 zero,
// Z31 all ones.

// EXIT turns exit bits A into the exit's node (lowest set bit e, from the
// float exponent; then exits[e]), stores base + node at OFF(R9), and
// appends the group's valid rows that exit at a split to the list.
#define EXIT(A, X, Y, OFF) \
	LOWBIT(A, X, Z30, Z29) \
	VPERMI2D Z7, Z6, X \
	VPCMPUD $1, Z19, Z18, K7 \
	VPTESTNMD Z27, X, K7, K6 \
	VPANDD Z26, X, X \
	VPADDD Z25, X, Y \
	VMOVDQU32 Y, OFF(R9) \
	VPCOMPRESSD Z23, K6, Y \
	VMOVDQU32 Y, (DX) \
	VPCOMPRESSD X, K6, Y \
	VMOVDQU32 Y, 4224(DX) \
	KMOVW K6, AX \
	POPCNTL AX, AX \
	LEAQ (DX)(AX*4), DX \
	VPADDD Z22, Z23, Z23 \
	VPADDD Z22, Z18, Z18

// func topRowsAVX512(slots *topSlot, ns *uint32, exits *uint32, base *int32, x *float32, out *uint32, list *uint32, ntrees, shift, ngroups, rows uint32) uint32
TEXT ·topRowsAVX512(SB), NOSPLIT, $0-76
	MOVQ slots+0(FP), SI
	MOVQ ns+8(FP), R10
	MOVQ exits+16(FP), R8
	MOVQ base+24(FP), R14
	MOVQ x+32(FP), DI
	MOVQ out+40(FP), R9
	MOVQ list+48(FP), DX
	MOVL ntrees+56(FP), R11
	MOVL shift+60(FP), CX
	MOVL $1, AX
	SHLL CX, AX
	VPBROADCASTD AX, Z21
	MOVL $4, R13
	SHLL CX, R13
	MOVL ngroups+64(FP), R12
	MOVL rows+68(FP), AX
	VPBROADCASTD AX, Z19

	VPTERNLOGD $0xff, Z31, Z31, Z31
	VPXORD Z30, Z30, Z30
	MOVL $127, AX
	VPBROADCASTD AX, Z29
	VPSRLD $1, Z31, Z26
	VPANDND Z31, Z26, Z27
	MOVL $16, AX
	VPBROADCASTD AX, Z22
	VMOVDQU32 iota<>(SB), Z20
	VMOVDQA32 Z20, Z28

tree:
	VMOVDQA32 Z31, Z0
	VMOVDQA32 Z31, Z1
	VMOVDQA32 Z31, Z2
	VMOVDQA32 Z31, Z3
	MOVL (R10), CX
	MOVQ SI, BX
	TESTL CX, CX
	JZ   exits
slot:
	// x > thr, i.e. thr < x (LT_OQ: false for NaN), clears the bits
	// of the slot's left subtree
	MOVL 0(BX), AX
	VBROADCASTSS 4(BX), Z4
	VPBROADCASTD 8(BX), Z5
	VCMPPS $0x11, 0(DI)(AX*1), Z4, K1
	VCMPPS $0x11, 64(DI)(AX*1), Z4, K2
	VCMPPS $0x11, 128(DI)(AX*1), Z4, K3
	VCMPPS $0x11, 192(DI)(AX*1), Z4, K4
	VPANDD Z5, Z0, K1, Z0
	VPANDD Z5, Z1, K2, Z1
	VPANDD Z5, Z2, K3, Z2
	VPANDD Z5, Z3, K4, Z3
	ADDQ $12, BX
	DECL CX
	JNZ  slot
exits:
	VMOVDQU32 0(R8), Z6
	VMOVDQU32 64(R8), Z7
	VPBROADCASTD (R14), Z25
	VMOVDQA32 Z28, Z23
	VMOVDQA32 Z20, Z18
	EXIT(Z0, Z8, Z12, 0)
	CMPL R12, $1
	JEQ  next
	EXIT(Z1, Z9, Z12, 64)
	CMPL R12, $2
	JEQ  next
	EXIT(Z2, Z10, Z12, 128)
	EXIT(Z3, Z11, Z12, 192)
next:
	VPADDD Z21, Z28, Z28
	ADDQ $372, SI
	ADDQ $4, R10
	ADDQ $128, R8
	ADDQ $4, R14
	ADDQ R13, R9
	DECL R11
	JNZ  tree
	VZEROUPPER
	SUBQ list+48(FP), DX
	SHRQ $2, DX
	MOVL DX, ret+72(FP)
	RET

// votesAVX512 adds, for rows r < rows of the block and trees t < ntrees of
// the call in order, the distribution of leaf out[t<<shift + r] (vals from
// voff[leaf], nc values) to acc[r*nc:(r+1)*nc]: eight classes a VADDPD
// (the last word masked), four rows at a time (four independent chains of
// additions); 9 to 16 classes take both words in one pass over the leaves. Registers: SI out, DI voff, R8 vals + 64 x word, R9 acc + 64 x
// word, R10 out pointer, R11 classes left, R12 acc row stride, R13 out tree
// stride (bytes), R14 acc row pointer, DX row, BX trees left, K1 the word's
// classes, Z0-Z3 the rows' sums.
#define ADDLEAF(OFF, Z) \
	MOVL OFF(R10), CX \
	MOVL (DI)(CX*4), CX \
	VADDPD (R8)(CX*8), Z, K1, Z

// ADDLEAF2 adds both words of a leaf (9 to 16 classes: K2 the second's).
#define ADDLEAF2(OFF, ZA, ZB) \
	MOVL OFF(R10), CX \
	MOVL (DI)(CX*4), CX \
	VADDPD (R8)(CX*8), ZA, ZA \
	VADDPD 64(R8)(CX*8), ZB, K2, ZB

// func votesAVX512(out *uint32, voff *uint32, vals *float64, acc *float64, ntrees, shift, rows, nc uint32)
TEXT ·votesAVX512(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), SI
	MOVQ voff+8(FP), DI
	MOVQ vals+16(FP), R8
	MOVQ acc+24(FP), R9
	MOVL shift+36(FP), CX
	MOVL $4, R13
	SHLL CX, R13
	MOVL nc+44(FP), R12
	SHLQ $3, R12
	MOVL nc+44(FP), R11
	CMPL R11, $8
	JLS  word
	CMPL R11, $16
	JLS  two

word:
	MOVL R11, CX
	CMPL CX, $8
	JLT  partial
	MOVL $8, CX
partial:
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	XORL DX, DX
	MOVQ R9, R14

rows4:
	MOVL DX, AX
	ADDL $4, AX
	CMPL AX, rows+40(FP)
	JHI  rows1
	LEAQ (R14)(R12*2), AX
	VPXORQ Z0, Z0, Z0
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	VMOVUPD (R14), K1, Z0
	VMOVUPD (R14)(R12*1), K1, Z1
	VMOVUPD (AX), K1, Z2
	VMOVUPD (AX)(R12*1), K1, Z3
	LEAQ (SI)(DX*4), R10
	MOVL ntrees+32(FP), BX
t4:
	ADDLEAF(0, Z0)
	ADDLEAF(4, Z1)
	ADDLEAF(8, Z2)
	ADDLEAF(12, Z3)
	ADDQ R13, R10
	DECL BX
	JNZ  t4
	LEAQ (R14)(R12*2), AX
	VMOVUPD Z0, K1, (R14)
	VMOVUPD Z1, K1, (R14)(R12*1)
	VMOVUPD Z2, K1, (AX)
	VMOVUPD Z3, K1, (AX)(R12*1)
	LEAQ (R14)(R12*4), R14
	ADDL $4, DX
	JMP  rows4

rows1:
	CMPL DX, rows+40(FP)
	JAE  wordnext
	VPXORQ Z0, Z0, Z0
	VMOVUPD (R14), K1, Z0
	LEAQ (SI)(DX*4), R10
	MOVL ntrees+32(FP), BX
t1:
	ADDLEAF(0, Z0)
	ADDQ R13, R10
	DECL BX
	JNZ  t1
	VMOVUPD Z0, K1, (R14)
	ADDQ R12, R14
	INCL DX
	JMP  rows1

wordnext:
	ADDQ $64, R8
	ADDQ $64, R9
	SUBL $8, R11
	JG   word
	VZEROUPPER
	RET

	// 9 to 16 classes: both words of four rows at once (Z0-Z3 the first
	// words, Z4-Z7 the second, K2 its classes).
two:
	LEAL -8(R11), CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K2
	XORL DX, DX
	MOVQ R9, R14
two4:
	MOVL DX, AX
	ADDL $4, AX
	CMPL AX, rows+40(FP)
	JHI  two1
	LEAQ (R14)(R12*2), AX
	VPXORQ Z4, Z4, Z4
	VPXORQ Z5, Z5, Z5
	VPXORQ Z6, Z6, Z6
	VPXORQ Z7, Z7, Z7
	VMOVUPD (R14), Z0
	VMOVUPD (R14)(R12*1), Z1
	VMOVUPD (AX), Z2
	VMOVUPD (AX)(R12*1), Z3
	VMOVUPD 64(R14), K2, Z4
	VMOVUPD 64(R14)(R12*1), K2, Z5
	VMOVUPD 64(AX), K2, Z6
	VMOVUPD 64(AX)(R12*1), K2, Z7
	LEAQ (SI)(DX*4), R10
	MOVL ntrees+32(FP), BX
tt4:
	ADDLEAF2(0, Z0, Z4)
	ADDLEAF2(4, Z1, Z5)
	ADDLEAF2(8, Z2, Z6)
	ADDLEAF2(12, Z3, Z7)
	ADDQ R13, R10
	DECL BX
	JNZ  tt4
	LEAQ (R14)(R12*2), AX
	VMOVUPD Z0, (R14)
	VMOVUPD Z1, (R14)(R12*1)
	VMOVUPD Z2, (AX)
	VMOVUPD Z3, (AX)(R12*1)
	VMOVUPD Z4, K2, 64(R14)
	VMOVUPD Z5, K2, 64(R14)(R12*1)
	VMOVUPD Z6, K2, 64(AX)
	VMOVUPD Z7, K2, 64(AX)(R12*1)
	LEAQ (R14)(R12*4), R14
	ADDL $4, DX
	JMP  two4
two1:
	CMPL DX, rows+40(FP)
	JAE  twodone
	VPXORQ Z4, Z4, Z4
	VMOVUPD (R14), Z0
	VMOVUPD 64(R14), K2, Z4
	LEAQ (SI)(DX*4), R10
	MOVL ntrees+32(FP), BX
tt1:
	ADDLEAF2(0, Z0, Z4)
	ADDQ R13, R10
	DECL BX
	JNZ  tt1
	VMOVUPD Z0, (R14)
	VMOVUPD Z4, K2, 64(R14)
	ADDQ R12, R14
	INCL DX
	JMP  two1
twodone:
	VZEROUPPER
	RET

// walkListAVX512 is walkAVX512 (simd_amd64.s) with one change: it walks
// the npairs pairs pairs[0:npairs], pair k starting at the tree-local node
// pairs[1056+k] (the split where it left the top of its tree, found by
// topRowsAVX512) instead of the pairs 0..npairs-1 from their roots. R11
// holds pairs, BX the next entry.

// ROW_REFILL gives the lanes in K4 (CX of them) the next pairs of the list
// and their start nodes (one VPEXPANDD each); lanes past the end of the
// list leave K.
#define ROW_REFILL(L, B, P, K) \
	VPBROADCASTD BX, Z15 \
	VPADDD Z6, Z15, Z15 \
	VPEXPANDD Z15, K4, Z15 \
	VPEXPANDD (R11)(BX*4), K4, P \
	VPEXPANDD 4224(R11)(BX*4), K4, L \
	ADDL CX, BX \
	VPCMPUD $1, Z16, Z15, K4, K3 \
	KANDNW K, K4, K \
	KORW K3, K, K \
	VPSRLD X8, P, Z15 \
	VPERMD (R8), Z15, B

// func walkListAVX512(nodes *pnode, x *float32, roots *[16]int32, out *uint32, list *uint32, npairs, shift, rowMask uint32, pairs *uint32)
TEXT ·walkListAVX512(SB), NOSPLIT, $0-64
	ROW_INIT
	MOVQ pairs+56(FP), R11
	ROW_LOOP
	RET

// transposeAVX512 copies rows 0..rows-1 of x (nf values each) into the
// transposed block xb (value c of row r at c*64 + r; feature j as column 2j
// with NaN as -Inf and 2j+1 with NaN as +Inf), as transposeBlock does;
// rows rows..63 of each 16-row tile that holds a row are written as zeros,
// and the columns of features nf..(nf rounded up to 16)-1 get zeros.
// Tiles of 16 rows x 16 features: 16 masked loads, a 16 x 16 transpose in
// registers (dwords, qwords, then 128-bit lanes twice), and per feature a
// compare for NaN, two blends and two stores.
// Registers: SI x, DI xb, R8 nf, R9 rows, R10 first feature of the chunk,
// R11 first row of the tile, R12 the chunk's feature mask, R13 the tile's
// place in xb, DX zero, AX BX CX scratch.

#define LOADROW(I, ZR) \
	LEAL I(R11), AX \
	MOVL R12, BX \
	CMPL AX, R9 \
	CMOVLCC DX, BX \
	KMOVW BX, K6 \
	IMULL R8, AX \
	ADDL R10, AX \
	VMOVUPS.Z (SI)(AX*4), K6, ZR

// OUTCOL stores a column's 16 rows at OFF(R13), NaN as -Inf, and at
// OFF+256(R13), NaN as +Inf.
#define OUTCOL(Z, OFF) \
	VCMPPS $3, Z, Z, K1 \
	VBLENDMPS Z30, Z, K1, Z24 \
	VBLENDMPS Z31, Z, K1, Z25 \
	VMOVUPS Z24, OFF(R13) \
	VMOVUPS Z25, OFF+256(R13)

// OUT4 takes the 128-bit lanes of A, B, C, D (columns 4L+c of rows 0-3,
// 4-7, 8-11, 12-15 in lane L) apart into the 16 rows of columns c, c+8,
// c+4 and c+12 and stores them, column c at OFF.
#define OUT4(A, B, C, D, OFF) \
	VSHUFI32X4 $0x88, B, A, Z16 \
	VSHUFI32X4 $0xdd, B, A, Z17 \
	VSHUFI32X4 $0x88, D, C, Z18 \
	VSHUFI32X4 $0xdd, D, C, Z19 \
	VSHUFI32X4 $0x88, Z18, Z16, Z20 \
	VSHUFI32X4 $0xdd, Z18, Z16, Z21 \
	VSHUFI32X4 $0x88, Z19, Z17, Z22 \
	VSHUFI32X4 $0xdd, Z19, Z17, Z23 \
	OUTCOL(Z20, OFF) \
	OUTCOL(Z21, OFF+4096) \
	OUTCOL(Z22, OFF+2048) \
	OUTCOL(Z23, OFF+6144)

// func transposeAVX512(xb *float32, x *float32, nf, rows uint32)
TEXT ·transposeAVX512(SB), NOSPLIT, $0-24
	MOVQ xb+0(FP), DI
	MOVQ x+8(FP), SI
	MOVL nf+16(FP), R8
	MOVL rows+20(FP), R9
	XORL DX, DX
	XORL R10, R10
chunk:
	MOVL R8, CX
	SUBL R10, CX
	CMPL CX, $16
	JLT  part
	MOVL $16, CX
part:
	MOVL $1, R12
	SHLL CX, R12
	DECL R12
	XORL R11, R11
tile:
	LOADROW(0, Z0)
	LOADROW(1, Z1)
	LOADROW(2, Z2)
	LOADROW(3, Z3)
	LOADROW(4, Z4)
	LOADROW(5, Z5)
	LOADROW(6, Z6)
	LOADROW(7, Z7)
	LOADROW(8, Z8)
	LOADROW(9, Z9)
	LOADROW(10, Z10)
	LOADROW(11, Z11)
	LOADROW(12, Z12)
	LOADROW(13, Z13)
	LOADROW(14, Z14)
	LOADROW(15, Z15)
	VPUNPCKLDQ Z1, Z0, Z16
	VPUNPCKHDQ Z1, Z0, Z17
	VPUNPCKLDQ Z3, Z2, Z18
	VPUNPCKHDQ Z3, Z2, Z19
	VPUNPCKLDQ Z5, Z4, Z20
	VPUNPCKHDQ Z5, Z4, Z21
	VPUNPCKLDQ Z7, Z6, Z22
	VPUNPCKHDQ Z7, Z6, Z23
	VPUNPCKLDQ Z9, Z8, Z24
	VPUNPCKHDQ Z9, Z8, Z25
	VPUNPCKLDQ Z11, Z10, Z26
	VPUNPCKHDQ Z11, Z10, Z27
	VPUNPCKLDQ Z13, Z12, Z28
	VPUNPCKHDQ Z13, Z12, Z29
	VPUNPCKLDQ Z15, Z14, Z30
	VPUNPCKHDQ Z15, Z14, Z31
	VPUNPCKLQDQ Z18, Z16, Z0
	VPUNPCKHQDQ Z18, Z16, Z1
	VPUNPCKLQDQ Z19, Z17, Z2
	VPUNPCKHQDQ Z19, Z17, Z3
	VPUNPCKLQDQ Z22, Z20, Z4
	VPUNPCKHQDQ Z22, Z20, Z5
	VPUNPCKLQDQ Z23, Z21, Z6
	VPUNPCKHQDQ Z23, Z21, Z7
	VPUNPCKLQDQ Z26, Z24, Z8
	VPUNPCKHQDQ Z26, Z24, Z9
	VPUNPCKLQDQ Z27, Z25, Z10
	VPUNPCKHQDQ Z27, Z25, Z11
	VPUNPCKLQDQ Z30, Z28, Z12
	VPUNPCKHQDQ Z30, Z28, Z13
	VPUNPCKLQDQ Z31, Z29, Z14
	VPUNPCKHQDQ Z31, Z29, Z15
	// Z(4g+c) holds column 4L+c of rows 4g..4g+3 in its 128-bit lane L.
	MOVL $0xff800000, AX
	VPBROADCASTD AX, Z30
	MOVL $0x7f800000, AX
	VPBROADCASTD AX, Z31
	// R13 = xb + first feature x 2 x 256 + first row x 4
	MOVL R10, AX
	SHLQ $9, AX
	LEAQ (DI)(AX*1), R13
	LEAQ (R13)(R11*4), R13
	OUT4(Z0, Z4, Z8, Z12, 0)
	OUT4(Z1, Z5, Z9, Z13, 512)
	OUT4(Z2, Z6, Z10, Z14, 1024)
	OUT4(Z3, Z7, Z11, Z15, 1536)
	ADDL $16, R11
	CMPL R11, R9
	JB   tile
	ADDL $16, R10
	CMPL R10, R8
	JB   chunk
	VZEROUPPER
	RET
