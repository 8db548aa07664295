package trainer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/trainer/text"
)

func corpusTokenizer(t testing.TB, size int) (*text.Tokenizer, []string) {
	t.Helper()
	docs, err := readCorpus()
	if err != nil {
		t.Skipf("no corpus: %v", err)
	}
	tok, err := text.Learn(docs, size, 2)
	if err != nil {
		t.Fatal(err)
	}
	return tok, docs
}

// A short MLM run on the real corpus: the held-out masked-token loss must
// fall well below the uniform guess (ln 1000 = 6.91) and accuracy rise.
func TestBERTMLMLearns(t *testing.T) {
	tok, docs := corpusTokenizer(t, 1000)
	trainDocs, testDocs := SplitTail(docs, 0.1)
	train, err := MLMDataset("mlm-train", tok, trainDocs, 32, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	test, err := MLMDataset("mlm-test", tok, testDocs, 32, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("train %d rows, test %d", train.N, test.N)
	m, err := NewModel(ModelConfig{Arch: ArchBERT, Batch: 32, Seed: 1, Dropout: 0.1}, train)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	acc0, loss0, err := m.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	steps := 60
	last := trainModel(t, m, train, 32, steps, 3e-3)
	el := time.Since(start)
	acc, loss, err := m.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d params; %d steps in %v (%.0f ms/step), last loss %.3f; test masked-token acc %.3f → %.3f, loss %.3f → %.3f",
		m.NumParams(), steps, el.Round(time.Millisecond), float64(el.Milliseconds())/float64(steps), last, acc0, acc, loss0, loss)
	if !(loss < loss0-0.5 && acc > acc0+0.02) {
		t.Errorf("held-out masked-token loss %.3f → %.3f, accuracy %.3f → %.3f: not learning", loss0, loss, acc0, acc)
	}
}

// tinyTokens is a vocabulary of n tokens (the specials, then w0, w1, …).
func tinyTokens(t testing.TB, n int) *text.Tokenizer {
	t.Helper()
	toks := slices.Clone(text.Specials)
	for i := len(toks); i < n; i++ {
		toks = append(toks, fmt.Sprintf("w%d", i))
	}
	tok, err := text.New(toks)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tinyClassify is n rows of seq tokens: [CLS] ids… [SEP] then padding,
// the label whether the first token is in the lower half of the ids.
func tinyClassify(n, seq, vocab int, seed uint64) *Dataset {
	r := rand.New(rand.NewPCG(seed, 9))
	ds := &Dataset{Name: "tiny", N: n, Dim: seq, Classes: 2, Vocab: vocab, X: make([]float32, n*seq), Y: make([]uint8, n)}
	for i := range n {
		row := ds.X[i*seq : (i+1)*seq]
		l := 2 + r.IntN(seq-3)
		row[0] = text.ClsID
		for j := 1; j <= l; j++ {
			row[j] = float32(len(text.Specials) + r.IntN(vocab-len(text.Specials)))
		}
		if int(row[1]) < (len(text.Specials)+vocab)/2 {
			ds.Y[i] = 1
		}
		row[l+1] = text.SepID
	}
	return ds
}

// Without dropout the eval graph and the training graph compute the same
// loss from the same parameters, for both heads.
func TestBERTEvalGraphMatchesTraining(t *testing.T) {
	tok := tinyTokens(t, 30)
	cls := tinyClassify(8, 12, tok.Size(), 1)
	mlm, err := MLMDataset("mlm", tok, []string{strings.Repeat("w7 w8 w9 w10 w11 w12 w13 ", 20)}, 12, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	mlm.N, mlm.X, mlm.Y = 8, mlm.X[:8*mlm.Dim], mlm.Y[:8]
	for _, ds := range []*Dataset{cls, mlm} {
		m, err := NewModel(ModelConfig{Arch: ArchBERT, Width: 8, Heads: 2, Layers: 1, Batch: 8, Seed: 2}, ds)
		if err != nil {
			t.Fatal(err)
		}
		trainModel(t, m, ds, 8, 3, 1e-2)
		evalMatchesTraining(t, m, ds)
		m.Close()
	}
}

// Padding is invisible: [PAD] keys are masked out of attention, so the
// [PAD] embedding can be anything without changing a classification.
// (That sequences do not see each other is TestAttentionMatchesReference's.)
func TestBERTPaddingMasked(t *testing.T) {
	ds := tinyClassify(4, 10, 20, 4)
	m, err := NewModel(ModelConfig{Arch: ArchBERT, Width: 8, Heads: 2, Layers: 2, Batch: 4, Seed: 2}, ds)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, base, err := m.Evaluate(ds)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]float32, m.NumParams())
	m.ReadParams(p)
	width := m.Tensors()[0].Shape[1] // embed.token is first: row 0 is [PAD]
	for i := range width {           // not a constant shift, which layer norm would remove
		p[i] += float32(i * i)
	}
	if err := m.WriteParams(p); err != nil {
		t.Fatal(err)
	}
	_, moved, err := m.Evaluate(ds)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(moved-base) > 1e-6 {
		t.Errorf("changing the [PAD] embedding moved the loss %.7f → %.7f: padding is attended to", base, moved)
	}
	used := int(ds.X[1])   // row 0's first token after [CLS]
	for i := range width { // a real token's embedding does matter
		p[width*used+i] += float32(i * i)
	}
	if err := m.WriteParams(p); err != nil {
		t.Fatal(err)
	}
	if _, l, _ := m.Evaluate(ds); math.Abs(l-moved) < 1e-4 {
		t.Error("changing a used token's embedding left the loss unchanged")
	}
}

func TestBERTRejectsBadTokens(t *testing.T) {
	ds := tinyClassify(4, 10, 20, 4)
	m, err := NewModel(ModelConfig{Arch: ArchBERT, Width: 8, Heads: 2, Layers: 1, Batch: 4, Seed: 2}, ds)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, bad := range []float32{20, -1, 1.5, float32(math.NaN())} {
		x := slices.Clone(ds.X)
		x[3] = bad
		if _, err := m.ComputeGradients(x, ds.Y); err == nil || !strings.Contains(err.Error(), "not an id") {
			t.Errorf("token %v: %v", bad, err)
		}
	}
	if _, err := NewModel(ModelConfig{Arch: ArchBERT, Width: 10, Heads: 4, Batch: 4}, ds); err == nil || !strings.Contains(err.Error(), "multiple of the heads") {
		t.Errorf("width 10, 4 heads: %v", err)
	}
	// A config a peer or a file could send: within every field's range, but
	// the attention scores alone would take 64 GiB.
	long := tinyClassify(2, 512, 20, 1)
	if _, err := NewModel(ModelConfig{Arch: ArchBERT, Width: 64, Heads: 64, Batch: 1024}, long); err == nil || !strings.Contains(err.Error(), "attention scores") {
		t.Errorf("huge attention: %v", err)
	}
	if _, err := NewModel(ModelConfig{Arch: ArchBERT, Batch: 4}, synthDataset(4, 8, 2, 1)); err == nil || !strings.Contains(err.Error(), "token data") {
		t.Errorf("bert on float data: %v", err)
	}
}

// A classifier fine-tuned from an MLM checkpoint takes every encoder
// tensor and keeps its own head.
func TestTransferEncoderToNewHead(t *testing.T) {
	tok := tinyTokens(t, 30)
	mlmData, err := MLMDataset("mlm", tok, []string{strings.Repeat("w7 w8 w9 w10 ", 40)}, 10, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ModelConfig{Arch: ArchBERT, Width: 8, Heads: 2, Layers: 1, Batch: 4, Seed: 2}
	pre, err := NewModel(cfg, mlmData)
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	trainModel(t, pre, mlmData, 4, 3, 1e-2)
	ckpt := &Checkpoint{Tensors: pre.Tensors(), Params: make([]float32, pre.NumParams())}
	pre.ReadParams(ckpt.Params)

	cfg.Seed = 5
	fine, err := NewModel(cfg, tinyClassify(4, 10, tok.Size(), 1))
	if err != nil {
		t.Fatal(err)
	}
	defer fine.Close()
	p := make([]float32, fine.NumParams())
	fine.ReadParams(p)
	seeded := slices.Clone(p)
	fresh, err := ckpt.Transfer(p, fine.Tensors())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"head.pool.weight", "head.pool.bias", "head.classify.weight", "head.classify.bias"}; !slices.Equal(fresh, want) {
		t.Errorf("fresh tensors %v, want the head %v", fresh, want)
	}
	src := map[string][]float32{}
	off := 0
	for _, tn := range ckpt.Tensors {
		src[tn.Name] = ckpt.Params[off : off+tn.Size()]
		off += tn.Size()
	}
	off = 0
	for _, tn := range fine.Tensors() {
		got := p[off : off+tn.Size()]
		if v, ok := src[tn.Name]; ok && !slices.Equal(got, v) {
			t.Errorf("%s not copied", tn.Name)
		} else if !ok && !slices.Equal(got, seeded[off:off+tn.Size()]) {
			t.Errorf("%s (not in the checkpoint) changed", tn.Name)
		}
		off += tn.Size()
	}
	// An MLP checkpoint shares nothing with a BERT.
	mlp, _ := NewMLP(ModelConfig{Hidden: []int{4}, Batch: 1, Seed: 1}, 6, 2)
	other := &Checkpoint{Tensors: mlp.Tensors(), Params: make([]float32, mlp.NumParams())}
	if _, err := other.Transfer(p, fine.Tensors()); err == nil || !strings.Contains(err.Error(), "shares no tensor") {
		t.Errorf("MLP into BERT: %v", err)
	}
}

// Dropout masks come from the seed, not the clock: two runs of the same
// config end bit for bit equal, and another seed differs.
func TestBERTSameSeedSameBits(t *testing.T) {
	ds := tinyClassify(16, 10, 20, 4)
	run := func(seed uint64) []float32 {
		m, err := NewModel(ModelConfig{Arch: ArchBERT, Width: 8, Heads: 2, Layers: 1, Batch: 4, Seed: seed, Dropout: 0.3}, ds)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		trainModel(t, m, ds, 4, 10, 1e-2)
		p := make([]float32, m.NumParams())
		m.ReadParams(p)
		return p
	}
	a, b, c := run(1), run(1), run(2)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave different parameters")
	}
	if slices.Equal(a, c) {
		t.Error("another seed gave the same parameters")
	}
	// Another dropout seed: the same initial weights, other masks.
	grads := func(dropSeed uint64) []float32 {
		m, err := NewBERT(ModelConfig{Arch: ArchBERT, Width: 8, Heads: 2, Layers: 1, Batch: 4, Seed: 1, Dropout: 0.3}, ds)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if dropSeed != 0 {
			m.SeedDropout(dropSeed)
		}
		if _, err := m.ComputeGradients(ds.X[:4*ds.Dim], ds.Y[:4]); err != nil {
			t.Fatal(err)
		}
		g := make([]float32, m.NumParams())
		m.AddGrads(g, 1)
		return g
	}
	if slices.Equal(grads(0), grads(99)) {
		t.Error("SeedDropout did not change the masks")
	}
}

