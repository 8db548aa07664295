package engine

import (
	"fmt"
	"sync"

	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// BERTConfig is the shape of a BERT encoder and its head.
type BERTConfig struct {
	Vocab, Seq, Width, Heads, Layers, FF int
	// Classes is the classification head's number of classes; 0 means the
	// masked-language-modelling head, scoring PerSeq gathered positions of
	// each sequence against the vocabulary.
	Classes, PerSeq int
	Rows            int  // the most sequences one call takes
	Dropout         bool // Step applies the masks of Input.Drops
	Eps             float32
}

// BERTInput is what the caller fills before Forward or Step, for the
// first rows sequences (token i of sequence b at b·Seq + i).
type BERTInput struct {
	IDs, Segments []int  // per token: 0..Vocab−1, 0 or 1
	Pad           []bool // per token: never attended to
	// Gather (MLM) names, per scored slot (PerSeq per sequence), the token
	// whose output the head reads. Want is, per logit row (a slot, or a
	// sequence for classification), the class it should predict, or −1
	// where nothing is scored.
	Gather, Want []int
	// Drops are the dropout masks (0, or 1/(1−p)), each [rows·Seq, Width],
	// in the order: the embedding, then per layer the attention branch and
	// the feed-forward branch. Step uses them when Config.Dropout is set.
	Drops [][]float32
}

// BERT is trainer's BERT encoder (post-norm layers of multi-head attention
// and a GELU feed-forward, dropout on every residual branch) with an MLM
// or a classification head, forward and backward written by hand over the
// flat parameter vector in trainer's tensor order (bertSpecs there).
// Buffers are planned in NewBERT; Forward and Step allocate nothing. A
// BERT is not safe for concurrent use.
type BERT struct {
	cfg     BERTConfig
	params  []float32
	grads   []float32
	p, g    bertWeights // views of params and grads
	in      BERTInput
	att     *attention
	wg      sync.WaitGroup
	gelu    geluJob
	ln      lnJob
	ce      ceJob
	keyBias []float32
	// Activations, [Rows·Seq, ·] unless said.
	embNorm  lnCache
	hs       [][]float32 // hs[l]: input of layer l; hs[Layers]: the encoder's output
	layers   []layerActs
	dh, dtmp []float32
	dff      []float32
	dq, dk   []float32
	dv, dctx []float32
	dprobs   []float32
	head     headActs
}

type lnCache struct{ xhat, rstd []float32 }

type layerActs struct {
	q, k, v, ctx, probs []float32
	ln1, ln2            lnCache
	h1                  []float32 // after the attention block's norm
	f1, ft, f1g         []float32 // feed-forward pre-activation, its tanh, its GELU
	tmp                 []float32
}

// headActs: MLM uses at..logits over Rows·PerSeq slots; classification
// uses at (the [CLS] rows), z (tanh pooler) and logits over Rows.
type headActs struct {
	at, z, zt, gz, u []float32
	ln               lnCache
	logits, dlogits  []float32
	dat, dz          []float32
	losses           []float64 // per logit row
}

type bertLayer struct{ wq, bq, wk, bk, wv, bv, wo, bo, ag, ab, w1, b1, w2, b2, fg, fb []float32 }

type bertWeights struct {
	tok, pos, seg, eg, eb []float32
	layers                []bertLayer
	head                  [][]float32 // MLM: transform w, b, norm g, b, bias; classify: pool w, b, classify w, b
}

// bertSizes lists the tensor sizes in flat order.
func bertSizes(c BERTConfig) []int {
	d, ff := c.Width, c.FF
	s := []int{c.Vocab * d, c.Seq * d, 2 * d, d, d}
	for range c.Layers {
		s = append(s, d*d, d, d*d, d, d*d, d, d*d, d, d, d, d*ff, ff, ff*d, d, d, d)
	}
	if c.Classes == 0 {
		return append(s, d*d, d, d, d, c.Vocab)
	}
	return append(s, d*d, d, d*c.Classes, c.Classes)
}

func splitWeights(flat []float32, c BERTConfig) bertWeights {
	var parts [][]float32
	off := 0
	for _, n := range bertSizes(c) {
		parts = append(parts, flat[off:off+n:off+n])
		off += n
	}
	w := bertWeights{tok: parts[0], pos: parts[1], seg: parts[2], eg: parts[3], eb: parts[4]}
	parts = parts[5:]
	for range c.Layers {
		l := parts[:16]
		w.layers = append(w.layers, bertLayer{l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], l[8], l[9], l[10], l[11], l[12], l[13], l[14], l[15]})
		parts = parts[16:]
	}
	w.head = parts
	return w
}

