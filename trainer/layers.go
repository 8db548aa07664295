package trainer

import (
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The blocks below build graph pieces without fixing a dtype: the models
// use them in float32, and the tests build the same blocks in float64 to
// check their gradients against finite differences.

// affine is x·w + b for x [rows,in], w [in,out], b [1,out].
func affine(x, w, b *G.Node) (*G.Node, error) {
	z, err := G.Mul(x, w)
	if err != nil {
		return nil, err
	}
	return G.BroadcastAdd(z, b, nil, []byte{0})
}

// convBlock is one conv–ReLU–pool stage: a k×k convolution (k odd,
// stride 1, zero "same" padding) plus a per-channel bias, ReLU, then 2×2
// max pooling with stride 2. x [rows,C,H,W], w [O,C,k,k], b [1,O,1,1]
// give [rows,O,H/2,W/2] (rounded down).
func convBlock(x, w, b *G.Node) (*G.Node, error) {
	k := w.Shape()[2]
	z, err := G.Conv2d(x, w, tensor.Shape{k, k}, []int{k / 2, k / 2}, []int{1, 1}, []int{1, 1})
	if err != nil {
		return nil, err
	}
	if z, err = G.BroadcastAdd(z, b, nil, []byte{0, 2, 3}); err != nil {
		return nil, err
	}
	if z, err = G.Rectify(z); err != nil {
		return nil, err
	}
	return G.MaxPool2D(z, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2})
}

// crossEntropy is the batch mean of −Σ_k y_k·log softmax(z)_k for logits
// z [rows,classes] and one-hot (or soft) targets y of the same shape.
func crossEntropy(z, y *G.Node) (*G.Node, error) {
	sum, err := weightedCrossEntropy(z, y)
	if err != nil {
		return nil, err
	}
	return G.Div(sum, scalarLike(z, float64(z.Shape()[0])))
}

// weightedCrossEntropy is −Σ target ⊙ log softmax(z) over every row:
// targets carry their own weights (one-hot rows scaled by 1/count, zero
// rows ignored).
func weightedCrossEntropy(z, target *G.Node) (*G.Node, error) {
	logp, err := G.LogSoftMax(z)
	if err != nil {
		return nil, err
	}
	prod, err := G.HadamardProd(target, logp)
	if err != nil {
		return nil, err
	}
	s, err := G.Sum(prod)
	if err != nil {
		return nil, err
	}
	return G.Neg(s)
}
