package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// blockCase is one conv–ReLU–pool block: rows×c×h×w in, o channels, k×k,
// and g images per im2col group (0: as the CNN plans it).
type blockCase struct{ rows, c, h, w, o, k, g int }

func (b blockCase) group() int {
	if b.g > 0 {
		return b.g
	}
	return convGroup(b.rows, b.c, b.h, b.w, b.k)
}

func (b blockCase) String() string {
	return fmt.Sprintf("%d×%d×%d×%d→%d k%d g%d", b.rows, b.c, b.h, b.w, b.o, b.k, b.group())
}

// blockCases: odd sizes (a dropped last row and column), batch 1, a
// kernel wider than the image, k=1, the default CNN's two blocks (the
// second in groups of 3 images), and groups that do not divide the batch.
var blockCases = []blockCase{
	{2, 3, 7, 9, 4, 5, 0}, {1, 3, 9, 7, 2, 5, 0}, {1, 1, 28, 28, 16, 5, 0}, {1, 2, 3, 3, 2, 5, 0}, {3, 2, 6, 5, 3, 1, 0},
	{5, 16, 14, 14, 32, 5, 0}, {4, 3, 8, 8, 5, 3, 0}, {5, 3, 8, 8, 5, 3, 2}, {7, 2, 5, 6, 3, 3, 3},
}

func randn(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// nativeBlock runs one block forward and, with dout as the loss gradient
// at its output, backward; it returns the output and the gradients of x,
// w and b.
func nativeBlock(tc blockCase, x, w, b, dout []float32) (out, dx, dw, db []float32) {
	n, g := tc.rows*tc.h*tc.w, tc.group()
	col, z := make([]float32, tc.c*tc.k*tc.k*g*tc.h*tc.w), make([]float32, tc.o*n)
	pooled := tc.rows * tc.o * (tc.h / 2) * (tc.w / 2)
	out, idx := make([]float32, pooled), make([]int32, pooled)
	convForward(x, w, col, z, tc.rows, tc.c, tc.h, tc.w, tc.k, tc.o, g)
	poolForward(z, b, out, idx, tc.rows, tc.o, tc.h, tc.w)
	dx, dw, db = make([]float32, len(x)), make([]float32, len(w)), make([]float32, len(b))
	poolBackward(out, dout, idx, z, db, tc.rows, tc.o, tc.h, tc.w)
	convBackward(x, w, col, z, dw, dx, tc.rows, tc.c, tc.h, tc.w, tc.k, tc.o, g)
	return out, dx, dw, db
}

// gorgoniaBlock is trainer's convBlock as a float64 gorgonia graph (the
// reference engine): conv2d, bias, ReLU, max-pool, then Σ dout⊙out so that
// the gradients are dout pulled back through the block.
func gorgoniaBlock(t *testing.T, tc blockCase, x, w, b, dout []float32) (out, dx, dw, db []float64) {
	t.Helper()
	g := G.NewGraph()
	node := func(name string, v []float32, shape ...int) *G.Node {
		d := make([]float64, len(v))
		for i, f := range v {
			d[i] = float64(f)
		}
		return G.NewTensor(g, tensor.Float64, len(shape), G.WithShape(shape...), G.WithName(name),
			G.WithValue(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d))))
	}
	xn, wn, bn := node("x", x, tc.rows, tc.c, tc.h, tc.w), node("w", w, tc.o, tc.c, tc.k, tc.k), node("b", b, 1, tc.o, 1, 1)
	must := func(n *G.Node, err error) *G.Node {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	z := must(G.Conv2d(xn, wn, tensor.Shape{tc.k, tc.k}, []int{tc.k / 2, tc.k / 2}, []int{1, 1}, []int{1, 1}))
	z = must(G.BroadcastAdd(z, bn, nil, []byte{0, 2, 3}))
	z = must(G.Rectify(z))
	z = must(G.MaxPool2D(z, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2}))
	rn := node("R", dout, z.Shape()...)
	loss := must(G.Sum(must(G.HadamardProd(z, rn))))
	var ov G.Value
	G.Read(z, &ov)
	if _, err := G.Grad(loss, xn, wn, bn); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(xn, wn, bn))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	grad := func(n *G.Node) []float64 {
		v, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		return append([]float64(nil), v.Data().([]float64)...)
	}
	return append([]float64(nil), ov.Data().([]float64)...), grad(xn), grad(wn), grad(bn)
}

// relErr64 is ‖a−b‖/max(‖a‖,‖b‖).
func relErr64(a []float32, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d, na, nb float64
	for i := range a {
		d += (float64(a[i]) - b[i]) * (float64(a[i]) - b[i])
		na += float64(a[i]) * float64(a[i])
		nb += b[i] * b[i]
	}
	return math.Sqrt(d) / max(math.Sqrt(max(na, nb)), 1e-30)
}

