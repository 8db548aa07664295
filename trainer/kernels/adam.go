package kernels

// AdamStep is the inner loop of Adam with bias correction and decoupled
// weight decay, over parameters p, gradients g and moments m, v (all of
// one length), as trainer's optimizer defines it:
//
//	m ← b1·m + c1·g;  v ← b2·v + c2·(g·g)
//	p ← p·decay − stepSize·(m / (√v/sqrtBc2 + eps))
//
// every operation rounded to float32 and none fused, so that every
// architecture, vector or scalar, produces the same bits (replicas
// compare state hashes). decay is 1 without weight decay; p·1 is p.
func AdamStep(p, g, m, v []float32, b1, c1, b2, c2, sqrtBc2, eps, decay, stepSize float32) {
	n := len(p)
	g, m, v = g[:n], m[:n], v[:n]
	k := [8]float32{b1, c1, b2, c2, sqrtBc2, eps, decay, stepSize}
	done := 0
	if adamVec != nil {
		done = adamVec(p, g, m, v, &k)
	}
	adamGo(p[done:], g[done:], m[done:], v[done:], &k)
}

// adamVec, where the CPU has one, steps a prefix of the vectors and
// returns its length.
var adamVec func(p, g, m, v []float32, k *[8]float32) int

func adamGo(p, g, m, v []float32, k *[8]float32) {
	b1, c1, b2, c2, sqrtBc2, eps, decay, stepSize := k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	for i, gi := range g {
		mi := float32(b1*m[i]) + float32(c1*gi)
		vi := float32(b2*v[i]) + float32(c2*float32(gi*gi))
		m[i], v[i] = mi, vi
		denom := float32(sqrt32(vi)/sqrtBc2) + eps
		p[i] = float32(p[i]*decay) - float32(stepSize*float32(mi/denom))
	}
}
