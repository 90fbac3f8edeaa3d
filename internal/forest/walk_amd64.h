// The building blocks of the two vector walks (and LOWBIT of the tops), shared by the walk from the
// roots and the walk from the tops (simd.go, top.go, top_rows.go): each
// .s file that walks defines its refill hook and includes this header
// after textflag.h. The macros load their arguments by name, so a kernel
// using ROW_INIT has walkAVX512's first eight arguments and one using
// TREE_WALK walkTreesAVX512's (except the third, which it loads into R8
// itself); go vet checks the names in the .s files only.

// iota<>: the dwords 0..15 (a copy per file that includes this header).
DATA iota<>+0(SB)/8, $0x0000000100000000
DATA iota<>+8(SB)/8, $0x0000000300000002
DATA iota<>+16(SB)/8, $0x0000000500000004
DATA iota<>+24(SB)/8, $0x0000000700000006
DATA iota<>+32(SB)/8, $0x0000000900000008
DATA iota<>+40(SB)/8, $0x0000000b0000000a
DATA iota<>+48(SB)/8, $0x0000000d0000000c
DATA iota<>+56(SB)/8, $0x0000000f0000000e
GLOBL iota<>(SB), RODATA|NOPTR, $64

// WALK_DIST writes out[pair] = leaf for the DX pairs (at R14) and leaves
// (at R13) that finished, in the order they finished; R9 is out.
#define WALK_DIST \
	XORQ CX, CX \
	TESTQ DX, DX \
	JZ   done \
dist: \
	MOVL (R14)(CX*4), AX \
	MOVL (R13)(CX*4), R8 \
	MOVL R8, (R9)(AX*4) \
	INCQ CX \
	CMPQ CX, DX \
	JB   dist \
done:

// WALK_GATHER gathers the 8-byte nodes (threshold, meta) IDX of the active
// lanes K (KA, KB scratch).
#define WALK_GATHER(IDX, IDXY, HIY, Q1, Q2, K, KA, KB) \
	VEXTRACTI64X4 $1, IDX, HIY \
	KMOVW K, KA \
	KSHIFTRW $8, K, KB \
	VPGATHERDQ (SI)(IDXY*8), KA, Q1 \
	VPGATHERDQ (SI)(HIY*8), KB, Q2

// WALK_UNZIP separates the gathered thresholds and metas (Z24, Z25: even
// and odd dword indices); XI gets the meta's column bits (Z4).
#define WALK_UNZIP(Q1, Q2, THR, META, XI) \
	VMOVDQA32 Z24, THR \
	VPERMI2D Q2, Q1, THR \
	VMOVDQA32 Z25, META \
	VPERMI2D Q2, Q1, META \
	VPANDD Z4, META, XI

// WALK_ADVANCE moves to the left child (meta >> SHIFT), or the right one
// when x > threshold (false for NaN: a leaf stays put); F gets the meta
// shifted right once for the lanes that went right, so that the child's
// leaf bit is where the left child's was.
#define WALK_ADVANCE(SHIFT, L, K, THR, META, XV, KT, F) \
	VPSRLD $SHIFT, META, L \
	VCMPPS $0x1e, THR, XV, K, KT \
	VPADDD Z5, L, KT, L \
	VMOVDQA32 META, F \
	VPSRLD $1, META, KT, F

// WALK_RECORD appends the leaves LEAF and pairs P of the lanes KF (CX of
// them) to the lists at R13 and R14 (ZL, ZP scratch).
#define WALK_RECORD(LEAF, P, KF, ZL, ZP) \
	KMOVW KF, AX \
	POPCNTL AX, CX \
	VPCOMPRESSD LEAF, KF, ZL \
	VPCOMPRESSD P, KF, ZP \
	VMOVDQU32 ZL, (R13)(DX*4) \
	VMOVDQU32 ZP, (R14)(DX*4) \
	ADDQ CX, DX

