package engine

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// testBERT plans a small encoder with random parameters and input: some
// padding at the ends of sequences, both segments, dropout masks.
func testBERT(t testing.TB, r *rand.Rand, c BERTConfig, rows int) *BERT {
	t.Helper()
	m, err := NewBERT(c)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Params() {
		m.Params()[i] = float32(r.NormFloat64() * 0.3)
	}
	in := m.Input()
	for b := range rows {
		pad := r.IntN(c.Seq / 2)
		for i := range c.Seq {
			j := b*c.Seq + i
			in.IDs[j] = 1 + r.IntN(c.Vocab-1)
			in.Segments[j] = min(1, i/(c.Seq/2+1))
			in.Pad[j] = i >= c.Seq-pad
			if in.Pad[j] {
				in.IDs[j] = 0
			}
		}
	}
	for i := range in.Gather {
		in.Gather[i] = r.IntN(rows * c.Seq)
	}
	for i := range in.Want {
		in.Want[i] = r.IntN(m.Outputs()+1) - 1
	}
	for _, d := range in.Drops {
		for i := range d {
			d[i] = 1 / 0.8
			if r.Float64() < 0.2 {
				d[i] = 0
			}
		}
	}
	return m
}

// TestBERTWholeGradient: both heads, with dropout and padding, odd sizes
// and one sequence: the gradient of the whole parameter vector against
// finite differences of the loss.
func TestBERTWholeGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 1))
	for _, tc := range []struct {
		c    BERTConfig
		rows int
	}{
		{BERTConfig{Vocab: 11, Seq: 5, Width: 6, Heads: 2, Layers: 2, FF: 7, PerSeq: 2, Rows: 3, Dropout: true}, 3},
		{BERTConfig{Vocab: 9, Seq: 7, Width: 9, Heads: 3, Layers: 1, FF: 5, Classes: 3, Rows: 2}, 2},
		{BERTConfig{Vocab: 9, Seq: 4, Width: 4, Heads: 1, Layers: 1, FF: 8, Classes: 2, Rows: 1, Dropout: true}, 1},
		{BERTConfig{Vocab: 13, Seq: 6, Width: 8, Heads: 2, Layers: 2, FF: 16, PerSeq: 3, Rows: 4}, 2},
	} {
		m := testBERT(t, r, tc.c, tc.rows)
		if _, err := m.Step(tc.rows); err != nil {
			t.Fatal(err)
		}
		g := append([]float32(nil), m.Grads()...)
		f := func() float64 {
			l, err := m.Step(tc.rows)
			if err != nil {
				t.Fatal(err)
			}
			return float64(l)
		}
		fdCheck(t, "bert", r, f, [][]float32{m.Params()}, [][]float32{g})
	}
}

// TestBERTForwardIsStepWithoutDropout: Forward's logits give Step's loss.
func TestBERTForwardIsStepWithoutDropout(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 1))
	c := BERTConfig{Vocab: 11, Seq: 5, Width: 6, Heads: 2, Layers: 2, FF: 7, PerSeq: 2, Rows: 3}
	m := testBERT(t, r, c, 3)
	loss, err := m.Step(3)
	if err != nil {
		t.Fatal(err)
	}
	z, err := m.Forward(3)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, w := range m.Input().Want {
		if w >= 0 {
			count++
		}
	}
	if l := maskedCrossEntropy(z, make([]float32, len(z)), m.Input().Want, c.Vocab, count); l != loss {
		t.Errorf("Forward's loss %g, Step's %g", l, loss)
	}
}