// TestConvPoolMatchesGorgonia: the fused block's output and its
// gradients of input, weight and bias within 1e-3 of the gorgonia graph.
func TestConvPoolMatchesGorgonia(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range blockCases {
		x, w, b := randn(r, tc.rows*tc.c*tc.h*tc.w), randn(r, tc.o*tc.c*tc.k*tc.k), randn(r, tc.o)
		dout := randn(r, tc.rows*tc.o*(tc.h/2)*(tc.w/2))
		out, dx, dw, db := nativeBlock(tc, x, w, b, dout)
		rout, rdx, rdw, rdb := gorgoniaBlock(t, tc, x, w, b, dout)
		for _, c := range []struct {
			name string
			a    []float32
			b    []float64
		}{{"output", out, rout}, {"dx", dx, rdx}, {"dw", dw, rdw}, {"db", db, rdb}} {
			if e := relErr64(c.a, c.b); e > 1e-3 {
				t.Errorf("%v: %s relative error %g", tc, c.name, e)
			}
		}
	}
}

// TestConvPoolFiniteDifferences checks the block's backward pass against
// central differences of Σ R⊙block(x; w, b) along random directions of
// all three inputs at once. The block is bilinear in (x, w) and linear in
// b wherever no pooling choice or ReLU flips, so the central difference is
// exact there but for rounding. Outputs whose choice does flip between
// −eps and +eps get weight 0 in R, which takes them out of the loss and
// of the gradient alike; a kink then cannot pass for a wrong gradient.
// The gradient is dotted with the shift float32 made, not the one asked
// for, so that rounding the inputs is not taken for an error.
func TestConvPoolFiniteDifferences(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const eps = 1e-2
	for _, tc := range blockCases {
		x, w, b := randn(r, tc.rows*tc.c*tc.h*tc.w), randn(r, tc.o*tc.c*tc.k*tc.k), randn(r, tc.o)
		base, baseIdx := blockForward(tc, x, w, b)
		for d := range 3 {
			var v, up, down [3][]float32
			for i, p := range [][]float32{x, w, b} {
				v[i] = randn(r, len(p))
				up[i], down[i] = make([]float32, len(p)), make([]float32, len(p))
				for j := range p {
					up[i][j] = float32(float64(p[j]) + eps*float64(v[i][j]))
					down[i][j] = float32(float64(p[j]) - eps*float64(v[i][j]))
				}
			}
			outUp, idxUp := blockForward(tc, up[0], up[1], up[2])
			outDown, idxDown := blockForward(tc, down[0], down[1], down[2])
			R := randn(r, len(base))
			kept := 0
			for i := range R {
				same := func(o float32, at int32) bool {
					return (o > 0) == (base[i] > 0) && (o <= 0 || at == baseIdx[i])
				}
				if !same(outUp[i], idxUp[i]) || !same(outDown[i], idxDown[i]) {
					R[i] = 0
					continue
				}
				kept++
			}
			if kept < len(R)/2 {
				t.Fatalf("%v: %d of %d outputs flip at eps %g", tc, len(R)-kept, len(R), eps)
			}
			_, dx, dw, db := nativeBlock(tc, x, w, b, R)
			var fd, dot float64
			for i, o := range outUp {
				fd += float64(R[i]) * (float64(o) - float64(outDown[i]))
			}
			for i, g := range [][]float32{dx, dw, db} {
				for j := range g {
					dot += float64(g[j]) * (float64(up[i][j]) - float64(down[i][j]))
				}
			}
			if e := math.Abs(fd-dot) / max(math.Abs(dot), 1e-6); e > 1e-3 {
				t.Errorf("%v direction %d: loss(+eps)−loss(−eps) = %g, gradient·shift %g (relative error %g)", tc, d, fd, dot, e)
			}
		}
	}
}

// blockForward is the block's forward pass alone: output and pooling choices.
func blockForward(tc blockCase, x, w, b []float32) ([]float32, []int32) {
	n, g := tc.rows*tc.h*tc.w, tc.group()
	col, z := make([]float32, tc.c*tc.k*tc.k*g*tc.h*tc.w), make([]float32, tc.o*n)
	pooled := tc.rows * tc.o * (tc.h / 2) * (tc.w / 2)
	out, idx := make([]float32, pooled), make([]int32, pooled)
	convForward(x, w, col, z, tc.rows, tc.c, tc.h, tc.w, tc.k, tc.o, g)
	poolForward(z, b, out, idx, tc.rows, tc.o, tc.h, tc.w)
	return out, idx
}