// WALK_CONSTS sets Z4 (the meta's column bits), Z5 (ones), Z6 (0..15)
// and Z24, Z25 (even and odd dword indices).
#define WALK_CONSTS(COLMASK) \
	MOVL COLMASK, AX \
	VPBROADCASTD AX, Z4 \
	MOVL $1, AX \
	VPBROADCASTD AX, Z5 \
	VMOVDQU32 iota<>(SB), Z6 \
	VPADDD Z6, Z6, Z24 \
	VPADDD Z5, Z24, Z25

// LOWBIT turns the nonzero dwords of A into the index of their lowest set
// bit, in X, from the exponent of the bit as a float (C127 holds 127).
#define LOWBIT(A, X, ZERO, C127) \
	VPSUBD A, ZERO, X \
	VPANDD A, X, X \
	VCVTUDQ2PS X, X \
	VPSRLD $23, X, X \
	VPSUBD C127, X, X

// The row-lane walk (walkAVX512, walkListAVX512): two walkers of 16 lanes,
// a (tree, row) pair per lane, the row's value gathered from the
// transposed block. Registers:
//   SI nodes, DI transposed block, R8 roots, R9 out, BX next pair (or
//   list entry), R13 leaves of finished pairs, R14 their pairs, DX their
//   count
//   Z4 column field mask, Z5 ones, Z6 0..15, Z16 npairs, Z17 row mask,
//   X8 shift, Z24 even dword indices, Z25 odd dword indices
//   walker A: L (tree-local node) Z0, B (tree base) Z1, P (pair) Z3, K1 active lanes
//   walker B: Z26, Z27, Z29, K5
// A step is split in phases so that both walkers' gathers are in flight
// together. The includer defines ROW_REFILL(L, B, P, K): give the lanes
// in K4 (CX of them) their next pairs, tree bases and start nodes, and
// take the lanes past the last pair out of K.

// ROW_NODE gathers the 8-byte nodes (threshold, meta) of the active lanes.
#define ROW_NODE(L, B, IDX, IDXY, HIY, Q1, Q2, K, KA, KB) \
	VPADDD L, B, IDX \
	WALK_GATHER(IDX, IDXY, HIY, Q1, Q2, K, KA, KB)

// ROW_SPLIT separates thresholds and metas and forms each lane's offset in
// the block: column x 64 + row.
#define ROW_SPLIT(Q1, Q2, THR, META, P, XI, TMP) \
	WALK_UNZIP(Q1, Q2, THR, META, XI) \
	VPSLLD $3, XI, XI \
	VPANDD Z17, P, TMP \
	VPADDD TMP, XI, XI

#define ROW_XGATHER(XI, XV, K, KA) \
	KMOVW K, KA \
	VPGATHERDD (DI)(XI*4), KA, XV

// ROW_ADVANCE steps; F gets the child's leaf bit in bit 0.
#define ROW_ADVANCE(L, K, THR, META, XV, KT, F) \
	WALK_ADVANCE(11, L, K, THR, META, XV, KT, F)

// ROW_FINISH records the lanes at a leaf (leaf, pair) and refills them.
#define ROW_FINISH(L, B, P, K, F) \
	VPTESTMD Z5, F, K, K4 \
	VPADDD L, B, Z14 \
	WALK_RECORD(Z14, P, K4, Z14, Z15) \
	ROW_REFILL(L, B, P, K)

#define ROW_START(L, B, P, K) \
	VPXORD L, L, L \
	KMOVW AX, K4 \
	KMOVW AX, K \
	MOVL $16, CX \
	ROW_REFILL(L, B, P, K)

#define ROW_STEP \
	ROW_NODE(Z0, Z1, Z19, Y19, Y20, Z21, Z22, K1, K2, K3) \
	ROW_NODE(Z26, Z27, Z2, Y2, Y7, Z23, Z28, K5, K6, K7) \
	ROW_SPLIT(Z21, Z22, Z9, Z10, Z3, Z11, Z20) \
	ROW_SPLIT(Z23, Z28, Z30, Z31, Z29, Z2, Z7) \
	ROW_XGATHER(Z11, Z12, K1, K2) \
	ROW_XGATHER(Z2, Z19, K5, K6) \
	ROW_ADVANCE(Z0, K1, Z9, Z10, Z12, K3, Z13) \
	ROW_ADVANCE(Z26, K5, Z30, Z31, Z19, K7, Z18)

