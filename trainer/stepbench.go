package trainer

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/swarmtrain/swarmtrain/trainer/text"
)

// StepBench is one shipped model configuration whose training step the
// benchmarks time: the model as swarm nodes build it, on synthetic rows of
// the real shapes.
type StepBench struct {
	Name  string
	Model ModelConfig
	Data  *Dataset
	// FLOPs is the work of one step: 3× the forward pass's multiply-adds
	// ×2 (forward, input gradient, weight gradient), the customary count.
	FLOPs float64
}

// StepBenches are the configurations the issue tracker and BENCHMARKS.md
// report: the MLP 784-512-256-10 at batch 128, the default CNN at batch 64
// and the default BERT (2 layers × 64 wide, 4 heads, 64 tokens, vocabulary
// 2000, MLM) at batch 32.
func StepBenches() []StepBench {
	r := rand.New(rand.NewPCG(1, 1))
	images := func(n int) *Dataset {
		d := &Dataset{Name: "images", N: n, Dim: 784, Classes: 10, Shape: []int{1, 28, 28}, X: make([]float32, n*784), Y: make([]uint8, n)}
		for i := range d.X {
			d.X[i] = float32(r.NormFloat64())
		}
		for i := range d.Y {
			d.Y[i] = uint8(r.IntN(10))
		}
		return d
	}
	const seq, vocab = 64, 2000
	tokens := &Dataset{Name: "tokens", N: 256, Dim: 2 * seq, Classes: 2, Vocab: vocab, MLM: true, X: make([]float32, 256*2*seq), Y: make([]uint8, 256)}
	for i := range tokens.N {
		row := tokens.X[i*2*seq : (i+1)*2*seq]
		for t := range seq {
			row[t] = float32(len(text.Specials) + r.IntN(vocab-len(text.Specials)))
			row[seq+t] = -1
		}
		for k := range MaskedPerSequence(seq) {
			t := 1 + k*6
			row[seq+t], row[t] = row[t], text.MaskID
		}
	}
	mlp := []int{784, 512, 256, 10}
	mlpFLOPs := 0.0
	for l := 0; l+1 < len(mlp); l++ {
		mlpFLOPs += 2 * float64(mlp[l]*mlp[l+1])
	}
	// CNN: two 5×5 "same" convs on 28×28 and 14×14, then 1568→128→10.
	cnnFLOPs := 2*float64(28*28*16*1*25) + 2*float64(14*14*32*16*25) + 2*float64(1568*128+128*10)
	d, ff, L, M := DefaultBERTWidth, 4*DefaultBERTWidth, DefaultBERTLayers, MaskedPerSequence(seq)
	bertFLOPs := float64(L*(4*2*seq*d*d+2*2*seq*d*ff+2*2*seq*seq*d) + M*(2*d*d+2*d*vocab))
	return []StepBench{
		{Name: "mlp-784-512-256-10-b128", Model: ModelConfig{Hidden: []int{512, 256}, Batch: 128, Seed: 1}, Data: images(1024), FLOPs: 3 * 128 * mlpFLOPs},
		{Name: "cnn-16-32-fc128-b64", Model: ModelConfig{Arch: ArchCNN, Hidden: []int{128}, Batch: 64, Seed: 1}, Data: images(512), FLOPs: 3 * 64 * cnnFLOPs},
		{Name: "bert-2x64-h4-seq64-b32-mlm", Model: ModelConfig{Arch: ArchBERT, Batch: 32, Seed: 1, Dropout: 0.1}, Data: tokens, FLOPs: 3 * 32 * bertFLOPs},
	}
}

// StepTiming is the result of running a StepBench.
type StepTiming struct {
	Name      string  `json:"name"`
	Params    int     `json:"params"`
	Steps     int     `json:"steps"`
	MsPerStep float64 `json:"ms_per_step"`
	// BestMs is the fastest single step: on a shared machine others' load
	// only slows a step down, so it is the step's own cost.
	BestMs  float64 `json:"best_ms"`
	GFLOPs  float64 `json:"gflop_per_s"`
	Samples float64 `json:"samples_per_s"`
	Engine  string  `json:"engine"`
	// Precision is the matrix products' (PrecisionFP32 or PrecisionBF16).
	Precision string `json:"precision"`
}

// engine names the engine c's model runs on.
func (c ModelConfig) engine() string {
	if c.Arch == ArchBERT {
		return EngineGorgonia
	}
	return cmp.Or(c.Engine, DefaultEngine)
}

// Prepare builds the model and returns one training step as a node runs
// it (forward and backward, AddGrads, an Adam step on the flat vectors,
// WriteParams), the parameter count, and the function that frees it all.
func (b StepBench) Prepare() (step func() error, params int, done func(), err error) {
	m, err := NewModel(b.Model, b.Data)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("%s: %w", b.Name, err)
	}
	n := m.NumParams()
	p, grads := make([]float32, n), make([]float32, n)
	m.ReadParams(p)
	opt := NewAdam(AdamBeta1, AdamBeta2, AdamEps, 0, n)
	bt := NewBatcher(b.Data, b.Model.Batch, 1)
	x, y := make([]float32, b.Model.Batch*b.Data.Dim), make([]uint8, b.Model.Batch)
	step = func() error {
		bt.Next(x, y)
		if _, err := m.ComputeGradients(x, y); err != nil {
			return fmt.Errorf("%s: %w", b.Name, err)
		}
		clear(grads)
		m.AddGrads(grads, 1)
		opt.Step(p, grads, 1e-4)
		return m.WriteParams(p)
	}
	return step, n, func() { m.Close() }, nil
}

// Run times steps training steps after one warm-up step.
func (b StepBench) Run(steps int) (StepTiming, error) {
	step, n, done, err := b.Prepare()
	if err != nil {
		return StepTiming{}, err
	}
	defer done()
	if err := step(); err != nil {
		return StepTiming{}, err
	}
	start := time.Now()
	best := time.Duration(math.MaxInt64)
	for range steps {
		t := time.Now()
		if err := step(); err != nil {
			return StepTiming{}, err
		}
		best = min(best, time.Since(t))
	}
	sec := time.Since(start).Seconds()
	return StepTiming{Name: b.Name, Params: n, Steps: steps, MsPerStep: 1000 * sec / float64(steps), BestMs: float64(best.Microseconds()) / 1000,
		GFLOPs: b.FLOPs * float64(steps) / sec / 1e9, Samples: float64(steps*b.Model.Batch) / sec, Engine: b.Model.engine(), Precision: b.Model.precision()}, nil
}
