#include "textflag.h"

// func axpy512(dst, x []float32, a float32)
// dst[i] += a·x[i] for len(dst)/16 rounds of 16: a multiply rounded to
// float32, then an add (no FMA), as axpyGo does.
TEXT ·axpy512(SB), NOSPLIT, $0-52
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ x_base+24(FP), SI
	VBROADCASTSS a+48(FP), Z2
	SHRQ $4, CX
	JEQ  done

loop:
	VMULPS  (SI), Z2, Z0
	VADDPS  (DI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	DECQ    CX
	JNE     loop

done:
	VZEROUPPER
	RET