// ROW_INIT loads the arguments and constants (R10, R11 and R12 are free
// after it).
#define ROW_INIT \
	MOVQ nodes+0(FP), SI \
	MOVQ x+8(FP), DI \
	MOVQ roots+16(FP), R8 \
	MOVQ out+24(FP), R9 \
	MOVQ list+32(FP), R13 \
	MOVL npairs+40(FP), R10 \
	MOVL shift+44(FP), R11 \
	MOVL rowMask+48(FP), R12 \
	LEAQ 64(R13)(R10*4), R14 \
	XORQ DX, DX \
	WALK_CONSTS($0x7f8) \
	VPBROADCASTD R10, Z16 \
	VPBROADCASTD R12, Z17 \
	MOVQ R11, X8

// ROW_LOOP walks until both walkers are out of pairs, then writes out.
#define ROW_LOOP \
	XORL BX, BX \
	MOVL $0xffff, AX \
	ROW_START(Z0, Z1, Z3, K1) \
	ROW_START(Z26, Z27, Z29, K5) \
loop: \
	ROW_STEP \
	ROW_FINISH(Z0, Z1, Z3, K1, Z13) \
	ROW_FINISH(Z26, Z27, Z29, K5, Z18) \
	KORTESTW K1, K5 \
	JNZ  loop \
	VZEROUPPER \
	WALK_DIST

// The tree-lane walk (walkTreesAVX512, walkTopAVX512): each of two walkers
// owns a range of rows and walks them in order, row after row, 16 (row,
// tree) pairs at a time: its lanes are trees of the same row, or of two
// consecutive rows at a row change, so a row's values come from two
// registers holding a row each (one VPERMI2PS) instead of a gather. Nodes
// use global indices: meta = column (bits 0-3) | left child is a leaf
// (bit 4) | right child is a leaf (bit 5) | left child << 8.
// Registers:
//   SI nodes, DI rows (16 values each), R8 roots or start nodes,
//   R13 leaves of finished pairs, R14 their pairs, DX their count;
//   AX, CX, R9 scratch.
//   Z4 column mask, Z5 ones, Z6 0..15, Z8 sixteen, Z16 ntrees,
//   Z24 even dword indices, Z25 odd dword indices.
//   Walker A: L (node) Z0, P (pair = row*ntrees + tree) Z1, S (16 x row
//   parity) Z2, even row Z3, odd row Z7, K1 active lanes, K2 idle lanes,
//   R11 row being started, R12 its next tree.
//   Walker B: Z26, Z27, Z28, Z29, Z30, K5, K6, BX, R10.
// The includer defines TREE_LANESTART(L, NT): the start nodes of the lanes
// in K3 (Z21 their index among the new pairs, Z9 NT + that index, K4 those
// past the last tree, AX the first new pair row*ntrees + NT); it may use
// Z10 and Z17.

// TREE_NODE gathers the 8-byte nodes (threshold, meta) of the active lanes.
#define TREE_NODE(L, LY, HIY, Q1, Q2, K) \
	WALK_GATHER(L, LY, HIY, Q1, Q2, K, K3, K4)

// TREE_SPLIT separates thresholds and metas; XI = column + 16 x row parity.
#define TREE_SPLIT(Q1, Q2, THR, META, S, XI) \
	WALK_UNZIP(Q1, Q2, THR, META, XI) \
	VPORD S, XI, XI

// TREE_ADVANCE steps; F gets the new node's leaf bit in bit 4.
#define TREE_ADVANCE(L, F, K, THR, META, XV) \
	WALK_ADVANCE(8, L, K, THR, META, XV, K7, F)

// TREE_FINISH records the lanes that reached a leaf (leaf, pair) and
// leaves them in K7.
#define TREE_FINISH(L, F, P, K) \
	VPTESTMD Z8, F, K, K7 \
	WALK_RECORD(L, P, K7, Z21, Z22)