// The whole encoder, both heads, in float32: the gradient of every tensor
// matches central differences of the loss (samples of each tensor), which
// catches wiring errors between blocks that the per-block checks cannot.
func TestBERTWholeGradient(t *testing.T) {
	tok := tinyTokens(t, 30)
	mlm, _ := MLMDataset("mlm", tok, []string{strings.Repeat("w7 w8 w9 w10 w11 w12 w13 w20 w21 w5 ", 20)}, 12, 1, 3)
	mlm.N, mlm.X, mlm.Y = 4, mlm.X[:4*mlm.Dim], mlm.Y[:4]
	for _, ds := range []*Dataset{tinyClassify(4, 12, 30, 1), mlm} {
		m, err := NewModel(ModelConfig{Arch: ArchBERT, Width: 8, Heads: 2, Layers: 2, Batch: 4, Seed: 3}, ds)
		if err != nil {
			t.Fatal(err)
		}
		trainModel(t, m, ds, 4, 5, 1e-2)
		n := m.NumParams()
		p := make([]float32, n)
		m.ReadParams(p)
		if _, err := m.ComputeGradients(ds.X, ds.Y); err != nil {
			t.Fatal(err)
		}
		g := make([]float32, n)
		m.AddGrads(g, 1)
		lossAt := func() float64 {
			m.WriteParams(p)
			l, _ := m.ComputeGradients(ds.X, ds.Y)
			return float64(l)
		}
		off := 0
		for _, tn := range m.Tensors() {
			worst := 0.0
			var wg, wn float64
			for i := off; i < off+tn.Size(); i += max(1, tn.Size()/7) {
				keep := p[i]
				h := float32(1e-2)
				p[i] = keep + h
				up := lossAt()
				p[i] = keep - h
				down := lossAt()
				p[i] = keep
				num := (up - down) / float64(2*h)
				if d := math.Abs(num - float64(g[i])); d > worst {
					worst, wg, wn = d, float64(g[i]), num
				}
			}
			if worst > 2e-3+2e-2*math.Abs(wn) { // float32 steps of 1e-2: the error of the difference itself
				t.Errorf("%s %s: worst |analytic-numeric| %.2e (analytic %.5f numeric %.5f)", ds.Name, tn.Name, worst, wg, wn)
			}
			off += tn.Size()
		}
		m.Close()
	}
}
