package trainer

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// evalChunk is the number of rows Evaluate pushes through at once.
const evalChunk = 256

// Evaluate returns the accuracy and mean cross-entropy of the current
// parameters on ds. It is a plain Go forward pass over the flat parameters
// (gonum sgemm), separate from the training graph: an eval VM on that graph
// would flip train/eval state shared with it, and this path takes any number
// of rows. Ties in the arg-max go to the lowest class.
func (m *MLP) Evaluate(ds *Dataset) (acc, loss float64, err error) {
	if err := ds.Validate(); err != nil {
		return 0, 0, err
	}
	if ds.Dim != m.sizes[0] || ds.Classes != m.sizes[len(m.sizes)-1] {
		return 0, 0, fmt.Errorf("evaluate: dataset %q is %d→%d classes, model is %d→%d",
			ds.Name, ds.Dim, ds.Classes, m.sizes[0], m.sizes[len(m.sizes)-1])
	}
	m.ReadParams(m.flat)
	maxW := 0
	for _, s := range m.sizes[1:] {
		maxW = max(maxW, s)
	}
	bufA := make([]float32, evalChunk*maxW)
	bufB := make([]float32, evalChunk*maxW)
	classes := m.sizes[len(m.sizes)-1]

	var in []float32 // normalised pixel rows
	if ds.X == nil {
		in = make([]float32, evalChunk*ds.Dim)
	}
	correct, total := 0, 0.0
	for lo := 0; lo < ds.N; lo += evalChunk {
		rows := min(evalChunk, ds.N-lo)
		h := blas32.General{Rows: rows, Cols: ds.Dim, Stride: ds.Dim, Data: ds.Rows(lo, rows, in)}
		for l := 0; l+1 < len(m.sizes); l++ {
			in, out := m.sizes[l], m.sizes[l+1]
			w := blas32.General{Rows: in, Cols: out, Stride: out, Data: m.flat[m.offs[2*l]:m.offs[2*l+1]]}
			b := m.flat[m.offs[2*l+1]:m.offs[2*l+2]]
			z := blas32.General{Rows: rows, Cols: out, Stride: out, Data: bufA[:rows*out]}
			blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, h, w, 0, z)
			relu := l+2 < len(m.sizes)
			for r := range rows {
				zr := z.Data[r*out : (r+1)*out]
				for j := range zr {
					v := zr[j] + b[j]
					if relu && v < 0 {
						v = 0
					}
					zr[j] = v
				}
			}
			h = z
			bufA, bufB = bufB, bufA
		}
		for r := range rows {
			ok, l := scoreLogits(h.Data[r*classes:(r+1)*classes], int(ds.Y[lo+r]))
			if ok {
				correct++
			}
			total += l
		}
	}
	return float64(correct) / float64(ds.N), total / float64(ds.N), nil
}