// TREE_REFILL gives the candidate lanes (finished in K7, or idle) the next
// (row, tree) pairs of the walker: trees NT.. of row IR, then of row IR+1
// once no lane is left on row IR-1 (whose register row IR+1 takes);
// candidates that get no pair wait in I. Needs ntrees >= 16, so that 16
// lanes never reach past row IR+1.
#define TREE_REFILL(L, P, S, TA, TB, K, I, IR, NT, END, LSKIP, LNOX, LCAP, LODD) \
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
	TREE_LANESTART(L, NT) \
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

#define TREE_STEP \
	TREE_NODE(Z0, Y0, Y19, Z21, Z22, K1) \
	TREE_NODE(Z26, Y26, Y20, Z23, Z31, K5) \
	TREE_SPLIT(Z21, Z22, Z9, Z10, Z2, Z11) \
	TREE_SPLIT(Z23, Z31, Z14, Z15, Z28, Z18) \
	VPERMI2PS Z7, Z3, Z11 \
	VPERMI2PS Z30, Z29, Z18 \
	TREE_ADVANCE(Z0, Z13, K1, Z9, Z10, Z11) \
	TREE_ADVANCE(Z26, Z12, K5, Z14, Z15, Z18)

// TREE_WALK is the whole walk after R8: walker A takes rows [0, endA), B
// rows [endA, endB); an empty range starts with no idle lane.
#define TREE_WALK \
	MOVQ nodes+0(FP), SI \
	MOVQ rows+8(FP), DI \
	MOVQ list+32(FP), R13 \
	MOVL ntrees+40(FP), AX \
	MOVL endB+48(FP), CX \
	IMULL AX, CX \
	LEAQ 64(R13)(CX*4), R14 \
	XORQ DX, DX \
	WALK_CONSTS($0x0f) \
	MOVL $16, AX \
	VPBROADCASTD AX, Z8 \
	MOVL ntrees+40(FP), AX \
	VPBROADCASTD AX, Z16 \
	XORL R11, R11 \
	XORL R12, R12 \
	MOVL endA+44(FP), BX \
	XORL R10, R10 \
	KXORW K1, K1, K1 \
	KXORW K5, K5, K5 \
	KXORW K7, K7, K7 \
	KXORW K2, K2, K2 \
	KXORW K6, K6, K6 \
	VPXORD Z2, Z2, Z2 \
	VPXORD Z28, Z28, Z28 \
	MOVL $0xffff, AX \
	CMPL R11, endA+44(FP) \
	JAE  emptyA \
	KMOVW AX, K2 \
	VMOVUPS (DI), Z3 \
emptyA: \
	CMPL BX, endB+48(FP) \
	JAE  emptyB \
	KMOVW AX, K6 \
	MOVL BX, AX \
	SHLQ $6, AX \
	TESTL $64, AX \
	JNZ  oddB \
	VMOVUPS (DI)(AX*1), Z29 \
	JMP  emptyB \
oddB: \
	VMOVUPS (DI)(AX*1), Z30 \
emptyB: \
	KXORW K7, K7, K7 \
	TREE_REFILL(Z0, Z1, Z2, Z3, Z7, K1, K2, R11, R12, endA+44(FP), sA0, nA0, cA0, oA0) \
	KXORW K7, K7, K7 \
	TREE_REFILL(Z26, Z27, Z28, Z29, Z30, K5, K6, BX, R10, endB+48(FP), sB0, nB0, cB0, oB0) \
loop: \
	TREE_STEP \
	TREE_STEP \
	TREE_FINISH(Z0, Z13, Z1, K1) \
	TREE_REFILL(Z0, Z1, Z2, Z3, Z7, K1, K2, R11, R12, endA+44(FP), sA, nA, cA, oA) \
	TREE_FINISH(Z26, Z12, Z27, K5) \
	TREE_REFILL(Z26, Z27, Z28, Z29, Z30, K5, K6, BX, R10, endB+48(FP), sB, nB, cB, oB) \
	KORTESTW K1, K5 \
	JNZ  loop \
	VZEROUPPER \
	MOVQ out+24(FP), R9 \
	WALK_DIST
