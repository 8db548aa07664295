package trainer

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/trainer/engine"
	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// nativeCNN is the CNN on trainer/engine: the same parameter tensors,
// names, layout, initialisation and loss as the gorgonia CNN (NewCNN), so
// checkpoints, averaging, freezing, export and transfer learning do not
// see which one ran.
type nativeCNN struct {
	cfg   ModelConfig
	specs []paramSpec
	net   *engine.CNN
	grad  []float32 // the kept gradient, net's own buffer: zero until a step succeeds
}

func newNativeCNN(cfg ModelConfig, shape []int, classes int) (*nativeCNN, error) {
	specs, cfg, err := cnnSpecs(cfg, shape, classes)
	if err != nil {
		return nil, err
	}
	_, n, err := layout(specs)
	if err != nil {
		return nil, err
	}
	// One plan serves training (Batch rows) and evaluation (cnnEvalRows).
	net, err := engine.NewCNN(shape, cfg.Channels, convKernel, cfg.Hidden, classes, max(cfg.Batch, cnnEvalRows))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if len(net.Params()) != n {
		return nil, fmt.Errorf("model: native CNN has %d parameters, the gorgonia layout %d", len(net.Params()), n)
	}
	copy(net.Params(), initSpecs(specs, cfg.Seed, n))
	return &nativeCNN{cfg: cfg, specs: specs, net: net, grad: net.Grads()}, nil
}

func (m *nativeCNN) Tensors() []Tensor {
	out := make([]Tensor, len(m.specs))
	for i, s := range m.specs {
		out[i] = Tensor{Name: s.Name, Shape: append([]int(nil), s.Shape...)}
	}
	return out
}

func (m *nativeCNN) NumParams() int { return len(m.grad) }

func (m *nativeCNN) ReadParams(dst []float32) {
	m.mustLen("ReadParams", len(dst))
	copy(dst, m.net.Params())
}

func (m *nativeCNN) WriteParams(src []float32) error {
	if len(src) != len(m.grad) {
		return fmt.Errorf("model: WriteParams got %d values, want %d", len(src), len(m.grad))
	}
	if i := compression.FirstNonFinite(src); i >= 0 {
		return fmt.Errorf("model: WriteParams: value %d is %v", i, src[i])
	}
	copy(m.net.Params(), src)
	return nil
}

func (m *nativeCNN) ComputeGradients(x []float32, y []uint8) (float32, error) {
	if len(y) != m.cfg.Batch || len(x) != m.cfg.Batch*m.net.Dim() {
		return 0, fmt.Errorf("model: batch has len(x)=%d len(y)=%d, want %d and %d", len(x), len(y), m.cfg.Batch*m.net.Dim(), m.cfg.Batch)
	}
	loss, err := m.net.Step(x, y)
	if err != nil {
		clear(m.grad)
		return 0, fmt.Errorf("model: %w", err)
	}
	return loss, nil
}

// AddGrads rounds each product explicitly, as graphNet.AddGrads does.
func (m *nativeCNN) AddGrads(dst []float32, scale float32) {
	m.mustLen("AddGrads", len(dst))
	kernels.Axpy(dst, m.grad, scale)
}

func (m *nativeCNN) Evaluate(ds *Dataset) (acc, loss float64, err error) {
	if err := ds.Validate(); err != nil {
		return 0, 0, err
	}
	dim, classes := m.net.Dim(), m.net.Classes()
	if ds.Dim != dim || ds.Classes != classes {
		return 0, 0, fmt.Errorf("evaluate: dataset %q is %d→%d classes, model is %d→%d", ds.Name, ds.Dim, ds.Classes, dim, classes)
	}
	correct, total := 0, 0.0
	var in []float32 // normalised pixels, for a dataset kept as bytes
	if ds.X == nil {
		in = make([]float32, m.net.Rows()*dim)
	}
	for lo := 0; lo < ds.N; lo += m.net.Rows() {
		rows := min(m.net.Rows(), ds.N-lo)
		z, err := m.net.Forward(ds.Rows(lo, rows, in), rows)
		if err != nil {
			return 0, 0, fmt.Errorf("evaluate: %w", err)
		}
		for r := range rows {
			ok, l := scoreLogits(z[r*classes:(r+1)*classes], int(ds.Y[lo+r]))
			if ok {
				correct++
			}
			total += l
		}
	}
	return float64(correct) / float64(ds.N), total / float64(ds.N), nil
}

func (m *nativeCNN) Close() error { return nil }

// Config returns the model's configuration, default channels filled in.
func (m *nativeCNN) Config() ModelConfig {
	c := m.cfg
	c.Hidden = append([]int(nil), c.Hidden...)
	c.Channels = append([]int(nil), c.Channels...)
	return c
}

func (m *nativeCNN) mustLen(op string, n int) {
	if n != len(m.grad) {
		panic(fmt.Sprintf("trainer: model.%s: buffer has %d values, want NumParams=%d", op, n, len(m.grad)))
	}
}
