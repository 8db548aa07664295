package averaging

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
)

// PowerSGD (Vogels et al., 2019) averages each large weight matrix's
// gradient M (rows × cols) as a rank-r product instead of in full: one
// all-reduce of P = M·Q, orthonormalised into P̂, then one of Q = Mᵀ·P̂;
// every member applies P̂·Q̄ᵀ, the projection of the average gradient on
// span(P̂). Q̄ warm-starts the next step (one power iteration per step).
// Vectors and small tensors ride along densely in the first round.
//
// Error feedback: a member keeps M − P̂·Q̄ᵀ (and the dense ranges' own
// difference from the average) and adds it to its next gradient. Averaged
// over the members, that is exactly what the approximation left out.
//
// Replicas stay bit-identical: the averages of P and Q are encoded once
// by their owners like any all-reduce, and everything computed from them
// here is plain float arithmetic in a fixed order with explicit
// roundings (no fused multiply-add).
type PowerSGD struct {
	rank   int
	mats   []psMatrix
	dense  []span            // everything else, in vector order
	nDense int               // Σ sizes of the dense ranges
	wire   compression.Codec // P, Q
	small  compression.Codec // the dense ranges

	q        []float32 // Q of every matrix, cols×rank row-major, concatenated
	residual []float32 // error feedback, the length of the vector
	// scratch
	m, v1, a1, v2, a2 []float32
}

type psMatrix struct {
	off, rows, cols int
	p, q            int // offsets of its P in round one's factor block and its Q in round two
}

type span struct{ off, n int }

// PowerSGDConfig describes the vector and the compression.
type PowerSGDConfig struct {
	Rank int
	// Shapes are the tensors of the flat vector in order (row-major);
	// 2-D ones of at least MinMatrix values and both sides above Rank are
	// factored, the rest are sent densely.
	Shapes    [][]int
	MinMatrix int
	Seed      uint64            // Q's initial values: the same on every peer
	Wire      compression.Codec // for P and Q; nil: fp32
	Dense     compression.Codec // for the dense ranges; nil: fp16
}

// NewPowerSGD lays out the vector.
func NewPowerSGD(cfg PowerSGDConfig) (*PowerSGD, error) {
	if cfg.Rank < 1 || cfg.Rank > 256 {
		return nil, fmt.Errorf("powersgd: rank %d, want 1..256", cfg.Rank)
	}
	ps := &PowerSGD{rank: cfg.Rank, wire: cfg.Wire, small: cfg.Dense}
	if ps.wire == nil {
		ps.wire = compression.FP32{}
	}
	if ps.small == nil {
		ps.small = compression.FP16{}
	}
	off, nP, nQ := 0, 0, 0 // nP = Σ rows·rank, nQ = Σ cols·rank
	for _, sh := range cfg.Shapes {
		size := 1
		for _, d := range sh {
			if d < 1 {
				return nil, fmt.Errorf("powersgd: tensor shape %v", sh)
			}
			size *= d
		}
		if len(sh) == 2 && size >= cfg.MinMatrix && sh[0] > cfg.Rank && sh[1] > cfg.Rank {
			ps.mats = append(ps.mats, psMatrix{off: off, rows: sh[0], cols: sh[1], p: nP, q: nQ})
			nP += sh[0] * cfg.Rank
			nQ += sh[1] * cfg.Rank
		} else if k := len(ps.dense); k > 0 && ps.dense[k-1].off+ps.dense[k-1].n == off {
			ps.dense[k-1].n += size
		} else {
			ps.dense = append(ps.dense, span{off, size})
		}
		off += size
	}
	if len(ps.mats) == 0 {
		return nil, errors.New("powersgd: no tensor is a matrix large enough to factor")
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x706f776572)) // "power"
	ps.q = make([]float32, nQ)
	for i := range ps.q {
		ps.q[i] = float32(rng.NormFloat64())
	}
	for _, sp := range ps.dense {
		ps.nDense += sp.n
	}
	ps.residual = make([]float32, off)
	ps.m = make([]float32, off)
	ps.v1 = make([]float32, ps.nDense+nP)
	ps.a1 = make([]float32, len(ps.v1))
	ps.v2 = make([]float32, nQ)
	ps.a2 = make([]float32, nQ)
	return ps, nil
}

// WireValues is how many values one step all-reduces (both rounds).
func (ps *PowerSGD) WireValues() int { return len(ps.v1) + len(ps.v2) }

// Reset forgets the error feedback: what was owed belonged to a state
// that was replaced.
func (ps *PowerSGD) Reset() { clear(ps.residual) }

