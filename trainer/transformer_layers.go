package trainer

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Transformer encoder blocks, dtype-agnostic like the blocks in layers.go.
// Rows are tokens: a batch of B sequences of T tokens is a [B·T, d] matrix,
// sequence-major.

// scalarLike is a constant v of x's dtype.
func scalarLike(x *G.Node, v float64) *G.Node {
	if x.Dtype() == tensor.Float32 {
		return G.NewConstant(float32(v))
	}
	return G.NewConstant(v)
}

// layerNorm normalises every row of x [rows,d] to zero mean and unit
// variance, then scales by gamma [1,d] and shifts by beta [1,d]. The
// inverse standard deviation is 1/sqrt(·): gorgonia's InverseSqrt has a
// wrong gradient.
func layerNorm(x, gamma, beta *G.Node, eps float64) (*G.Node, error) {
	rows := x.Shape()[0]
	mean, err := G.Mean(x, 1)
	if err != nil {
		return nil, err
	}
	if mean, err = G.Reshape(mean, tensor.Shape{rows, 1}); err != nil {
		return nil, err
	}
	c, err := G.BroadcastSub(x, mean, nil, []byte{1})
	if err != nil {
		return nil, err
	}
	sq, err := G.Square(c)
	if err != nil {
		return nil, err
	}
	v, err := G.Mean(sq, 1)
	if err != nil {
		return nil, err
	}
	if v, err = G.Add(v, scalarLike(x, eps)); err != nil {
		return nil, err
	}
	if v, err = G.Sqrt(v); err != nil {
		return nil, err
	}
	if v, err = G.Inverse(v); err != nil {
		return nil, err
	}
	if v, err = G.Reshape(v, tensor.Shape{rows, 1}); err != nil {
		return nil, err
	}
	n, err := G.BroadcastHadamardProd(c, v, nil, []byte{1})
	if err != nil {
		return nil, err
	}
	if n, err = G.BroadcastHadamardProd(n, gamma, nil, []byte{0}); err != nil {
		return nil, err
	}
	return G.BroadcastAdd(n, beta, nil, []byte{0})
}

// gelu is BERT's GELU, in its tanh form:
// x/2 · (1 + tanh(√(2/π) · (x + 0.044715·x³))).
func gelu(x *G.Node) (*G.Node, error) {
	x3, err := G.Cube(x)
	if err != nil {
		return nil, err
	}
	if x3, err = G.Mul(x3, scalarLike(x, 0.044715)); err != nil {
		return nil, err
	}
	in, err := G.Add(x, x3)
	if err != nil {
		return nil, err
	}
	if in, err = G.Mul(in, scalarLike(x, math.Sqrt(2/math.Pi))); err != nil {
		return nil, err
	}
	t, err := G.Tanh(in)
	if err != nil {
		return nil, err
	}
	if t, err = G.Add(t, scalarLike(x, 1)); err != nil {
		return nil, err
	}
	half, err := G.Mul(x, scalarLike(x, 0.5))
	if err != nil {
		return nil, err
	}
	return G.HadamardProd(half, t)
}

// attention is multi-head self-attention over x [B·T, d] for batch
// sequences of seq tokens: p holds wq, bq, wk, bk, wv, bv, wo, bo (each
// weight [d,d], bias [1,d]); mask [B·heads, T, T] is added to the scaled
// scores (0 where a key may be attended, a large negative number at
// padding) before the softmax over keys.
func attention(x *G.Node, p []*G.Node, mask *G.Node, batch, seq, heads int) (*G.Node, error) {
	d := x.Shape()[1]
	if d%heads != 0 {
		return nil, fmt.Errorf("attention: width %d is not a multiple of %d heads", d, heads)
	}
	dh := d / heads
	split := func(n *G.Node) (*G.Node, error) { // [B·T, d] → [B·heads, T, dh]
		n, err := G.Reshape(n, tensor.Shape{batch, seq, heads, dh})
		if err != nil {
			return nil, err
		}
		if n, err = G.Transpose(n, 0, 2, 1, 3); err != nil {
			return nil, err
		}
		return G.Reshape(n, tensor.Shape{batch * heads, seq, dh})
	}
	var qkv [3]*G.Node
	for i := range qkv {
		z, err := affine(x, p[2*i], p[2*i+1])
		if err != nil {
			return nil, err
		}
		if qkv[i], err = split(z); err != nil {
			return nil, err
		}
	}
	s, err := G.BatchedMatMul(qkv[0], qkv[1], false, true) // [B·heads, T, T]
	if err != nil {
		return nil, err
	}
	if s, err = G.Mul(s, scalarLike(x, 1/math.Sqrt(float64(dh)))); err != nil {
		return nil, err
	}
	if s, err = G.Add(s, mask); err != nil {
		return nil, err
	}
	if s, err = G.SoftMax(s, 2); err != nil {
		return nil, err
	}
	ctx, err := G.BatchedMatMul(s, qkv[2]) // [B·heads, T, dh]
	if err != nil {
		return nil, err
	}
	if ctx, err = G.Reshape(ctx, tensor.Shape{batch, heads, seq, dh}); err != nil {
		return nil, err
	}
	if ctx, err = G.Transpose(ctx, 0, 2, 1, 3); err != nil {
		return nil, err
	}
	if ctx, err = G.Reshape(ctx, tensor.Shape{batch * seq, d}); err != nil {
		return nil, err
	}
	return affine(ctx, p[6], p[7])
}

// embed looks up the rows of table [V,d] that ids (an Int vector, one id
// per token) name: [len(ids), d]. The gradient scatters back into the rows
// used, summed over repeats.
func embed(table, ids *G.Node) (*G.Node, error) { return G.ByIndices(table, ids, 0) }