// MaxPlan caps the float32 values NewBERT allocates (16 GiB): a shape
// from a peer must not exhaust memory before anything runs.
const MaxPlan = 1 << 32

// planned is the number of float32 values NewBERT allocates for c with n
// parameters, counted in int64-safe steps (each factor is capped by the
// caller's shape checks, the sum is not).
func planned(c BERTConfig, n int) int {
	N, d, ff, T := c.Rows*c.Seq, c.Width, c.FF, c.Seq
	pairs := c.Rows * c.Heads * T * T
	perLayer := 8*N*d + 2*N + 3*N*ff + pairs + N*d
	slots, outs := c.Rows, c.Classes
	if c.Classes == 0 {
		slots, outs = c.Rows*c.PerSeq, c.Vocab
	}
	return 2*n + c.Layers*perLayer + (c.Layers+9)*N*d + N*ff + pairs + (1+2*c.Layers)*N*d + 10*slots*d + 2*slots*outs
}

// NewBERT plans an encoder for c.Rows sequences per call.
func NewBERT(c BERTConfig) (*BERT, error) {
	switch {
	case c.Vocab < 1 || c.Seq < 1 || c.Width < 1 || c.Heads < 1 || c.Width%c.Heads != 0 || c.Layers < 1 || c.FF < 1 || c.Rows < 1:
		return nil, fmt.Errorf("engine: BERT shape %+v: want every size ≥ 1 and the width a multiple of the heads", c)
	case c.Classes < 0 || c.Classes == 0 && c.PerSeq < 1:
		return nil, fmt.Errorf("engine: BERT head: %d classes, %d masked slots per sequence", c.Classes, c.PerSeq)
	}
	n := 0
	for _, s := range bertSizes(c) {
		n += s
	}
	if v := planned(c, n); v > MaxPlan {
		return nil, fmt.Errorf("engine: BERT %+v would plan %d values of buffers, more than %d: lower the rows, width or layers", c, v, MaxPlan)
	}
	m := &BERT{cfg: c, params: make([]float32, n), grads: make([]float32, n), att: newAttention(c.Seq, c.Width, c.Heads)}
	m.p, m.g = splitWeights(m.params, c), splitWeights(m.grads, c)
	N, d, ff, T := c.Rows*c.Seq, c.Width, c.FF, c.Seq
	buf := func(n int) []float32 { return make([]float32, n) }
	ln := func(rows int) lnCache { return lnCache{buf(rows * d), buf(rows)} }
	m.in = BERTInput{IDs: make([]int, N), Segments: make([]int, N), Pad: make([]bool, N)}
	drops := 1 + 2*c.Layers
	if !c.Dropout {
		drops = 0
	}
	for range drops {
		m.in.Drops = append(m.in.Drops, buf(N*d))
	}
	m.keyBias = buf(N)
	m.embNorm = ln(N)
	for range c.Layers + 1 {
		m.hs = append(m.hs, buf(N*d))
	}
	for range c.Layers {
		m.layers = append(m.layers, layerActs{q: buf(N * d), k: buf(N * d), v: buf(N * d), ctx: buf(N * d), probs: buf(c.Rows * c.Heads * T * T),
			ln1: ln(N), ln2: ln(N), h1: buf(N * d), f1: buf(N * ff), ft: buf(N * ff), f1g: buf(N * ff), tmp: buf(N * d)})
	}
	m.dh, m.dtmp, m.dff = buf(N*d), buf(N*d), buf(N*ff)
	m.dq, m.dk, m.dv, m.dctx = buf(N*d), buf(N*d), buf(N*d), buf(N*d)
	m.dprobs = buf(c.Rows * c.Heads * T * T)
	slots, outs := c.Rows, c.Classes
	if c.Classes == 0 {
		slots, outs = c.Rows*c.PerSeq, c.Vocab
		m.in.Gather = make([]int, slots)
		m.head = headActs{at: buf(slots * d), z: buf(slots * d), zt: buf(slots * d), gz: buf(slots * d), u: buf(slots * d), ln: ln(slots)}
	} else {
		m.head = headActs{at: buf(slots * d), z: buf(slots * d)}
	}
	m.in.Want = make([]int, slots)
	m.head.logits, m.head.dlogits = buf(slots*outs), buf(slots*outs)
	m.head.dat, m.head.dz = buf(slots*d), buf(slots*d)
	m.head.losses = make([]float64, slots)
	return m, nil
}

