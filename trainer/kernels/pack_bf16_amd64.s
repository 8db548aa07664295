#include "textflag.h"

// Rounding to bfloat16 in AVX-512 integer lanes, as ToBF16 does: add
// 0x7fff plus the lowest kept bit (ties to even), keep the high half. A
// NaN is not rounded (the carry could make it an infinity) but gets the
// quiet bit. Constants: Z28 = 0x7fff, Z29 = 1, Z30 = 0xffff0000,
// Z31 = 0x00400000.
#define ROUND(x, t) \
	VPSRLD  $16, x, t; \
	VPANDD  Z29, t, t; \
	VPADDD  Z28, t, t; \
	VPADDD  x, t, t; \
	VCMPPS  $3, x, x, K3; \
	VPORD   Z31, x, K3, t

// PAIR(lo, hi, out): each lane's bf16 of lo in the low half, of hi in
// the high half. Clobbers Z26, Z27.
#define PAIR(lo, hi, out) \
	ROUND(lo, Z26); \
	ROUND(hi, Z27); \
	VPSRLD  $16, Z26, Z26; \
	VPANDD  Z30, Z27, Z27; \
	VPORD   Z26, Z27, out

#define CONSTS \
	MOVL $0x7fff, R8; \
	VPBROADCASTD R8, Z28; \
	MOVL $1, R8; \
	VPBROADCASTD R8, Z29; \
	MOVL $0xffff0000, R8; \
	VPBROADCASTD R8, Z30; \
	MOVL $0x00400000, R8; \
	VPBROADCASTD R8, Z31

// func pairRows(dst []uint32, r0, r1 []float32, n int)
// dst[j] = bf16(r0[j]) | bf16(r1[j])<<16 for j < n.
TEXT ·pairRows(SB), NOSPLIT, $0-80
	MOVQ dst_base+0(FP), DI
	MOVQ r0_base+24(FP), SI
	MOVQ r1_base+48(FP), BX
	MOVQ n+72(FP), CX
	CONSTS
	CMPQ CX, $16
	JLT  tail

loop:
	VMOVUPS (SI), Z0
	VMOVUPS (BX), Z1
	PAIR(Z0, Z1, Z2)
	VMOVDQU32 Z2, (DI)
	ADDQ $64, SI
	ADDQ $64, BX
	ADDQ $64, DI
	SUBQ $16, CX
	CMPQ CX, $16
	JGE  loop

tail:
	TESTQ CX, CX
	JEQ   done
	MOVQ  $1, AX
	SHLQ  CX, AX
	DECQ  AX
	KMOVW AX, K1
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VMOVUPS (SI), K1, Z0
	VMOVUPS (BX), K1, Z1
	PAIR(Z0, Z1, Z2)
	VMOVDQU32 Z2, K1, (DI)

done:
	VZEROUPPER
	RET

// func pairGather16(dst []uint32, stride int, src []float32, idx *[16]int32, kp int, mask int)
// For p < kp: dst[p·stride + j] = bf16(src[idx[j]/4 + 2p]) |
// bf16(src[idx[j]/4 + 2p + 1])<<16 for the lanes j set in mask.
TEXT ·pairGather16(SB), NOSPLIT, $0-80
	MOVQ dst_base+0(FP), DI
	MOVQ stride+24(FP), DX
	SHLQ $2, DX
	MOVQ src_base+32(FP), SI
	MOVQ idx+56(FP), AX
	VMOVDQU32 (AX), Z3
	MOVQ kp+64(FP), CX
	MOVQ mask+72(FP), BX
	KMOVW BX, K2
	CONSTS
	TESTQ CX, CX
	JEQ   gdone

gloop:
	KMOVW BX, K1 // a gather clears its mask
	VPXORD Z0, Z0, Z0
	VGATHERDPS (SI)(Z3*1), K1, Z0
	KMOVW BX, K1
	VPXORD Z1, Z1, Z1
	VGATHERDPS 4(SI)(Z3*1), K1, Z1
	PAIR(Z0, Z1, Z2)
	VMOVDQU32 Z2, K2, (DI)
	ADDQ $8, SI
	ADDQ DX, DI
	DECQ CX
	JNE  gloop

gdone:
	VZEROUPPER
	RET