// AllReduce averages local over round r's members in two all-reduces on
// av (round IDs r.ID+"/p" and r.ID+"/q") and writes the approximation
// into out. On error nothing changes: not the residual, not Q.
func (ps *PowerSGD) AllReduce(ctx context.Context, av *allreduce.Averager, r allreduce.Round, local, out []float32) error {
	if len(local) != len(ps.residual) || len(out) != len(ps.residual) {
		return fmt.Errorf("powersgd: vector of %d values, layout has %d", len(local), len(ps.residual))
	}
	rank := ps.rank
	m := ps.m
	for i, x := range local {
		m[i] = x + ps.residual[i]
	}
	// Round one: the dense ranges, then P = M·Q of every matrix.
	nd := ps.nDense
	k := 0
	for _, s := range ps.dense {
		copy(ps.v1[k:], m[s.off:s.off+s.n])
		k += s.n
	}
	for _, mt := range ps.mats {
		matMul(ps.v1[nd+mt.p:nd+mt.p+mt.rows*rank], m[mt.off:mt.off+mt.rows*mt.cols], ps.q[mt.q:mt.q+mt.cols*rank], mt.rows, mt.cols, rank)
	}
	r1 := r
	r1.ID = r.ID + "/p"
	r1.Codecs = func(lo, hi int) (compression.Codec, compression.Codec) {
		c := splitAt(lo, hi, nd, ps.small, ps.wire)
		return c, c
	}
	if err := av.AllReduce(ctx, r1, ps.v1, ps.a1); err != nil {
		return fmt.Errorf("powersgd P: %w", err)
	}
	// Orthonormalise the averaged P's columns; round two: Q = Mᵀ·P̂.
	for _, mt := range ps.mats {
		p := ps.a1[nd+mt.p : nd+mt.p+mt.rows*rank]
		orthonormalize(p, mt.rows, rank)
		matTMul(ps.v2[mt.q:mt.q+mt.cols*rank], m[mt.off:mt.off+mt.rows*mt.cols], p, mt.rows, mt.cols, rank)
	}
	r2 := r
	r2.ID = r.ID + "/q"
	r2.Codecs = func(lo, hi int) (compression.Codec, compression.Codec) { return ps.wire, ps.wire }
	if err := av.AllReduce(ctx, r2, ps.v2, ps.a2); err != nil {
		return fmt.Errorf("powersgd Q: %w", err)
	}
	// Both rounds succeeded: the result, the residual and the warm start.
	k = 0
	for _, s := range ps.dense {
		copy(out[s.off:s.off+s.n], ps.a1[k:k+s.n])
		k += s.n
	}
	for _, mt := range ps.mats {
		p := ps.a1[nd+mt.p : nd+mt.p+mt.rows*rank]
		q := ps.a2[mt.q : mt.q+mt.cols*rank]
		matMulT(out[mt.off:mt.off+mt.rows*mt.cols], p, q, mt.rows, mt.cols, rank)
	}
	for i := range m {
		ps.residual[i] = m[i] - out[i]
	}
	copy(ps.q, ps.a2)
	return nil
}

// splitAt is the codec of [lo, hi) when [0, at) is in a and the rest in b.
func splitAt(lo, hi, at int, a, b compression.Codec) compression.Codec {
	switch {
	case hi <= at:
		return a
	case lo >= at:
		return b
	}
	return compression.Mixed{Segments: []compression.Segment{{Count: at - lo, Codec: a}, {Count: hi - at, Codec: b}}}
}

// matMul sets dst (rows×rank) = a (rows×cols) · b (cols×rank).
func matMul(dst, a, b []float32, rows, cols, rank int) {
	acc := make([]float64, rank)
	for i := range rows {
		clear(acc)
		row := a[i*cols : (i+1)*cols]
		for j, x := range row {
			if x == 0 {
				continue
			}
			bj := b[j*rank : (j+1)*rank]
			for c, y := range bj {
				acc[c] += float64(float64(x) * float64(y)) // explicit rounding: no FMA
			}
		}
		for c := range rank {
			dst[i*rank+c] = float32(acc[c])
		}
	}
}

// matTMul sets dst (cols×rank) = aᵀ (cols×rows) · p (rows×rank).
func matTMul(dst, a, p []float32, rows, cols, rank int) {
	acc := make([]float64, cols*rank)
	for i := range rows {
		row := a[i*cols : (i+1)*cols]
		pi := p[i*rank : (i+1)*rank]
		for j, x := range row {
			for c, y := range pi {
				acc[j*rank+c] += float64(float64(x) * float64(y))
			}
		}
	}
	for i, v := range acc {
		dst[i] = float32(v)
	}
}

// matMulT sets dst (rows×cols) = p (rows×rank) · qᵀ (rank×cols).
func matMulT(dst, p, q []float32, rows, cols, rank int) {
	for i := range rows {
		pi := p[i*rank : (i+1)*rank]
		for j := range cols {
			qj := q[j*rank : (j+1)*rank]
			var s float64
			for c := range rank {
				s += float64(float64(pi[c]) * float64(qj[c]))
			}
			dst[i*cols+j] = float32(s)
		}
	}
}

// orthonormalize makes the columns of p (rows×rank, row-major)
// orthonormal by modified Gram–Schmidt in float64. A column with nothing
// left after the projections becomes zero rather than noise.
func orthonormalize(p []float32, rows, rank int) {
	col := make([]float64, rows*rank) // column-major copy
	for i := range rows {
		for c := range rank {
			col[c*rows+i] = float64(p[i*rank+c])
		}
	}
	for c := range rank {
		v := col[c*rows : (c+1)*rows]
		for d := range c {
			u := col[d*rows : (d+1)*rows]
			dot := dot64(v, u)
			for i := range v {
				v[i] -= float64(dot * u[i])
			}
		}
		norm := math.Sqrt(dot64(v, v))
		if norm < 1e-30 {
			clear(v)
			continue
		}
		for i := range v {
			v[i] /= norm
		}
	}
	for i := range rows {
		for c := range rank {
			p[i*rank+c] = float32(col[c*rows+i])
		}
	}
}

// dot64 is Σ a[i]·b[i], each product rounded before the sum (no FMA).
func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += float64(a[i] * b[i])
	}
	return s
}
