package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// blockCase is one conv–ReLU–pool block: rows×c×h×w in, o channels, k×k.
type blockCase struct{ rows, c, h, w, o, k int }

func (b blockCase) String() string {
	return fmt.Sprintf("%d×%d×%d×%d→%d k%d", b.rows, b.c, b.h, b.w, b.o, b.k)
}

// blockCases: odd sizes (a dropped last row and column), batch 1, a
// kernel wider than the image, k=1, and the default CNN's two blocks.
var blockCases = []blockCase{
	{2, 3, 7, 9, 4, 5}, {1, 3, 9, 7, 2, 5}, {1, 1, 28, 28, 16, 5}, {1, 2, 3, 3, 2, 5}, {3, 2, 6, 5, 3, 1}, {2, 16, 14, 14, 32, 5}, {4, 3, 8, 8, 5, 3},
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
	n := tc.rows * tc.h * tc.w
	col, z := make([]float32, tc.c*tc.k*tc.k*n), make([]float32, tc.o*n)
	pooled := tc.rows * tc.o * (tc.h / 2) * (tc.w / 2)
	out, idx := make([]float32, pooled), make([]int32, pooled)
	convForward(x, w, col, z, tc.rows, tc.c, tc.h, tc.w, tc.k, tc.o)
	poolForward(z, b, out, idx, tc.rows, tc.o, tc.h, tc.w)
	dx, dw, db = make([]float32, len(x)), make([]float32, len(w)), make([]float32, len(b))
	poolBackward(out, dout, idx, z, db, tc.rows, tc.o, tc.h, tc.w)
	convBackward(w, col, z, dw, dx, tc.rows, tc.c, tc.h, tc.w, tc.k, tc.o)
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
// all three inputs at once. Where no pooling choice or ReLU flips between
// −eps and +eps the block is bilinear in (x, w) and linear in b, so the
// central difference is exact but for rounding; eps shrinks until no
// choice that passes a gradient flips (the maximum of a window that ReLU
// zeroes may move), so that a kink cannot pass for a wrong gradient. The
// default CNN's blocks are left to the gorgonia test: among thousands of
// windows some maximum is always within rounding of its runner-up.
func TestConvPoolFiniteDifferences(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, tc := range blockCases {
		if tc.rows*tc.o*tc.h*tc.w > 2000 {
			continue
		}
		x, w, b := randn(r, tc.rows*tc.c*tc.h*tc.w), randn(r, tc.o*tc.c*tc.k*tc.k), randn(r, tc.o)
		R := randn(r, tc.rows*tc.o*(tc.h/2)*(tc.w/2))
		_, dx, dw, db := nativeBlock(tc, x, w, b, R)
		base, baseIdx := blockForward(tc, x, w, b)
		// loss returns Σ R⊙out at the shifted inputs, and whether every
		// pooling choice and ReLU is the unshifted one's.
		loss := func(eps float64, vx, vw, vb []float64) (float64, bool) {
			shift := func(p []float32, v []float64) []float32 {
				q := make([]float32, len(p))
				for i := range q {
					q[i] = float32(float64(p[i]) + eps*v[i])
				}
				return q
			}
			out, idx := blockForward(tc, shift(x, vx), shift(w, vw), shift(b, vb))
			same := true
			var s float64
			for i, v := range out {
				s += float64(v) * float64(R[i])
				same = same && (v > 0) == (base[i] > 0) && (v <= 0 || idx[i] == baseIdx[i])
			}
			return s, same
		}
		for d := range 4 {
			dir := func(g []float32) ([]float64, float64) {
				v, dot := make([]float64, len(g)), 0.0
				for i := range v {
					v[i] = r.NormFloat64()
					dot += v[i] * float64(g[i])
				}
				return v, dot
			}
			vx, gx := dir(dx)
			vw, gw := dir(dw)
			vb, gb := dir(db)
			dot := gx + gw + gb
			fd, ok := 0.0, false
			for eps := 1e-2; eps > 1e-5 && !ok; eps /= 2 {
				up, ok1 := loss(eps, vx, vw, vb)
				down, ok2 := loss(-eps, vx, vw, vb)
				fd, ok = (up-down)/(2*eps), ok1 && ok2
			}
			if !ok {
				t.Errorf("%v direction %d: a pooling choice or ReLU flips at every eps ≥ 1e-5", tc, d)
				continue
			}
			if e := math.Abs(fd-dot) / max(math.Abs(dot), 1e-3); e > 1e-3 {
				t.Errorf("%v direction %d: gradient·v = %g, finite difference %g (relative error %g)", tc, d, dot, fd, e)
			}
		}
	}
}

// blockForward is the block's forward pass alone: output and pooling choices.
func blockForward(tc blockCase, x, w, b []float32) ([]float32, []int32) {
	n := tc.rows * tc.h * tc.w
	col, z := make([]float32, tc.c*tc.k*tc.k*n), make([]float32, tc.o*n)
	pooled := tc.rows * tc.o * (tc.h / 2) * (tc.w / 2)
	out, idx := make([]float32, pooled), make([]int32, pooled)
	convForward(x, w, col, z, tc.rows, tc.c, tc.h, tc.w, tc.k, tc.o)
	poolForward(z, b, out, idx, tc.rows, tc.o, tc.h, tc.w)
	return out, idx
}