// Params is the flat parameter vector, which the caller reads and writes.
func (m *BERT) Params() []float32 { return m.params }

// Grads is the flat gradient of the mean loss of the last Step.
func (m *BERT) Grads() []float32 { return m.grads }

// Input is the caller's to fill before each call.
func (m *BERT) Input() *BERTInput { return &m.in }

// Config returns the plan's shape.
func (m *BERT) Config() BERTConfig { return m.cfg }

// Outputs is the width of a logit row: the vocabulary or the classes.
func (m *BERT) Outputs() int {
	if m.cfg.Classes == 0 {
		return m.cfg.Vocab
	}
	return m.cfg.Classes
}

// slots is the number of logit rows for rows sequences.
func (m *BERT) slots(rows int) int {
	if m.cfg.Classes == 0 {
		return rows * m.cfg.PerSeq
	}
	return rows
}

// check refuses input that would index out of range: it may come from
// peers and files.
func (m *BERT) check(rows int) error {
	c := m.cfg
	if rows < 1 || rows > c.Rows {
		return fmt.Errorf("engine: BERT call with %d sequences, want 1..%d", rows, c.Rows)
	}
	N := rows * c.Seq
	for i, id := range m.in.IDs[:N] {
		if id < 0 || id >= c.Vocab {
			return fmt.Errorf("engine: BERT token %d (sequence %d, position %d) is not an id in 0..%d", id, i/c.Seq, i%c.Seq, c.Vocab-1)
		}
		if s := m.in.Segments[i]; s != 0 && s != 1 {
			return fmt.Errorf("engine: BERT segment %d at sequence %d, position %d, want 0 or 1", s, i/c.Seq, i%c.Seq)
		}
	}
	for i, g := range m.in.Gather[:min(len(m.in.Gather), rows*c.PerSeq)] {
		if g < 0 || g >= N {
			return fmt.Errorf("engine: BERT gathers token %d for slot %d, want 0..%d", g, i, N-1)
		}
	}
	for i, w := range m.in.Want[:m.slots(rows)] {
		if w < -1 || w >= m.Outputs() {
			return fmt.Errorf("engine: BERT label %d at row %d out of range 0..%d", w, i, m.Outputs()-1)
		}
	}
	return nil
}

// Forward computes the logits of the first rows sequences of the input,
// without dropout: [slots, Outputs()], valid until the next call.
func (m *BERT) Forward(rows int) ([]float32, error) {
	if err := m.check(rows); err != nil {
		return nil, err
	}
	m.forward(rows, false)
	return m.head.logits[:m.slots(rows)*m.Outputs()], nil
}

