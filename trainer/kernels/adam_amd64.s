#include "textflag.h"

// func adam512(p, g, m, v []float32, k *[8]float32)
// 16 values per round, len(p)/16 rounds; the same IEEE operations, in
// the same order, as adamGo (each exactly rounded, no FMA), so the bits
// are the same.
TEXT ·adam512(SB), NOSPLIT, $0-104
	MOVQ p_base+0(FP), DI
	MOVQ p_len+8(FP), CX
	MOVQ g_base+24(FP), SI
	MOVQ m_base+48(FP), R8
	MOVQ v_base+72(FP), R9
	MOVQ k+96(FP), AX
	VBROADCASTSS 0(AX), Z16  // b1
	VBROADCASTSS 4(AX), Z17  // c1
	VBROADCASTSS 8(AX), Z18  // b2
	VBROADCASTSS 12(AX), Z19 // c2
	VBROADCASTSS 16(AX), Z20 // sqrtBc2
	VBROADCASTSS 20(AX), Z21 // eps
	VBROADCASTSS 24(AX), Z22 // decay
	VBROADCASTSS 28(AX), Z23 // stepSize
	SHRQ $4, CX
	JEQ  done

loop:
	VMOVUPS (SI), Z0         // g
	VMULPS  (R8), Z16, Z1    // b1·m
	VMULPS  Z0, Z17, Z2      // c1·g
	VADDPS  Z2, Z1, Z1       // m'
	VMOVUPS Z1, (R8)
	VMULPS  Z0, Z0, Z3       // g·g
	VMULPS  Z3, Z19, Z3      // c2·(g·g)
	VMULPS  (R9), Z18, Z4    // b2·v
	VADDPS  Z3, Z4, Z4       // v'
	VMOVUPS Z4, (R9)
	VSQRTPS Z4, Z5
	VDIVPS  Z20, Z5, Z5      // √v'/√bc2
	VADDPS  Z21, Z5, Z5      // + eps
	VDIVPS  Z5, Z1, Z6       // m'/denom
	VMULPS  Z23, Z6, Z6      // stepSize·…
	VMOVUPS (DI), Z7
	VMULPS  Z22, Z7, Z7      // p·decay
	VSUBPS  Z6, Z7, Z7       // p − step
	VMOVUPS Z7, (DI)
	ADDQ    $64, DI
	ADDQ    $64, SI
	ADDQ    $64, R8
	ADDQ    $64, R9
	DECQ    CX
	JNE     loop

done:
	VZEROUPPER
	RET
