package trainer

import (
	"fmt"
	"math/rand/v2"

	"github.com/swarmtrain/swarmtrain/trainer/engine"
	"github.com/swarmtrain/swarmtrain/trainer/text"
)

// nativeBERT is the BERT on trainer/engine: the same tensors, names,
// initialisation, batch handling (bertRows), dropout stream and loss as
// the gorgonia BERT, so checkpoints, averaging, freezing, export and
// fine-tuning from a pre-trained checkpoint do not see which one ran.
type nativeBERT struct {
	nativeParams
	cfg     ModelConfig
	net     *engine.BERT
	rows    bertRows
	dim     int // values per dataset row
	batch   int
	heads   int
	dropout *rand.Rand
}

func newNativeBERT(cfg ModelConfig, ds *Dataset) (*nativeBERT, error) {
	d, heads, layers, seq, err := checkBERT(cfg, ds)
	if err != nil {
		return nil, err
	}
	specs := bertSpecs(ds.Vocab, seq, d, 4*d, layers, ds.MLM, ds.Classes)
	_, n, err := layout(specs)
	if err != nil {
		return nil, err
	}
	ec := engine.BERTConfig{Vocab: ds.Vocab, Seq: seq, Width: d, Heads: heads, Layers: layers, FF: 4 * d,
		Rows: max(cfg.Batch, bertEvalRows), Dropout: cfg.Dropout > 0, Eps: layerNormEps}
	rs := bertRows{vocab: ds.Vocab, seq: seq, mlm: ds.MLM, perSeq: MaskedPerSequence(seq), classes: ds.Classes}
	if ds.MLM {
		ec.PerSeq = rs.perSeq
	} else {
		ec.Classes = ds.Classes
	}
	net, err := engine.NewBERT(ec)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if len(net.Params()) != n {
		return nil, fmt.Errorf("model: native bert has %d parameters, the tensors %d", len(net.Params()), n)
	}
	copy(net.Params(), initSpecs(specs, cfg.Seed, n))
	m := &nativeBERT{nativeParams: nativeParams{specs: specs, params: net.Params(), grad: net.Grads()}, cfg: cfg, net: net, rows: rs,
		dim: ds.Dim, batch: cfg.Batch, heads: heads, dropout: rand.New(rand.NewPCG(cfg.Seed, streamDropout))}
	m.cfg.Width, m.cfg.Heads, m.cfg.Layers = d, heads, layers
	return m, nil
}

// SeedDropout restarts the dropout masks from seed (see BERT.SeedDropout).
func (m *nativeBERT) SeedDropout(seed uint64) { m.dropout = rand.New(rand.NewPCG(seed, streamDropout)) }

// fill loads rows sequences (len(y) of them real) into the engine's input.
func (m *nativeBERT) fill(x []float32, y []uint8, rows int) error {
	in := m.net.Input()
	if err := m.rows.fill(x, y, rows, in.IDs, in.Segments, in.Gather, in.Want); err != nil {
		return err
	}
	for i, id := range in.IDs[:rows*m.rows.seq] {
		in.Pad[i] = id == text.PadID
	}
	return nil
}

func (m *nativeBERT) ComputeGradients(x []float32, y []uint8) (float32, error) {
	if len(y) != m.batch || len(x) != m.batch*m.dim {
		return 0, fmt.Errorf("model: batch has len(x)=%d len(y)=%d, want %d and %d", len(x), len(y), m.batch*m.dim, m.batch)
	}
	if err := m.fill(x, y, m.batch); err != nil {
		return 0, err
	}
	if m.cfg.Dropout > 0 { // the gorgonia graph's masks, drawn in its order
		for _, d := range m.net.Input().Drops {
			fillDropout(m.dropout, m.cfg.Dropout, d[:m.batch*m.rows.seq*m.cfg.Width])
		}
	}
	loss, err := m.net.Step(m.batch)
	if err != nil {
		clear(m.grad)
		return 0, fmt.Errorf("model: %w", err)
	}
	return loss, nil
}

func (m *nativeBERT) Evaluate(ds *Dataset) (acc, loss float64, err error) {
	if err := ds.Validate(); err != nil {
		return 0, 0, err
	}
	if ds.Dim != m.dim || ds.MLM != m.rows.mlm || ds.Vocab > m.rows.vocab {
		return 0, 0, fmt.Errorf("evaluate: dataset %q (%d values per row, vocabulary %d) does not fit this model (%d, %d)", ds.Name, ds.Dim, ds.Vocab, m.dim, m.rows.vocab)
	}
	chunk := m.net.Config().Rows
	C := m.net.Outputs()
	var t tally
	for lo := 0; lo < ds.N; lo += chunk {
		rows := min(chunk, ds.N-lo)
		if err := m.fill(ds.X[lo*ds.Dim:(lo+rows)*ds.Dim], ds.Y[lo:lo+rows], rows); err != nil {
			return 0, 0, err
		}
		z, err := m.net.Forward(rows)
		if err != nil {
			return 0, 0, fmt.Errorf("evaluate: %w", err)
		}
		t.addWanted(z, C, m.net.Input().Want[:len(z)/C])
	}
	return t.result(ds.Name)
}