// Step runs forward and backward on the first rows sequences and leaves
// the gradient of the mean cross-entropy over the scored rows in Grads
// (zero where nothing is scored, or on error).
func (m *BERT) Step(rows int) (float32, error) {
	clear(m.grads)
	if err := m.check(rows); err != nil {
		return 0, err
	}
	m.forward(rows, m.cfg.Dropout)
	loss := m.loss(rows)
	m.backward(rows, m.cfg.Dropout)
	return loss, nil
}

func (m *BERT) forward(rows int, drop bool) {
	c := m.cfg
	T, d, ff := c.Seq, c.Width, c.FF
	N := rows * T
	for i, pad := range m.in.Pad[:N] {
		m.keyBias[i] = 0
		if pad {
			m.keyBias[i] = maskedLogit
		}
	}
	h := m.hs[0]
	embedForward(m.p.tok, m.p.pos, m.p.seg, m.in.IDs, m.in.Segments, h, N, T, d)
	m.lnForward(h, m.p.eg, m.p.eb, h, m.embNorm.xhat, m.embNorm.rstd, N, d, c.Eps)
	if drop {
		mulInto(h[:N*d], m.in.Drops[0])
	}
	for l := range c.Layers {
		w, a, x := &m.p.layers[l], &m.layers[l], m.hs[l]
		denseForward(x, w.wq, w.bq, a.q, N, d, d, false)
		denseForward(x, w.wk, w.bk, a.k, N, d, d, false)
		denseForward(x, w.wv, w.bv, a.v, N, d, d, false)
		at := m.att
		at.q, at.k, at.v, at.ctx, at.probs, at.keyBias, at.backward = a.q, a.k, a.v, a.ctx, a.probs, m.keyBias, false
		parallel(rows*c.Heads, 4, at, &m.wg)
		denseForward(a.ctx, w.wo, w.bo, a.tmp, N, d, d, false)
		if drop {
			mulInto(a.tmp[:N*d], m.in.Drops[1+2*l])
		}
		addInto(a.tmp[:N*d], x)
		m.lnForward(a.tmp, w.ag, w.ab, a.h1, a.ln1.xhat, a.ln1.rstd, N, d, c.Eps)
		denseForward(a.h1, w.w1, w.b1, a.f1, N, d, ff, false)
		m.gelu = geluJob{x: a.f1, t: a.ft, y: a.f1g, width: ff}
		parallel(N, 64, &m.gelu, &m.wg)
		denseForward(a.f1g, w.w2, w.b2, a.tmp, N, ff, d, false)
		if drop {
			mulInto(a.tmp[:N*d], m.in.Drops[2+2*l])
		}
		addInto(a.tmp[:N*d], a.h1)
		m.lnForward(a.tmp, w.fg, w.fb, m.hs[l+1], a.ln2.xhat, a.ln2.rstd, N, d, c.Eps)
	}
	out, hd, hw := m.hs[c.Layers], &m.head, m.p.head
	S := m.slots(rows)
	if c.Classes == 0 {
		gatherRows(out, m.in.Gather[:S], hd.at, d)
		denseForward(hd.at, hw[0], hw[1], hd.z, S, d, d, false)
		geluForward(hd.z[:S*d], hd.zt, hd.gz)
		m.lnForward(hd.gz, hw[2], hw[3], hd.u, hd.ln.xhat, hd.ln.rstd, S, d, c.Eps)
		for r := range S { // logits = u·tokᵀ + bias: the decoder is tied to the embedding
			copy(hd.logits[r*c.Vocab:(r+1)*c.Vocab], hw[4])
		}
		kernels.Sgemm(false, true, S, c.Vocab, d, 1, hd.u, d, m.p.tok, d, 1, hd.logits, c.Vocab)
		return
	}
	for r := range rows { // the [CLS] position
		copy(hd.at[r*d:(r+1)*d], out[r*T*d:])
	}
	denseForward(hd.at, hw[0], hw[1], hd.z, rows, d, d, false)
	for i, v := range hd.z[:rows*d] {
		hd.z[i] = tanh32(v)
	}
	denseForward(hd.z, hw[2], hw[3], hd.logits, rows, d, c.Classes, false)
}

