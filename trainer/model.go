package trainer

import (
	"cmp"
	"fmt"
	"math"
)

// Caps that keep a hostile or mistyped config from allocating without bound.
const (
	maxBatch     = 1 << 16
	maxWidth     = 1 << 16
	maxLayers    = 64
	maxNumParams = 1 << 28 // 1 GiB of float32
	// maxActivations caps one activation tensor of a graph (512 MiB of
	// float32), checked when a model is built.
	maxActivations = 1 << 27
)

// ModelConfig describes a network. All peers of a run must use the same one.
type ModelConfig struct {
	Arch     string  // ArchMLP ("" too), ArchCNN or ArchBERT
	Hidden   []int   // widths of the ReLU fully connected hidden layers, e.g. {256}; empty means none
	Channels []int   // cnn only: output channels of each conv–pool block (default 16,32)
	Width    int     // bert only: hidden width (0: DefaultBERTWidth)
	Heads    int     // bert only: attention heads, dividing Width (0: DefaultBERTHeads)
	Layers   int     // bert only: encoder layers (0: DefaultBERTLayers)
	Dropout  float64 // bert only: dropout probability on every residual branch
	Batch    int     // rows per ComputeGradients call; the graph is built for exactly this many (1..65536)
	Seed     uint64  // weight initialisation; equal seeds give bit-identical initial parameters
	// Engine is this node's choice of compute, not the run's: EngineNative
	// (the MLP, the CNN and BERT) or EngineGorgonia; "" means DefaultEngine. Nodes on
	// different engines train the same model and may differ in the last
	// bits of a gradient.
	Engine string
	// Precision is this node's choice too: PrecisionFP32 or PrecisionBF16
	// (the native engine's mlp), "" meaning DefaultPrecision.
	Precision string
}

// Validate checks the fields against their allowed ranges.
func (c ModelConfig) Validate() error {
	if c.Batch < 1 || c.Batch > maxBatch {
		return fmt.Errorf("model: Batch=%d, want 1..%d", c.Batch, maxBatch)
	}
	if len(c.Hidden) > maxLayers {
		return fmt.Errorf("model: %d hidden layers, want at most %d", len(c.Hidden), maxLayers)
	}
	for i, w := range c.Hidden {
		if w < 1 || w > maxWidth {
			return fmt.Errorf("model: Hidden[%d]=%d, want 1..%d", i, w, maxWidth)
		}
	}
	if len(c.Channels) > maxConvBlocks {
		return fmt.Errorf("model: %d conv blocks, want at most %d", len(c.Channels), maxConvBlocks)
	}
	switch c.Engine {
	case "", EngineGorgonia, EngineNative: // every architecture has both
	default:
		return fmt.Errorf("model: Engine=%q, want %s or %s", c.Engine, EngineNative, EngineGorgonia)
	}
	if p := c.precision(); p != PrecisionFP32 {
		if p != PrecisionBF16 {
			return fmt.Errorf("model: Precision=%q, want %s or %s", c.Precision, PrecisionFP32, PrecisionBF16)
		}
		if c.engine() != EngineNative || c.Arch == ArchBERT {
			return fmt.Errorf("model: precision %s runs only the native engine's mlp and cnn so far, not the %s on %s; use --precision %s", p, cmp.Or(c.Arch, ArchMLP), c.engine(), PrecisionFP32)
		}
	}
	for i, ch := range c.Channels {
		if ch < 1 || ch > maxChannels {
			return fmt.Errorf("model: Channels[%d]=%d, want 1..%d", i, ch, maxChannels)
		}
	}
	return nil
}

// Model is a trainable classifier whose parameters and gradients travel as
// flat float32 vectors in the order of Tensors. The node and the swarm see
// only this; which network sits behind it is the run config's choice.
// A Model is not safe for concurrent use; build one per goroutine.
type Model interface {
	// Tensors lists the named parameter tensors in flat-vector order.
	Tensors() []Tensor
	// NumParams is the length of the flat parameter and gradient vectors.
	NumParams() int
	// ReadParams copies the parameters into dst (length NumParams; a wrong
	// length is a bug in the caller and panics).
	ReadParams(dst []float32)
	// WriteParams replaces the parameters; a wrong length or a NaN/Inf
	// (parameters may come from the network) is refused and changes nothing.
	WriteParams(src []float32) error
	// ComputeGradients runs forward and backward on one batch and keeps the
	// mean-loss gradient for AddGrads; it returns the mean loss.
	ComputeGradients(x []float32, y []uint8) (loss float32, err error)
	// AddGrads adds scale times the kept gradient into dst.
	AddGrads(dst []float32, scale float32)
	// Evaluate returns accuracy and mean cross-entropy on ds, with
	// training-only behaviour (dropout) off.
	Evaluate(ds *Dataset) (acc, loss float64, err error)
	// Close releases the model's machines.
	Close() error
}

