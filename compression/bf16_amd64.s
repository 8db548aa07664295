//go:build !purego

#include "textflag.h"

DATA bf16one<>+0(SB)/4, $0x00000001
GLOBL bf16one<>(SB), RODATA|NOPTR, $4
DATA bf16round<>+0(SB)/4, $0x00007fff
GLOBL bf16round<>(SB), RODATA|NOPTR, $4
DATA bf16exp<>+0(SB)/4, $0x7f800000
GLOBL bf16exp<>(SB), RODATA|NOPTR, $4
DATA bf16sat<>+0(SB)/4, $0x7f7f0000
GLOBL bf16sat<>(SB), RODATA|NOPTR, $4
DATA bf16sign<>+0(SB)/4, $0x80000000
GLOBL bf16sign<>(SB), RODATA|NOPTR, $4

// BF16 rounds the 8 floats in b to bfloat16 bits in the low half of each
// lane of r, as bf16() does: r = b + 0x7fff + (b>>16 & 1); a finite b
// whose r reached the Inf exponent saturates to sign | 0x7f7f0000. Y9
// collects the lanes whose input was Inf or NaN.
#define BF16(b, r, t, u) \
	VPSRLD    $16, b, r;  \
	VPAND     Y10, r, r;  \
	VPADDD    Y11, r, r;  \
	VPADDD    b, r, r;    \
	VPAND     Y12, r, t;  \
	VPCMPEQD  Y12, t, t;  \
	VPAND     Y12, b, u;  \
	VPCMPEQD  Y12, u, u;  \
	VPOR      u, Y9, Y9;  \
	VPANDN    t, u, t;    \
	VPAND     Y14, b, u;  \
	VPOR      Y13, u, u;  \
	VPBLENDVB t, u, r, r; \
	VPSRLD    $16, r, r

// func bf16FromFloats(dst *byte, src *float32, n int) (special bool)
// n is a positive multiple of 16; special reports an Inf or NaN input.
TEXT ·bf16FromFloats(SB), NOSPLIT, $0-25
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	VPBROADCASTD bf16one<>(SB), Y10
	VPBROADCASTD bf16round<>(SB), Y11
	VPBROADCASTD bf16exp<>(SB), Y12
	VPBROADCASTD bf16sat<>(SB), Y13
	VPBROADCASTD bf16sign<>(SB), Y14
	VPXOR        Y9, Y9, Y9

encloop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	BF16(Y0, Y2, Y4, Y5)
	BF16(Y1, Y3, Y4, Y5)
	VPACKUSDW Y3, Y2, Y2
	VPERMQ    $0xD8, Y2, Y2
	VMOVDQU   Y2, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       encloop

	VPMOVMSKB Y9, AX
	TESTL     AX, AX
	SETNE     special+24(FP)
	VZEROUPPER
	RET

// func floatsFromBF16(dst *float32, src *byte, n int) (special bool)
// n is a positive multiple of 16; special reports an Inf or NaN output.
TEXT ·floatsFromBF16(SB), NOSPLIT, $0-25
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	SHRQ         $4, CX
	VPBROADCASTD bf16exp<>(SB), Y12
	VPXOR        Y9, Y9, Y9

decloop:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VPAND     Y12, Y0, Y4
	VPCMPEQD  Y12, Y4, Y4
	VPOR      Y4, Y9, Y9
	VPAND     Y12, Y1, Y5
	VPCMPEQD  Y12, Y5, Y5
	VPOR      Y5, Y9, Y9
	VMOVDQU   Y0, (DI)
	VMOVDQU   Y1, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	DECQ      CX
	JNZ       decloop

	VPMOVMSKB Y9, AX
	TESTL     AX, AX
	SETNE     special+24(FP)
	VZEROUPPER
	RET
