package trainer

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// gradCheck builds loss = Σ R⊙block(inputs) in float64, where R is a fixed
// random tensor (so every output carries a distinct weight), and compares
// gorgonia's symbolic gradient of every input with central finite
// differences of the same graph.
func gradCheck(t *testing.T, shapes [][]int, block func(in []*G.Node) (*G.Node, error)) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	g := G.NewGraph()
	in := make([]*G.Node, len(shapes))
	for i, s := range shapes {
		data := make([]float64, tensor.Shape(s).TotalSize())
		for j := range data {
			data[j] = r.NormFloat64()
		}
		in[i] = G.NewTensor(g, tensor.Float64, len(s), G.WithShape(s...), G.WithName(string(rune('a'+i))),
			G.WithValue(tensor.New(tensor.WithShape(s...), tensor.WithBacking(data))))
	}
	out, err := block(in)
	if err != nil {
		t.Fatalf("building block: %v", err)
	}
	loss := out
	if !out.IsScalar() {
		weights := make([]float64, out.Shape().TotalSize())
		for j := range weights {
			weights[j] = r.NormFloat64()
		}
		rn := G.NewTensor(g, tensor.Float64, out.Dims(), G.WithShape(out.Shape()...), G.WithName("R"),
			G.WithValue(tensor.New(tensor.WithShape(out.Shape()...), tensor.WithBacking(weights))))
		prod, err := G.HadamardProd(out, rn)
		if err != nil {
			t.Fatal(err)
		}
		if loss, err = G.Sum(prod); err != nil {
			t.Fatal(err)
		}
	}
	var lv G.Value
	G.Read(loss, &lv)
	if _, err := G.Grad(loss, in...); err != nil {
		t.Fatalf("Grad: %v", err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(in...))
	defer vm.Close()
	eval := func() float64 {
		if err := vm.RunAll(); err != nil {
			t.Fatalf("run: %v", err)
		}
		vm.Reset()
		return lv.Data().(float64)
	}
	eval()
	analytic := make([][]float64, len(in))
	for i, n := range in {
		gv, err := n.Grad()
		if err != nil {
			t.Fatalf("grad of %s: %v", n.Name(), err)
		}
		analytic[i] = slices.Clone(gv.Data().([]float64))
	}
	const h = 1e-6
	for i, n := range in {
		data := n.Value().Data().([]float64)
		for j := range data {
			keep := data[j]
			data[j] = keep + h
			up := eval()
			data[j] = keep - h
			down := eval()
			data[j] = keep
			num := (up - down) / (2 * h)
			if d := math.Abs(num - analytic[i][j]); d > 1e-5*math.Max(1, math.Abs(num)) {
				t.Errorf("d loss/d %s[%d]: gorgonia %.8g, finite difference %.8g", n.Name(), j, analytic[i][j], num)
			}
		}
	}
}

func TestConvBlockGradient(t *testing.T) {
	// x [2,2,6,6], w [3,2,5,5], b [1,3,1,1]: padding, bias broadcast, ReLU
	// and pooling all sit on the path of every gradient.
	gradCheck(t, [][]int{{2, 2, 6, 6}, {3, 2, 5, 5}, {1, 3, 1, 1}}, func(in []*G.Node) (*G.Node, error) {
		return convBlock(in[0], in[1], in[2])
	})
}

func TestAffineGradient(t *testing.T) {
	gradCheck(t, [][]int{{3, 4}, {4, 5}, {1, 5}}, func(in []*G.Node) (*G.Node, error) {
		return affine(in[0], in[1], in[2])
	})
}

func TestCrossEntropyGradient(t *testing.T) {
	// Soft targets exercise every term of the log-softmax backward.
	gradCheck(t, [][]int{{3, 4}, {3, 4}}, func(in []*G.Node) (*G.Node, error) {
		return crossEntropy(in[0], in[1])
	})
}

func TestLayerNormGradient(t *testing.T) {
	gradCheck(t, [][]int{{4, 6}, {1, 6}, {1, 6}}, func(in []*G.Node) (*G.Node, error) {
		return layerNorm(in[0], in[1], in[2], 1e-5)
	})
}

func TestGELUGradient(t *testing.T) {
	gradCheck(t, [][]int{{3, 5}}, func(in []*G.Node) (*G.Node, error) { return gelu(in[0]) })
}

