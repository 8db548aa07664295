package trainer

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/swarmtrain/swarmtrain/trainer/text"
)

// ArchBERT is the Transformer encoder (NewModel picks the head from the
// dataset: masked-language modelling or sequence classification).
const ArchBERT = "bert"

// BERT defaults and limits: a small encoder that trains on two cores.
const (
	DefaultBERTWidth  = 64
	DefaultBERTHeads  = 4
	DefaultBERTLayers = 2
	maxBERTLayers     = 24
	maxBERTSeq        = 512
	bertEvalRows      = 32
	bertInitStd       = 0.02 // BERT's embedding N(0, 0.02), here as a uniform of that spread
	layerNormEps      = 1e-12
	maskedLogit       = -1e9 // added to the scores of padding keys
)

// bertSpecs lists an encoder's parameters in flat-vector order: the
// embeddings, then per layer attention (q, k, v, o), its norm, the
// feed-forward pair and its norm, then the head. Names follow BERT's
// structure, so a classifier fine-tuned from a pre-trained checkpoint
// finds every encoder tensor by name.
func bertSpecs(vocab, seq, d, ff, layers int, mlm bool, classes int) []paramSpec {
	// Dense weights are Glorot-uniform. BERT's N(0, 0.02) is tuned for
	// width 768: at width 64 it leaves the attention scores near zero, so
	// the softmax stays uniform and q and k barely get a gradient (the
	// encoder learns as a bag of words for a long time). Embeddings keep
	// BERT's spread: a layer norm follows them.
	mat := func(name string, in, out int) paramSpec {
		return paramSpec{Tensor: Tensor{Name: name, Shape: []int{in, out}}, limit: math.Sqrt(6 / float64(in+out))}
	}
	emb := func(name string, rows, d int) paramSpec {
		return paramSpec{Tensor: Tensor{Name: name, Shape: []int{rows, d}}, limit: bertInitStd * math.Sqrt(3)}
	}
	vec := func(name string, n int, fill float32) paramSpec {
		return paramSpec{Tensor: Tensor{Name: name, Shape: []int{n}}, node: []int{1, n}, fill: fill}
	}
	specs := []paramSpec{
		emb("embed.token", vocab, d),
		emb("embed.position", seq, d),
		emb("embed.segment", 2, d),
		vec("embed.norm.weight", d, 1), vec("embed.norm.bias", d, 0),
	}
	for l := range layers {
		p := fmt.Sprintf("layers.%d.", l)
		for _, n := range []string{"q", "k", "v", "o"} {
			specs = append(specs, mat(p+"attn."+n+".weight", d, d), vec(p+"attn."+n+".bias", d, 0))
		}
		specs = append(specs, vec(p+"attn.norm.weight", d, 1), vec(p+"attn.norm.bias", d, 0),
			mat(p+"ff.1.weight", d, ff), vec(p+"ff.1.bias", ff, 0),
			mat(p+"ff.2.weight", ff, d), vec(p+"ff.2.bias", d, 0),
			vec(p+"ff.norm.weight", d, 1), vec(p+"ff.norm.bias", d, 0))
	}
	if mlm {
		// The decoder shares embed.token (tied weights), as BERT's does.
		return append(specs, mat("head.mlm.transform.weight", d, d), vec("head.mlm.transform.bias", d, 0),
			vec("head.mlm.norm.weight", d, 1), vec("head.mlm.norm.bias", d, 0),
			vec("head.mlm.bias", vocab, 0))
	}
	return append(specs, mat("head.pool.weight", d, d), vec("head.pool.bias", d, 0),
		mat("head.classify.weight", d, classes), vec("head.classify.bias", classes, 0))
}

// BERT is a Transformer encoder (token, position and segment embeddings,
// post-norm layers of masked multi-head self-attention and a GELU
// feed-forward, dropout on every residual branch) with one of two heads:
//
//   - masked-language modelling, for a dataset with MLM set: a row is Seq
//     input ids followed by Seq targets (−1 where nothing is predicted);
//     the loss is the cross-entropy of the masked tokens, accuracy counts
//     them.
//   - classification: a row is Seq token ids ([CLS] first; segment 0 up
//     to the first [SEP], 1 after it), its label the class; the head reads
//     the [CLS] position through a tanh pooler.
//
// [PAD] (id 0) tokens are never attended to. Dropout masks come from a
// PCG seeded by the config's seed; evaluation runs a separate graph
// without dropout.
type BERT struct {
	*graphNet
	cfg     ModelConfig
	vocab   int
	seq     int
	mlm     bool
	perSeq  int // MLM: the most masked positions a sequence may hold
	dropout *rand.Rand
	eval    *bertEval // built on first use
}