// loss is the mean cross-entropy over the scored rows; it leaves the
// gradient at the logits in dlogits.
func (m *BERT) loss(rows int) float32 {
	S, C := m.slots(rows), m.Outputs()
	count := 0
	for _, w := range m.in.Want[:S] {
		if w >= 0 {
			count++
		}
	}
	m.ce = ceJob{z: m.head.logits, dz: m.head.dlogits, want: m.in.Want[:S], classes: C, count: count, losses: m.head.losses}
	parallel(S, 8, &m.ce, &m.wg)
	return sumLosses(m.head.losses[:S], count)
}

func (m *BERT) backward(rows int, drop bool) {
	c := m.cfg
	T, d, ff := c.Seq, c.Width, c.FF
	N, S := rows*T, m.slots(rows)
	hd, hw, hg := &m.head, m.p.head, m.g.head
	dh := m.dh[:N*d]
	clear(dh)
	if c.Classes == 0 {
		// logits = u·tokᵀ + bias.
		colSum(hd.dlogits, hg[4], S, c.Vocab)
		du := hd.dz
		kernels.Sgemm(false, false, S, d, c.Vocab, 1, hd.dlogits, c.Vocab, m.p.tok, d, 0, du, d)
		kernels.Sgemm(true, false, c.Vocab, d, S, 1, hd.dlogits, c.Vocab, hd.u, d, 1, m.g.tok, d)
		m.lnBackward(du, hd.ln.xhat, hd.ln.rstd, hw[2], du, hg[2], hg[3], S, d)
		geluBackward(hd.z[:S*d], hd.zt, du)
		affineBackward(hd.at, hw[0], du, hg[0], hg[1], hd.dat, S, d, d, false)
		scatterAddRows(hd.dat, m.in.Gather[:S], dh, d)
	} else {
		dz := hd.dz
		affineBackward(hd.z, hw[2], hd.dlogits, hg[2], hg[3], dz, rows, d, c.Classes, false)
		for i, v := range hd.z[:rows*d] {
			dz[i] *= 1 - v*v
		}
		affineBackward(hd.at, hw[0], dz, hg[0], hg[1], hd.dat, rows, d, d, false)
		for r := range rows {
			copy(dh[r*T*d:r*T*d+d], hd.dat[r*d:(r+1)*d])
		}
	}
	for l := c.Layers - 1; l >= 0; l-- {
		w, gw, a, x := &m.p.layers[l], &m.g.layers[l], &m.layers[l], m.hs[l]
		// dh is the gradient at this layer's output; through the second norm.
		dr := m.dtmp[:N*d]
		m.lnBackward(dh, a.ln2.xhat, a.ln2.rstd, w.fg, dr, gw.fg, gw.fb, N, d)
		// dr reaches h1 directly and through the feed-forward branch.
		dbranch := dh // dh is free again
		copy(dbranch, dr)
		if drop {
			mulInto(dbranch, m.in.Drops[2+2*l])
		}
		dff := m.dff[:N*ff]
		affineBackward(a.f1g, w.w2, dbranch, gw.w2, gw.b2, dff, N, ff, d, false)
		m.gelu = geluJob{x: a.f1, t: a.ft, y: dff, width: ff, backward: true}
		parallel(N, 64, &m.gelu, &m.wg)
		affineBackward(a.h1, w.w1, dff, gw.w1, gw.b1, dr, N, d, ff, true)
		// dr is now the gradient at h1; through the first norm.
		m.lnBackward(dr, a.ln1.xhat, a.ln1.rstd, w.ag, dr, gw.ag, gw.ab, N, d)
		copy(dh, dr) // the residual: x's gradient starts as dr
		if drop {
			mulInto(dr, m.in.Drops[1+2*l])
		}
		dctx := m.dctx[:N*d]
		affineBackward(a.ctx, w.wo, dr, gw.wo, gw.bo, dctx, N, d, d, false)
		at := m.att
		at.q, at.k, at.v, at.ctx, at.probs, at.keyBias = a.q, a.k, a.v, a.ctx, a.probs, m.keyBias
		at.dq, at.dk, at.dv, at.dctx, at.dprobs, at.backward = m.dq, m.dk, m.dv, dctx, m.dprobs, true
		parallel(rows*c.Heads, 4, at, &m.wg)
		affineBackward(x, w.wq, m.dq, gw.wq, gw.bq, dh, N, d, d, true)
		affineBackward(x, w.wk, m.dk, gw.wk, gw.bk, dh, N, d, d, true)
		affineBackward(x, w.wv, m.dv, gw.wv, gw.bv, dh, N, d, d, true)
	}
	if drop {
		mulInto(dh, m.in.Drops[0])
	}
	m.lnBackward(dh, m.embNorm.xhat, m.embNorm.rstd, m.p.eg, dh, m.g.eg, m.g.eb, N, d)
	embedBackward(dh, m.in.IDs, m.in.Segments, m.g.tok, m.g.pos, m.g.seg, N, T, d)
}