// Attention with 2 sequences of 3 tokens, width 4, 2 heads; the second
// sequence's last token is padding, masked out as a key.
func TestAttentionGradient(t *testing.T) {
	const batch, seq, d, heads = 2, 3, 4, 2
	shapes := [][]int{{batch * seq, d}}
	for range 4 {
		shapes = append(shapes, []int{d, d}, []int{1, d})
	}
	gradCheck(t, shapes, func(in []*G.Node) (*G.Node, error) {
		m := make([]float64, batch*heads*seq*seq)
		for b := range batch * heads {
			if b >= heads { // second sequence
				for q := range seq {
					m[(b*seq+q)*seq+seq-1] = -1e9
				}
			}
		}
		mask := G.NewTensor(in[0].Graph(), tensor.Float64, 3, G.WithShape(batch*heads, seq, seq), G.WithName("mask"),
			G.WithValue(tensor.New(tensor.WithShape(batch*heads, seq, seq), tensor.WithBacking(m))))
		return attention(in[0], in[1:], mask, batch, seq, heads)
	})
}

// Token 2 appears twice: its row's gradient is the sum of both uses.
func TestEmbedGradient(t *testing.T) {
	gradCheck(t, [][]int{{5, 3}}, func(in []*G.Node) (*G.Node, error) {
		ids := G.NewVector(in[0].Graph(), tensor.Int, G.WithShape(4), G.WithName("ids"),
			G.WithValue(tensor.New(tensor.WithBacking([]int{2, 0, 2, 4}))))
		return embed(in[0], ids)
	})
}

// The attention block computes what it should, not just something whose
// gradient is consistent: its float64 output equals a plain-Go reference
// (per head: softmax(q·kᵀ/√dₕ)·v, heads concatenated, output projection).
func TestAttentionMatchesReference(t *testing.T) {
	const B, T, d, H = 2, 3, 4, 2
	dh := d / H
	r := rand.New(rand.NewPCG(1, 2))
	g := G.NewGraph()
	mk := func(name string, shape ...int) (*G.Node, []float64) {
		v := make([]float64, tensor.Shape(shape).TotalSize())
		for i := range v {
			v[i] = r.NormFloat64()
		}
		return G.NewTensor(g, tensor.Float64, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v)))), v
	}
	x, xv := mk("x", B*T, d)
	var p []*G.Node
	var pv [][]float64
	for i := range 4 {
		w, wv := mk("w"+string(rune('0'+i)), d, d)
		b, bv := mk("b"+string(rune('0'+i)), 1, d)
		p = append(p, w, b)
		pv = append(pv, wv, bv)
	}
	// The second sequence's last token is padding: masked as a key.
	mv := make([]float64, B*H*T*T)
	for h := range H {
		for i := range T {
			mv[((1*H+h)*T+i)*T+T-1] = -1e9
		}
	}
	mask := G.NewTensor(g, tensor.Float64, 3, G.WithShape(B*H, T, T), G.WithName("m"), G.WithValue(tensor.New(tensor.WithShape(B*H, T, T), tensor.WithBacking(mv))))
	out, err := attention(x, p, mask, B, T, H)
	if err != nil {
		t.Fatal(err)
	}
	var ov G.Value
	G.Read(out, &ov)
	vm := G.NewTapeMachine(g)
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	got := ov.Data().([]float64)
	aff := func(w, b []float64) []float64 {
		o := make([]float64, B*T*d)
		for i := range B * T {
			for j := range d {
				s := b[j]
				for k := range d {
					s += xv[i*d+k] * w[k*d+j]
				}
				o[i*d+j] = s
			}
		}
		return o
	}
	q, k, v := aff(pv[0], pv[1]), aff(pv[2], pv[3]), aff(pv[4], pv[5])
	ctx := make([]float64, B*T*d)
	for b := range B {
		for h := range H {
			for i := range T {
				sc := make([]float64, T)
				mx := -1e300
				keys := T
				if b == 1 {
					keys = T - 1 // the padded key takes no weight
				}
				for j := range T {
					s := 0.0
					for c := range dh {
						s += q[(b*T+i)*d+h*dh+c] * k[(b*T+j)*d+h*dh+c]
					}
					sc[j] = s / math.Sqrt(float64(dh))
					if j >= keys {
						sc[j] = math.Inf(-1)
					}
					mx = max(mx, sc[j])
				}
				z := 0.0
				for j := range T {
					sc[j] = math.Exp(sc[j] - mx)
					z += sc[j]
				}
				for c := range dh {
					s := 0.0
					for j := range T {
						s += sc[j] / z * v[(b*T+j)*d+h*dh+c]
					}
					ctx[(b*T+i)*d+h*dh+c] = s
				}
			}
		}
	}
	want := make([]float64, B*T*d)
	for i := range B * T {
		for j := range d {
			s := pv[7][j]
			for kk := range d {
				s += ctx[i*d+kk] * pv[6][kk*d+j]
			}
			want[i*d+j] = s
		}
	}
	for i := range want {
		if math.Abs(want[i]-got[i]) > 1e-9 {
			t.Fatalf("value %d: gorgonia %.6f, reference %.6f\n got %v\nwant %v", i, got[i], want[i], got, want)
		}
	}
}