// bertGraph is one built encoder: its inputs' values, which feed fills, and
// its logits.
type bertGraph struct {
	rows    int // sequences per run
	ids     *tensor.Dense
	seg     *tensor.Dense
	mask    *tensor.Dense   // [rows·heads, T, T] additive
	gather  *tensor.Dense   // MLM: the flat token rows whose logits are scored
	drops   []*tensor.Dense // dropout masks, train graphs only
	target  *tensor.Dense   // train graphs: weights per logit row and class
	inputs  []*G.Node
	logits  *G.Node
	outputs int // logit columns
	// want is, per logit row, the class it should predict, or −1 where it
	// scores nothing (an unmasked slot, a padding row). feed fills it;
	// the training targets and Evaluate's scores both read it.
	want []int
}

// streamDropout is the second PCG seed of the dropout masks ("drop").
const streamDropout = 0x64726f70

// MaskedPerSequence is the most tokens of a seq-token sequence that an MLM
// dataset may mask: 15% of it, rounded up.
func MaskedPerSequence(seq int) int { return (seq*mlmMaskPercent + 99) / 100 }

// checkBERT validates an encoder for rows shaped like ds, on either
// engine, and returns its width, heads, layers and sequence length.
func checkBERT(cfg ModelConfig, ds *Dataset) (d, heads, layers, seq int, err error) {
	if err := cfg.Validate(); err != nil {
		return 0, 0, 0, 0, err
	}
	d, heads, layers = cmp.Or(cfg.Width, DefaultBERTWidth), cmp.Or(cfg.Heads, DefaultBERTHeads), cmp.Or(cfg.Layers, DefaultBERTLayers)
	ff := 4 * d
	seq = ds.Dim
	if ds.MLM {
		seq = ds.Dim / 2
	}
	switch {
	case ds.Vocab < len(text.Specials)+1 || ds.Vocab > text.MaxVocab:
		return 0, 0, 0, 0, fmt.Errorf("model: bert needs token data; dataset %q has vocabulary size %d", ds.Name, ds.Vocab)
	case seq < 2 || seq > maxBERTSeq || ds.MLM && ds.Dim%2 != 0:
		return 0, 0, 0, 0, fmt.Errorf("model: bert sequence length %d, want 2..%d", seq, maxBERTSeq)
	case d < 1 || d > maxWidth/4 || heads < 1 || d%heads != 0:
		return 0, 0, 0, 0, fmt.Errorf("model: bert width %d with %d heads: the width must be a multiple of the heads", d, heads)
	case layers < 1 || layers > maxBERTLayers:
		return 0, 0, 0, 0, fmt.Errorf("model: bert layers %d, want 1..%d", layers, maxBERTLayers)
	case !(cfg.Dropout >= 0 && cfg.Dropout < 1):
		return 0, 0, 0, 0, fmt.Errorf("model: dropout %v, want [0, 1)", cfg.Dropout)
	case !ds.MLM && (ds.Classes < 2 || ds.Classes > 256):
		return 0, 0, 0, 0, fmt.Errorf("model: classes=%d, want 2..256", ds.Classes)
	}
	// The largest activations: attention scores, the feed-forward layer,
	// the MLM logits. A config from a peer must not make us allocate
	// gigabytes before anything runs.
	for _, a := range []struct {
		what string
		n    int
	}{{"attention scores (batch·heads·seq²)", cfg.Batch * heads * seq * seq}, {"feed-forward activations", cfg.Batch * seq * ff},
		{"masked-token logits", cfg.Batch * MaskedPerSequence(seq) * ds.Vocab}} {
		if a.n > maxActivations {
			return 0, 0, 0, 0, fmt.Errorf("model: %s need %d values, more than %d: lower the batch or the sequence length", a.what, a.n, maxActivations)
		}
	}
	return d, heads, layers, seq, nil
}

