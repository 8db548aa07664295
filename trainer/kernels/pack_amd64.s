#include "textflag.h"

// func gather16(dst []float32, stride int, src []float32, idx *[16]int32, kc int, mask int, alpha float32)
// For p < kc: dst[p·stride + j] = alpha·src[idx[j]/4 + p] for the lanes j
// set in mask: a strided block transposed 16 lanes at a time with one
// gather per step, where a scalar loop would move one value at a time.
TEXT ·gather16(SB), NOSPLIT, $0-84
	MOVQ   dst_base+0(FP), DI
	MOVQ   stride+24(FP), DX
	SHLQ   $2, DX
	MOVQ   src_base+32(FP), SI
	MOVQ   idx+56(FP), AX
	VMOVDQU32 (AX), Z1
	MOVQ   kc+64(FP), CX
	MOVQ   mask+72(FP), BX
	KMOVW  BX, K2
	VBROADCASTSS alpha+80(FP), Z3
	TESTQ  CX, CX
	JEQ    done

loop:
	KMOVW  BX, K1 // the gather clears its mask
	VPXORD Z0, Z0, Z0
	VGATHERDPS (SI)(Z1*1), K1, Z0
	VMULPS Z3, Z0, Z0
	VMOVUPS Z0, K2, (DI)
	ADDQ   $4, SI
	ADDQ   DX, DI
	DECQ   CX
	JNE    loop

done:
	VZEROUPPER
	RET
