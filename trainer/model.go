package trainer

import (
	"fmt"
	"math"
)

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
		return NewMLP(cfg, ds.Dim, ds.Classes)
	case ArchBERT:
		return NewBERT(cfg, ds)
	case ArchCNN:
		if ds.Shape == nil {
			return nil, fmt.Errorf("model: the cnn needs image data, and dataset %q has no image shape (a CSV row count that is not a square?)", ds.Name)
		}
		return NewCNN(cfg, ds.Shape, ds.Classes)
	default:
		return nil, fmt.Errorf("model: architecture %q, want mlp, cnn or bert", cfg.Arch)
	}
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