// NewBERT builds an encoder for rows shaped like ds (see BERT): its
// Vocab, Dim and MLM flag decide the vocabulary, sequence length and head.
func NewBERT(cfg ModelConfig, ds *Dataset) (*BERT, error) {
	d, heads, layers, seq, err := checkBERT(cfg, ds)
	if err != nil {
		return nil, err
	}
	ff := 4 * d
	m := &BERT{cfg: cfg, vocab: ds.Vocab, seq: seq, mlm: ds.MLM, perSeq: MaskedPerSequence(seq),
		dropout: rand.New(rand.NewPCG(cfg.Seed, streamDropout))}
	m.cfg.Width, m.cfg.Heads, m.cfg.Layers = d, heads, layers
	specs := bertSpecs(ds.Vocab, seq, d, ff, layers, ds.MLM, ds.Classes)
	build := func(g *G.ExprGraph, p []*G.Node) (*G.Node, []*G.Node, feedFunc, error) {
		bg, err := m.graph(g, p, cfg.Batch, true)
		if err != nil {
			return nil, nil, nil, err
		}
		t := G.NewTensor(g, tensor.Float32, 2, G.WithShape(bg.target.Shape()...), G.WithName("target"), G.WithValue(bg.target))
		cost, err := weightedCrossEntropy(bg.logits, t)
		if err != nil {
			return nil, nil, nil, err
		}
		return cost, append(bg.inputs, t), func(x []float32, y []uint8) error { return m.feed(bg, x, y, true) }, nil
	}
	g, err := newGraphNet(specs, cfg.Batch, ds.Dim, max(ds.Classes, 2), cfg.Seed, build)
	if err != nil {
		return nil, err
	}
	m.graphNet = g
	return m, nil
}

// graph builds the encoder and head for rows sequences on g.
func (m *BERT) graph(g *G.ExprGraph, p []*G.Node, rows int, train bool) (_ *bertGraph, err error) {
	T, d, heads := m.seq, m.cfg.Width, m.cfg.Heads
	N := rows * T
	bg := &bertGraph{rows: rows}
	input := func(name string, v *tensor.Dense) *G.Node {
		n := G.NewTensor(g, v.Dtype(), v.Dims(), G.WithShape(v.Shape()...), G.WithName(name), G.WithValue(v))
		bg.inputs = append(bg.inputs, n)
		return n
	}
	bg.ids = tensor.New(tensor.WithShape(N), tensor.Of(tensor.Int))
	bg.seg = tensor.New(tensor.WithShape(N), tensor.Of(tensor.Int))
	bg.mask = tensor.New(tensor.WithShape(rows*heads, T, T), tensor.Of(tensor.Float32))
	ids, seg, mask := input("ids", bg.ids), input("segments", bg.seg), input("mask", bg.mask)
	dropout := func(x *G.Node) (*G.Node, error) {
		if !train || m.cfg.Dropout == 0 {
			return x, nil
		}
		v := tensor.New(tensor.WithShape(x.Shape()...), tensor.Of(tensor.Float32))
		bg.drops = append(bg.drops, v)
		return G.HadamardProd(x, input(fmt.Sprintf("dropout%d", len(bg.drops)), v))
	}
	next := 0
	take := func(k int) []*G.Node { next += k; return p[next-k : next] }

	emb := take(5)
	h, err := embed(emb[0], ids)
	if err != nil {
		return nil, err
	}
	if h, err = G.Reshape(h, tensor.Shape{rows, T, d}); err != nil {
		return nil, err
	}
	pos, err := G.Reshape(emb[1], tensor.Shape{1, T, d})
	if err != nil {
		return nil, err
	}
	if h, err = G.BroadcastAdd(h, pos, nil, []byte{0}); err != nil {
		return nil, err
	}
	if h, err = G.Reshape(h, tensor.Shape{N, d}); err != nil {
		return nil, err
	}
	sg, err := embed(emb[2], seg)
	if err != nil {
		return nil, err
	}
	if h, err = G.Add(h, sg); err != nil {
		return nil, err
	}
	if h, err = layerNorm(h, emb[3], emb[4], layerNormEps); err != nil {
		return nil, err
	}
	if h, err = dropout(h); err != nil {
		return nil, err
	}
	for range m.cfg.Layers {
		lp := take(16)
		a, err := attention(h, lp[:8], mask, rows, T, heads)
		if err != nil {
			return nil, err
		}
		if a, err = dropout(a); err != nil {
			return nil, err
		}
		if a, err = G.Add(h, a); err != nil {
			return nil, err
		}
		if h, err = layerNorm(a, lp[8], lp[9], layerNormEps); err != nil {
			return nil, err
		}
		f, err := affine(h, lp[10], lp[11])
		if err != nil {
			return nil, err
		}
		if f, err = gelu(f); err != nil {
			return nil, err
		}
		if f, err = affine(f, lp[12], lp[13]); err != nil {
			return nil, err
		}
		if f, err = dropout(f); err != nil {
			return nil, err
		}
		if f, err = G.Add(h, f); err != nil {
			return nil, err
		}
		if h, err = layerNorm(f, lp[14], lp[15], layerNormEps); err != nil {
			return nil, err
		}
	}
	head := p[next:]
	if m.mlm {
		bg.gather = tensor.New(tensor.WithShape(rows*m.perSeq), tensor.Of(tensor.Int))
		at, err := embed(h, input("gather", bg.gather)) // [rows·perSeq, d]
		if err != nil {
			return nil, err
		}
		if at, err = affine(at, head[0], head[1]); err != nil {
			return nil, err
		}
		if at, err = gelu(at); err != nil {
			return nil, err
		}
		if at, err = layerNorm(at, head[2], head[3], layerNormEps); err != nil {
			return nil, err
		}
		et, err := G.Transpose(emb[0])
		if err != nil {
			return nil, err
		}
		if bg.logits, err = affine(at, et, head[4]); err != nil {
			return nil, err
		}
	} else {
		cls, err := G.Reshape(h, tensor.Shape{rows, T * d})
		if err != nil {
			return nil, err
		}
		if cls, err = G.Slice(cls, nil, G.S(0, d)); err != nil { // the [CLS] position
			return nil, err
		}
		if cls, err = affine(cls, head[0], head[1]); err != nil {
			return nil, err
		}
		if cls, err = G.Tanh(cls); err != nil {
			return nil, err
		}
		if bg.logits, err = affine(cls, head[2], head[3]); err != nil {
			return nil, err
		}
	}
	bg.outputs = bg.logits.Shape()[1]
	bg.want = make([]int, bg.logits.Shape()[0])
	if train {
		bg.target = tensor.New(tensor.WithShape(bg.logits.Shape()...), tensor.Of(tensor.Float32))
	}
	return bg, nil
}