func TestBERTRefuses(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 1))
	c := BERTConfig{Vocab: 11, Seq: 5, Width: 6, Heads: 2, Layers: 1, FF: 7, PerSeq: 2, Rows: 2}
	for _, bad := range []BERTConfig{{}, {Vocab: 11, Seq: 5, Width: 6, Heads: 4, Layers: 1, FF: 7, PerSeq: 2, Rows: 2}, {Vocab: 11, Seq: 5, Width: 6, Heads: 2, Layers: 1, FF: 7, Rows: 2}} {
		if _, err := NewBERT(bad); err == nil {
			t.Errorf("NewBERT(%+v) accepted", bad)
		}
	}
	for name, spoil := range map[string]func(in *BERTInput){
		"id":      func(in *BERTInput) { in.IDs[3] = 11 },
		"neg id":  func(in *BERTInput) { in.IDs[3] = -1 },
		"segment": func(in *BERTInput) { in.Segments[0] = 2 },
		"gather":  func(in *BERTInput) { in.Gather[1] = 10 },
		"label":   func(in *BERTInput) { in.Want[0] = 11 },
	} {
		m := testBERT(t, r, c, 2)
		spoil(m.Input())
		if _, err := m.Step(2); err == nil {
			t.Errorf("%s: bad input accepted", name)
		}
		for _, g := range m.Grads() {
			if g != 0 {
				t.Fatalf("%s: gradient not zero after a refused step", name)
			}
		}
	}
	huge := BERTConfig{Vocab: 30000, Seq: 512, Width: 1024, Heads: 16, Layers: 24, FF: 4096, PerSeq: 77, Rows: 4096}
	if _, err := NewBERT(huge); err == nil || !strings.Contains(err.Error(), "would plan") {
		t.Errorf("a 24-layer plan for 4096 sequences of 512: %v", err)
	}
	m := testBERT(t, r, c, 2)
	if _, err := m.Step(3); err == nil {
		t.Error("3 sequences accepted by a plan for 2")
	}
}

// TestBERTStepAllocatesNothing: the benchmark's shape, attention and GELU
// split over two goroutines, no allocation per step.
func TestBERTStepAllocatesNothing(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	r := rand.New(rand.NewPCG(10, 1))
	c := BERTConfig{Vocab: 200, Seq: 32, Width: 32, Heads: 4, Layers: 2, FF: 128, PerSeq: 5, Rows: 8, Dropout: true}
	m := testBERT(t, r, c, 8)
	for range 2 {
		if _, err := m.Step(8); err != nil {
			t.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := m.Step(8); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.Mallocs - before.Mallocs; n >= 10 {
		t.Errorf("%d allocations in 10 steps", n)
	}
}

// BenchmarkBERTStep is `swarmtrain bench train`'s BERT shape (2 layers ×
// 64, 4 heads, 64 tokens, vocabulary 2000, MLM, 32 sequences, dropout),
// the engine's step alone.
func BenchmarkBERTStep(b *testing.B) {
	r := rand.New(rand.NewPCG(11, 1))
	c := BERTConfig{Vocab: 2000, Seq: 64, Width: 64, Heads: 4, Layers: 2, FF: 256, PerSeq: 10, Rows: 32, Dropout: true}
	m := testBERT(b, r, c, 32)
	for i := range m.Params() {
		m.Params()[i] *= 0.1
	}
	b.ResetTimer()
	for range b.N {
		if _, err := m.Step(32); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBERTThreadsSameBits: the loss and gradient do not depend on how
// many goroutines the step is split over (replicas on machines with
// different core counts must agree).
func TestBERTThreadsSameBits(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	c := BERTConfig{Vocab: 300, Seq: 32, Width: 32, Heads: 4, Layers: 2, FF: 128, PerSeq: 5, Rows: 12, Dropout: true}
	var losses []float32
	var grads [][]float32
	for _, procs := range []int{1, 2, 3} {
		runtime.GOMAXPROCS(procs)
		m := testBERT(t, rand.New(rand.NewPCG(12, 1)), c, 12)
		l, err := m.Step(12)
		if err != nil {
			t.Fatal(err)
		}
		losses, grads = append(losses, l), append(grads, m.Grads())
	}
	for i := 1; i < len(grads); i++ {
		if losses[i] != losses[0] || !slices.Equal(grads[i], grads[0]) {
			t.Errorf("GOMAXPROCS %d: loss %g and gradient differ from one thread's (%g)", i+1, losses[i], losses[0])
		}
	}
}