// maskedLogit is added to the attention scores of padding keys, as
// trainer's gorgonia graph does.
const maskedLogit = -1e9

// affineBackward is the backward of y = x·w + b: dw = xᵀ·dy, db = Σ rows
// of dy, and dx = dy·wᵀ, added into dx when add is set.
func affineBackward(x, w, dy, dw, db, dx []float32, rows, in, out int, add bool) {
	kernels.Sgemm(true, false, in, out, rows, 1, x, in, dy, out, 0, dw, out)
	colSum(dy, db, rows, out)
	beta := float32(0)
	if add {
		beta = 1
	}
	kernels.Sgemm(false, true, rows, in, out, 1, dy, out, w, out, beta, dx, in)
}

// colSum sets dst[j] = Σ_r src[r·cols + j].
func colSum(src, dst []float32, rows, cols int) {
	clear(dst[:cols])
	for r := range rows {
		for j, v := range src[r*cols : (r+1)*cols] {
			dst[j] += v
		}
	}
}

func mulInto(dst, m []float32) {
	m = m[:len(dst)]
	for i := range dst {
		dst[i] *= m[i]
	}
}

func addInto(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += x[i]
	}
}

// geluJob runs GELU forward or backward over rows [lo, hi) of width
// values each.
type geluJob struct {
	x, t, y  []float32
	width    int
	backward bool
}

func (j *geluJob) run(lo, hi int) {
	a, b := lo*j.width, hi*j.width
	if j.backward {
		geluBackward(j.x[a:b], j.t[a:b], j.y[a:b])
		return
	}
	geluForward(j.x[a:b], j.t[a:b], j.y[a:b])
}

// lnForward is layerNormForward split over rows.
func (m *BERT) lnForward(x, g, b, y, xhat, rstd []float32, rows, d int, eps float32) {
	m.ln = lnJob{x: x, g: g, b: b, y: y, xhat: xhat, rstd: rstd, d: d, eps: eps}
	parallel(rows, 64, &m.ln, &m.wg)
}

// lnBackward is layerNormBackward with dx split over rows; the parameter
// gradients, a sum over rows, stay in one pass in row order (first: dx
// may alias dy).
func (m *BERT) lnBackward(dy, xhat, rstd, g, dx, dg, db []float32, rows, d int) {
	layerNormParamGrads(dy, xhat, dg, db, rows, d)
	m.ln = lnJob{x: dy, g: g, y: dx, xhat: xhat, rstd: rstd, d: d, backward: true}
	parallel(rows, 64, &m.ln, &m.wg)
}