// feed fills bg's inputs from rows of x (and labels y), rows beyond len(y)
// as padding. It checks every id first: tokens come from files and peers.
func (m *BERT) feed(bg *bertGraph, x []float32, y []uint8, train bool) error {
	ids, seg, mask := bg.ids.Data().([]int), bg.seg.Data().([]int), bg.mask.Data().([]float32)
	var gather []int
	if m.mlm {
		gather = bg.gather.Data().([]int)
	}
	rs := bertRows{vocab: m.vocab, seq: m.seq, mlm: m.mlm, perSeq: m.perSeq, classes: bg.outputs}
	if err := rs.fill(x, y, bg.rows, ids, seg, gather, bg.want); err != nil {
		return err
	}
	T := m.seq
	clear(mask)
	for i, id := range ids {
		if id == text.PadID {
			r, t := i/T, i%T
			for h := range m.cfg.Heads {
				for q := range T {
					mask[((r*m.cfg.Heads+h)*T+q)*T+t] = maskedLogit
				}
			}
		}
	}
	if train {
		// The loss is the mean cross-entropy over the rows that score.
		target := bg.target.Data().([]float32)
		clear(target)
		count := 0
		for _, w := range bg.want {
			if w >= 0 {
				count++
			}
		}
		for i, w := range bg.want {
			if w >= 0 {
				target[i*bg.outputs+w] = 1 / float32(count)
			}
		}
	}
	if train && m.cfg.Dropout > 0 {
		for _, d := range bg.drops {
			fillDropout(m.dropout, m.cfg.Dropout, d.Data().([]float32))
		}
	}
	return nil
}

// bertRows turns dataset rows into an encoder's per-token and per-logit-row
// inputs; both engines use it, so they see the same batch.
type bertRows struct {
	vocab, seq int
	mlm        bool
	perSeq     int // MLM: scored slots per sequence
	classes    int // classification: labels are 0..classes−1
}