// Tensor is one named tensor of the flat parameter vector.
type Tensor struct {
	Name  string
	Shape []int // row-major
}

// Size is the tensor's number of values.
func (t Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// eachMatrix calls f on every tensor of two or more dimensions (weights)
// with its values.
func eachMatrix(params []float32, tensors []Tensor, f func(w []float32, t Tensor)) {
	off := 0
	for _, t := range tensors {
		n := t.Size()
		if len(t.Shape) >= 2 && off+n <= len(params) {
			f(params[off:off+n], t)
		}
		off += n
	}
}

// Architectures NewModel builds.
const (
	ArchMLP = "mlp"
	ArchCNN = "cnn"
)

// NewModel builds the network cfg.Arch names for rows shaped like ds:
// the MLP needs only ds.Dim, the CNN an image shape.
func NewModel(cfg ModelConfig, ds *Dataset) (Model, error) {
	if ds.MLM && cfg.Arch != ArchBERT {
		return nil, fmt.Errorf("model: dataset %q is masked-language-model data, which only bert trains", ds.Name)
	}
	switch cfg.Arch {
	case "", ArchMLP:
		if len(cfg.Channels) > 0 {
			return nil, fmt.Errorf("model: channels %v are for the cnn, not the mlp", cfg.Channels)
		}
		if cmp.Or(cfg.Engine, DefaultEngine) == EngineNative {
			return newNativeMLP(cfg, ds.Dim, ds.Classes)
		}
		return NewMLP(cfg, ds.Dim, ds.Classes)
	case ArchBERT:
		if cmp.Or(cfg.Engine, DefaultEngine) == EngineNative {
			return newNativeBERT(cfg, ds)
		}
		return NewBERT(cfg, ds)
	case ArchCNN:
		if ds.Shape == nil {
			return nil, fmt.Errorf("model: the cnn needs image data, and dataset %q has no image shape (a CSV row count that is not a square?)", ds.Name)
		}
		if cmp.Or(cfg.Engine, DefaultEngine) == EngineNative {
			return newNativeCNN(cfg, ds.Shape, ds.Classes)
		}
		return NewCNN(cfg, ds.Shape, ds.Classes)
	default:
		return nil, fmt.Errorf("model: architecture %q, want mlp, cnn or bert", cfg.Arch)
	}
}

// tally is an Evaluate's running count over the positions it scores.
type tally struct {
	scored, correct int
	loss            float64
}

// addWanted scores the rows of z (classes logits each) whose wanted
// class is not negative: BERT's padding and unmasked tokens are.
func (t *tally) addWanted(z []float32, classes int, want []int) {
	for i, w := range want {
		if w < 0 {
			continue
		}
		ok, l := scoreLogits(z[i*classes:(i+1)*classes], w)
		if ok {
			t.correct++
		}
		t.loss += l
		t.scored++
	}
}

// result is the accuracy and mean loss of what was scored on dataset
// name, and an error when nothing was.
func (t tally) result(name string) (acc, loss float64, err error) {
	if t.scored == 0 {
		return 0, 0, fmt.Errorf("evaluate: dataset %q has nothing to score (no masked tokens)", name)
	}
	return float64(t.correct) / float64(t.scored), t.loss / float64(t.scored), nil
}

// scoreLogits adds one row's outcome: whether its arg-max (ties to the
// lowest class) is label y, and its cross-entropy, computed in float64 as a
// max-shifted log-sum-exp.
func scoreLogits(z []float32, y int) (correct bool, loss float64) {
	best := 0
	for j, v := range z {
		if v > z[best] {
			best = j
		}
	}
	mx := float64(z[best])
	s := 0.0
	for _, v := range z {
		s += math.Exp(float64(v) - mx)
	}
	return best == y, mx + math.Log(s) - float64(z[y])
}
