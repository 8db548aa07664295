//go:build !purego

#include "textflag.h"

DATA absmask<>+0(SB)/4, $0x7fffffff
GLOBL absmask<>(SB), RODATA|NOPTR, $4
DATA halfd<>+0(SB)/8, $0x3fe0000000000000
GLOBL halfd<>(SB), RODATA|NOPTR, $8
DATA signd<>+0(SB)/8, $0x8000000000000000
GLOBL signd<>(SB), RODATA|NOPTR, $8
DATA plus127<>+0(SB)/4, $127
GLOBL plus127<>(SB), RODATA|NOPTR, $4
DATA minus127<>+0(SB)/4, $-127
GLOBL minus127<>(SB), RODATA|NOPTR, $4
DATA maxfin<>+0(SB)/4, $0x7f7fffff
GLOBL maxfin<>(SB), RODATA|NOPTR, $4
DATA byte80<>+0(SB)/1, $0x80
GLOBL byte80<>(SB), RODATA|NOPTR, $1

// func absMax16(src *float32, n int) (m float32, special bool)
// The largest |x| of n values, n a positive multiple of 16, and whether
// any was Inf or NaN (|x| above MaxFloat32 as an integer).
TEXT ·absMax16(SB), NOSPLIT, $0-21
	MOVQ         src+0(FP), SI
	MOVQ         n+8(FP), CX
	SHRQ         $4, CX
	VPBROADCASTD absmask<>(SB), Y15
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VPBROADCASTD maxfin<>(SB), Y14
	VPXOR        Y9, Y9, Y9

maxloop:
	VANDPS   (SI), Y15, Y2
	VANDPS   32(SI), Y15, Y3
	VPCMPGTD Y14, Y2, Y4
	VPCMPGTD Y14, Y3, Y5
	VPOR     Y4, Y9, Y9
	VPOR     Y5, Y9, Y9
	VMAXPS   Y2, Y0, Y0
	VMAXPS   Y3, Y1, Y1
	ADDQ   $64, SI
	DECQ   CX
	JNZ    maxloop

	VMAXPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4E, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xB1, X0, X1
	VMAXPS       X1, X0, X0
	MOVSS        X0, m+16(FP)
	VPMOVMSKB    Y9, AX
	TESTL        AX, AX
	SETNE        special+20(FP)
	VZEROUPPER
	RET

// ROUND turns 4 doubles in y into 4 int32 in x, rounding half away from
// zero: add ±0.5 (exact in float64 for these magnitudes), truncate.
#define ROUND(y, x, t) \
	VANDPD      Y13, y, t; \
	VORPD       Y14, t, t; \
	VADDPD      t, y, y;   \
	VCVTTPD2DQY y, x

// func quantize8(dst *byte, src *float32, n int, inv float32)
// dst[i] = clamp(round(src[i]·inv), ±127), n a positive multiple of 16.
TEXT ·quantize8(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	SHRQ         $4, CX
	VBROADCASTSS inv+24(FP), Y15
	VBROADCASTSD halfd<>(SB), Y14
	VBROADCASTSD signd<>(SB), Y13
	VPBROADCASTD plus127<>(SB), Y12
	VPBROADCASTD minus127<>(SB), Y11

qloop:
	VMULPS       (SI), Y15, Y0
	VMULPS       32(SI), Y15, Y1
	VCVTPS2PD    X0, Y2
	VEXTRACTF128 $1, Y0, X3
	VCVTPS2PD    X3, Y3
	VCVTPS2PD    X1, Y4
	VEXTRACTF128 $1, Y1, X5
	VCVTPS2PD    X5, Y5
	ROUND(Y2, X2, Y6)
	ROUND(Y3, X3, Y6)
	ROUND(Y4, X4, Y6)
	ROUND(Y5, X5, Y6)
	VINSERTI128  $1, X3, Y2, Y2
	VINSERTI128  $1, X5, Y4, Y4
	VPMINSD      Y12, Y2, Y2
	VPMAXSD      Y11, Y2, Y2
	VPMINSD      Y12, Y4, Y4
	VPMAXSD      Y11, Y4, Y4
	VPACKSSDW    Y4, Y2, Y2
	VPERMQ       $0xD8, Y2, Y2
	VEXTRACTI128 $1, Y2, X3
	VPACKSSWB    X3, X2, X2
	VMOVDQU      X2, (DI)
	ADDQ         $64, SI
	ADDQ         $16, DI
	DECQ         CX
	JNZ          qloop
	VZEROUPPER
	RET

// func dequantize8(dst *float32, src *byte, n int, scale float32) (bad bool)
// dst[i] = float32(int8(src[i]))·scale, n a positive multiple of 16;
// bad reports a -128 level, which no encoder writes.
TEXT ·dequantize8(SB), NOSPLIT, $0-33
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	SHRQ         $4, CX
	VBROADCASTSS scale+24(FP), Y15
	VPBROADCASTB byte80<>(SB), X14
	VPXOR        X13, X13, X13

dloop:
	VMOVDQU   (SI), X0
	VPCMPEQB  X14, X0, X1
	VPOR      X1, X13, X13
	VPMOVSXBD X0, Y2
	VPSRLDQ   $8, X0, X3
	VPMOVSXBD X3, Y3
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VMULPS    Y15, Y2, Y2
	VMULPS    Y15, Y3, Y3
	VMOVUPS   Y2, (DI)
	VMOVUPS   Y3, 32(DI)
	ADDQ      $16, SI
	ADDQ      $64, DI
	DECQ      CX
	JNZ       dloop

	VPMOVMSKB X13, AX
	TESTL     AX, AX
	SETNE     bad+32(FP)
	VZEROUPPER
	RET