// fill sets, for rows sequences from x (and labels y; rows beyond len(y)
// are padding): ids and seg per token (segment 1 after the first [SEP]),
// and per logit row want (the class, or −1 where nothing is scored) and,
// for MLM, gather (the flat token each slot reads). It checks every id
// and label first: tokens come from files and peers.
func (b bertRows) fill(x []float32, y []uint8, rows int, ids, seg, gather, want []int) error {
	T := b.seq
	rowLen := T
	if b.mlm {
		rowLen = 2 * T
	}
	n := len(y)
	for i, v := range x[:n*rowLen] {
		lo := float32(0)
		if b.mlm && i%rowLen >= T {
			lo = -1
		}
		if !(v >= lo && v < float32(b.vocab)) || v != float32(int(v)) {
			return fmt.Errorf("model: row %d, position %d: token %v is not an id in 0..%d", i/rowLen, i%rowLen, v, b.vocab-1)
		}
	}
	if !b.mlm {
		for i, c := range y {
			if int(c) >= b.classes {
				return fmt.Errorf("model: label %d at row %d out of range 0..%d", c, i, b.classes-1)
			}
		}
	}
	for r := range rows {
		s := 0
		for t := range T {
			id := text.PadID
			if r < n {
				id = int(x[r*rowLen+t])
			}
			ids[r*T+t] = id
			seg[r*T+t] = s
			if id == text.SepID {
				s = 1
			}
		}
	}
	if !b.mlm {
		for r := range want[:rows] {
			want[r] = -1
			if r < n {
				want[r] = int(y[r])
			}
		}
		return nil
	}
	for r := range rows {
		slots, k := want[r*b.perSeq:(r+1)*b.perSeq], 0
		for t := 0; r < n && t < T; t++ {
			if tgt := x[r*rowLen+T+t]; tgt >= 0 {
				if k == b.perSeq {
					return fmt.Errorf("model: row %d masks more than %d tokens", r, b.perSeq)
				}
				gather[r*b.perSeq+k], slots[k] = r*T+t, int(tgt)
				k++
			}
		}
		for ; k < b.perSeq; k++ {
			gather[r*b.perSeq+k], slots[k] = r*T, -1 // scored nowhere
		}
	}
	return nil
}

// fillDropout draws a dropout mask from r: 0 with probability p, else
// 1/(1−p), one draw per value in order, so that both engines given the
// same seed drop the same units.
func fillDropout(r *rand.Rand, p float64, mask []float32) {
	keep := float32(1 / (1 - p))
	for i := range mask {
		mask[i] = keep
		if r.Float64() < p {
			mask[i] = 0
		}
	}
}

// SeedDropout restarts the dropout masks from seed. A swarm node seeds
// them with its own peer ID, so peers training one replica do not drop the
// same units in lockstep; the initial weights stay those of the run seed.
func (m *BERT) SeedDropout(seed uint64) { m.dropout = rand.New(rand.NewPCG(seed, streamDropout)) }

// Evaluate returns accuracy and mean cross-entropy on ds without dropout:
// of the masked tokens for MLM, of the rows for classification.
func (m *BERT) Evaluate(ds *Dataset) (acc, loss float64, err error) {
	if err := ds.Validate(); err != nil {
		return 0, 0, err
	}
	if ds.Dim != m.dim || ds.MLM != m.mlm || ds.Vocab > m.vocab {
		return 0, 0, fmt.Errorf("evaluate: dataset %q (%d values per row, vocabulary %d) does not fit this model (%d, %d)", ds.Name, ds.Dim, ds.Vocab, m.dim, m.vocab)
	}
	if m.eval == nil {
		if err := m.buildEval(); err != nil {
			return 0, 0, err
		}
	}
	e := m.eval
	m.copyParamsTo(e.evalParams)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("evaluate: gorgonia panic: %v", r)
		}
	}()
	var t tally
	for lo := 0; lo < ds.N; lo += e.rows {
		rows := min(e.rows, ds.N-lo)
		x, y := ds.X[lo*ds.Dim:(lo+rows)*ds.Dim], ds.Y[lo:lo+rows]
		if err := m.feed(e.bertGraph, x, y, false); err != nil {
			return 0, 0, err
		}
		if err := letInputs(e.inputs); err != nil {
			return 0, 0, err
		}
		if err := e.vm.RunAll(); err != nil {
			return 0, 0, fmt.Errorf("evaluate: forward: %w", err)
		}
		z, ok := e.out.Data().([]float32)
		e.vm.Reset()
		if !ok {
			return 0, 0, errors.New("evaluate: logits are not float32")
		}
		t.addWanted(z, e.outputs, e.want)
	}
	return t.result(ds.Name)
}

// bertEval is the forward-only graph Evaluate runs.
type bertEval struct {
	*bertGraph
	evalParams []*G.Node
	out        G.Value
	vm         G.VM
}

func (m *BERT) buildEval() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("model: building eval graph: gorgonia panic: %v", r)
		}
	}()
	g := G.NewGraph()
	p := paramNodes(g, m.specs, m.offs, make([]float32, m.n))
	bg, err := m.graph(g, p, bertEvalRows, false)
	if err != nil {
		return fmt.Errorf("model: building eval graph: %w", err)
	}
	e := &bertEval{bertGraph: bg, evalParams: p}
	G.Read(bg.logits, &e.out)
	e.vm = G.NewTapeMachine(g)
	m.eval = e
	return nil
}

// Close releases both machines.
func (m *BERT) Close() error {
	if m.eval == nil {
		return m.graphNet.Close()
	}
	return errors.Join(m.graphNet.Close(), m.eval.vm.Close())
}
