package trainer

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// nativeParams is what the native models share behind Model: the
// gorgonia layout's tensors over the engine's flat parameter and
// gradient buffers.
type nativeParams struct {
	specs  []paramSpec
	params []float32 // the engine's parameter buffer
	grad   []float32 // the engine's gradient buffer: zero until a step succeeds
}

func (m *nativeParams) Tensors() []Tensor {
	out := make([]Tensor, len(m.specs))
	for i, s := range m.specs {
		out[i] = Tensor{Name: s.Name, Shape: append([]int(nil), s.Shape...)}
	}
	return out
}

func (m *nativeParams) NumParams() int { return len(m.grad) }

func (m *nativeParams) ReadParams(dst []float32) {
	m.mustLen("ReadParams", len(dst))
	copy(dst, m.params)
}

func (m *nativeParams) WriteParams(src []float32) error {
	if len(src) != len(m.grad) {
		return fmt.Errorf("model: WriteParams got %d values, want %d", len(src), len(m.grad))
	}
	if i := compression.FirstNonFinite(src); i >= 0 {
		return fmt.Errorf("model: WriteParams: value %d is %v", i, src[i])
	}
	copy(m.params, src)
	return nil
}

// AddGrads rounds each product explicitly, as graphNet.AddGrads does, so
// that no FMA fusion changes the bits across architectures.
func (m *nativeParams) AddGrads(dst []float32, scale float32) {
	m.mustLen("AddGrads", len(dst))
	kernels.Axpy(dst, m.grad, scale)
}

func (m *nativeParams) Close() error { return nil }

func (m *nativeParams) mustLen(op string, n int) {
	if n != len(m.grad) {
		panic(fmt.Sprintf("trainer: model.%s: buffer has %d values, want NumParams=%d", op, n, len(m.grad)))
	}
}

// evaluateImages scores ds (dim values a row, classes labels) through
// forward, up to chunk rows at a time: the native MLP's and CNN's
// Evaluate.
func evaluateImages(ds *Dataset, dim, classes, chunk int, forward func(x []float32, rows int) ([]float32, error)) (acc, loss float64, err error) {
	if err := ds.Validate(); err != nil {
		return 0, 0, err
	}
	if ds.Dim != dim || ds.Classes != classes {
		return 0, 0, fmt.Errorf("evaluate: dataset %q is %d→%d classes, model is %d→%d", ds.Name, ds.Dim, ds.Classes, dim, classes)
	}
	correct, total := 0, 0.0
	var in []float32 // normalised pixels, for a dataset kept as bytes
	if ds.X == nil {
		in = make([]float32, chunk*dim)
	}
	for lo := 0; lo < ds.N; lo += chunk {
		rows := min(chunk, ds.N-lo)
		z, err := forward(ds.Rows(lo, rows, in), rows)
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
