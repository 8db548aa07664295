package engine

import (
	"math"

	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// attention is multi-head scaled dot-product self-attention over whole
// sequences, between the q, k, v projections and the output projection:
// for sequence b and head h, with Q_bh the seq×dh block of q at rows of b
// and columns of h (likewise K, V, C),
//
//	P_bh = softmax(Q_bh·K_bhᵀ/√dh + mask_b),  C_bh = P_bh·V_bh
//
// where mask_b adds keyBias (0, or a large negative number at padding)
// to each key's column. The blocks are read in place with a stride, so
// no head is ever transposed; each (b, h) pair is independent, and the
// pairs run in parallel.
type attention struct {
	seq, d, heads, dh int
	scale             float32
	// Per call: the layer's tensors, all [tokens, d] but the probabilities
	// [pairs, seq, seq] (kept for backward) and keyBias [tokens].
	q, k, v, ctx, probs, keyBias []float32
	dq, dk, dv, dctx, dprobs     []float32
	backward                     bool
}

func newAttention(seq, d, heads int) *attention {
	dh := d / heads
	return &attention{seq: seq, d: d, heads: heads, dh: dh, scale: float32(1 / math.Sqrt(float64(dh)))}
}

// run does pairs [lo, hi) (pair = b·heads + h), forward or backward.
func (a *attention) run(lo, hi int) {
	for pair := lo; pair < hi; pair++ {
		if a.backward {
			a.backwardPair(pair)
		} else {
			a.forwardPair(pair)
		}
	}
}

func (a *attention) block(pair int) (off int, p []float32) {
	T := a.seq
	b, h := pair/a.heads, pair%a.heads
	return b*T*a.d + h*a.dh, a.probs[pair*T*T : (pair+1)*T*T]
}

func (a *attention) forwardPair(pair int) {
	T, d, dh := a.seq, a.d, a.dh
	off, p := a.block(pair)
	kernels.Sgemm(false, true, T, T, dh, a.scale, a.q[off:], d, a.k[off:], d, 0, p, T)
	bias := a.keyBias[(pair/a.heads)*T:][:T]
	for i := range T {
		softmaxRow(p[i*T:(i+1)*T], bias)
	}
	kernels.Sgemm(false, false, T, dh, T, 1, p, T, a.v[off:], d, 0, a.ctx[off:], d)
}

// softmaxRow replaces s with softmax(s + bias), shifted by its maximum.
func softmaxRow(s, bias []float32) {
	bias = bias[:len(s)]
	m := float32(math.Inf(-1))
	for j := range s {
		s[j] += bias[j]
		m = max(m, s[j])
	}
	inv := 1 / expSum(s, m)
	for j := range s {
		s[j] *= inv
	}
}

// backwardPair takes dctx and the kept probabilities to dq, dk, dv:
// dP = dC·Vᵀ, dV = Pᵀ·dC, dS = P⊙(dP − rowsum(P⊙dP)), and with the scale
// folded in, dQ = dS·K/√dh, dK = dSᵀ·Q/√dh.
func (a *attention) backwardPair(pair int) {
	T, d, dh := a.seq, a.d, a.dh
	off, p := a.block(pair)
	ds := a.dprobs[pair*T*T : (pair+1)*T*T]
	kernels.Sgemm(false, true, T, T, dh, 1, a.dctx[off:], d, a.v[off:], d, 0, ds, T)
	kernels.Sgemm(true, false, T, dh, T, 1, p, T, a.dctx[off:], d, 0, a.dv[off:], d)
	for i := range T {
		pr, dr := p[i*T:(i+1)*T], ds[i*T:(i+1)*T]
		var dot float32
		for j, v := range pr {
			dot += v * dr[j]
		}
		for j, v := range pr {
			dr[j] = v * (dr[j] - dot)
		}
	}
	kernels.Sgemm(false, false, T, dh, T, a.scale, ds, T, a.k[off:], d, 0, a.dq[off:], d)
	kernels.Sgemm(true, false, T, dh, T, a.scale, ds, T, a.q[off:], d, 0, a.dk[off:], d)
}
