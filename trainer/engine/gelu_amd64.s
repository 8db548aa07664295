#include "textflag.h"

// func expSumAVX2(x []float32, m float32, k *[15][8]float32) float32
// exp(y) for y = x − m ≤ 0, 8 lanes at a time, as exp32: y clamped to
// −87.33 (and zeroed below it), n = ⌊y·log₂e + ½⌋, r = y − n·ln2 (split
// in two constants), a degree-6 polynomial of r, times 2ⁿ built in the
// exponent bits. k rows: log2e, ½, ln2 hi, ln2 lo, 1/720, 1/120, 1/24,
// 1/6, 1, −87.33, int32 127.
TEXT ·expSumAVX2(SB), NOSPLIT, $0-44
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ k+32(FP), DX
	VBROADCASTSS m+24(FP), Y15
	VXORPS Y2, Y2, Y2
	SHRQ $3, CX
	JZ done

loop:
	VMOVUPS (SI), Y0
	VSUBPS Y15, Y0, Y0
	VCMPPS $1, 288(DX), Y0, Y1
	VMAXPS 288(DX), Y0, Y0
	VMOVUPS 32(DX), Y6
	VFMADD231PS (DX), Y0, Y6
	VROUNDPS $1, Y6, Y6
	VFNMADD231PS 64(DX), Y6, Y0
	VFNMADD231PS 96(DX), Y6, Y0
	VMOVUPS 128(DX), Y3
	VFMADD213PS 160(DX), Y0, Y3
	VFMADD213PS 192(DX), Y0, Y3
	VFMADD213PS 224(DX), Y0, Y3
	VFMADD213PS 32(DX), Y0, Y3
	VFMADD213PS 256(DX), Y0, Y3
	VFMADD213PS 256(DX), Y0, Y3
	VCVTPS2DQ Y6, Y6
	VPADDD 320(DX), Y6, Y6
	VPSLLD $23, Y6, Y6
	VMULPS Y6, Y3, Y3
	VANDNPS Y3, Y1, Y3
	VMOVUPS Y3, (SI)
	VADDPS Y3, Y2, Y2
	ADDQ $32, SI
	DECQ CX
	JNZ loop

done:
	VEXTRACTF128 $1, Y2, X1
	VADDPS X1, X2, X2
	VHADDPS X2, X2, X2
	VHADDPS X2, X2, X2
	VMOVSS X2, ret+40(FP)
	VZEROUPPER
	RET

// func geluAVX2(x, t, y []float32, k *[15][8]float32)
// z = 2u = x·(2c + 2ca·x²) clamped to ±18, e = exp(z) as above,
// t = (e−1)/(e+1), y = x·(1+t)/2.
TEXT ·geluAVX2(SB), NOSPLIT, $0-80
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ t_base+24(FP), DI
	MOVQ y_base+48(FP), BX
	MOVQ k+72(FP), DX
	SHRQ $3, CX
	JZ gdone

gloop:
	VMOVUPS (SI), Y0
	VMULPS Y0, Y0, Y1
	VMOVUPS 352(DX), Y2
	VFMADD231PS 384(DX), Y1, Y2
	VMULPS Y0, Y2, Y2
	VMINPS 416(DX), Y2, Y2
	VMAXPS 448(DX), Y2, Y2
	VMOVUPS 32(DX), Y6
	VFMADD231PS (DX), Y2, Y6
	VROUNDPS $1, Y6, Y6
	VFNMADD231PS 64(DX), Y6, Y2
	VFNMADD231PS 96(DX), Y6, Y2
	VMOVUPS 128(DX), Y3
	VFMADD213PS 160(DX), Y2, Y3
	VFMADD213PS 192(DX), Y2, Y3
	VFMADD213PS 224(DX), Y2, Y3
	VFMADD213PS 32(DX), Y2, Y3
	VFMADD213PS 256(DX), Y2, Y3
	VFMADD213PS 256(DX), Y2, Y3
	VCVTPS2DQ Y6, Y6
	VPADDD 320(DX), Y6, Y6
	VPSLLD $23, Y6, Y6
	VMULPS Y6, Y3, Y3
	VMOVUPS 256(DX), Y4
	VSUBPS Y4, Y3, Y5
	VADDPS Y4, Y3, Y3
	VDIVPS Y3, Y5, Y5
	VMOVUPS Y5, (DI)
	VADDPS Y4, Y5, Y5
	VMULPS Y0, Y5, Y5
	VMULPS 32(DX), Y5, Y5
	VMOVUPS Y5, (BX)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, BX
	DECQ CX
	JNZ gloop

gdone:
	VZEROUPPER
	RET
