//go:build amd64 && !purego

#include "textflag.h"

#include "walk_amd64.h"

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

// walkAVX512 walks (tree, row) pairs with two walkers of 16 lanes (see
// simd.go for the contract, walk_amd64.h for the walk): pair k of the call
// is row k&rowMask against the tree whose root is roots[k>>shift].

// ROW_REFILL gives the lanes in K4 (CX of them) the next pairs, at their
// tree's root; lanes past the last pair leave K.
#define ROW_REFILL(L, B, P, K) \
	VPBROADCASTD BX, Z15 \
	VPADDD Z6, Z15, Z15 \
	VPEXPANDD Z15, K4, P \
	ADDL CX, BX \
	VPCMPUD $1, Z16, P, K, K \
	VPSRLD X8, P, Z15 \
	VPERMD (R8), Z15, B \
	VPXORD L, L, K4, L

// func walkAVX512(nodes *pnode, x *float32, roots *[16]int32, out *uint32, list *uint32, npairs, shift, rowMask uint32)
TEXT ·walkAVX512(SB), NOSPLIT, $0-52
	ROW_INIT
	ROW_LOOP
	RET
