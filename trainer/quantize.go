package trainer

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/nlpodyssey/safetensors"

	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
)

// Int8 weight quantization of a trained model and its safetensors export,
// one of the post-training steps of `swarmtrain export` (magnitude
// pruning, in prune.go, is the other). Biases stay float32: they are few,
// and rounding them costs accuracy for nothing.

// QuantizeInt8 quantizes every weight tensor per output channel
// (symmetric, scale = max|w|/127 of the channel): per column of a dense
// in×out matrix, per first-axis slice of a conv's out×in×k×k. It returns
// the int8 levels and scales per tensor, in tensor order, and rewrites
// params to the dequantized values so the model can be evaluated as it
// will run.
func QuantizeInt8(params []float32, tensors []Tensor) (levels [][]int8, scales [][]float32) {
	eachMatrix(params, tensors, func(w []float32, t Tensor) {
		n := len(w)
		channels := t.Shape[len(t.Shape)-1]
		channel := func(k int) int { return k % channels }
		if len(t.Shape) > 2 {
			channels = t.Shape[0]
			per := n / channels
			channel = func(k int) int { return k / per }
		}
		sc := make([]float32, channels)
		for k, x := range w {
			c := channel(k)
			sc[c] = max(sc[c], float32(math.Abs(float64(x))))
		}
		for c := range sc {
			sc[c] /= 127
		}
		q := make([]int8, n)
		for k, x := range w {
			s := sc[channel(k)]
			if s == 0 {
				w[k] = 0
				continue
			}
			l := int8(max(-127, min(127, math.Round(float64(x/s)))))
			q[k] = l
			w[k] = float32(l) * s
		}
		levels = append(levels, q)
		scales = append(scales, sc)
	})
	return levels, scales
}

// WriteInt8Export writes a quantized model as safetensors: every matrix
// as I8 levels under its name plus "<name>.scale" (F32, one per column:
// weight = level × scale of its output channel), every other tensor as
// F32. params holds the
// values of the non-matrix tensors; levels and scales come from
// QuantizeInt8. Written atomically, like checkpoints.
func WriteInt8Export(path string, tensors []Tensor, params []float32, levels [][]int8, scales [][]float32, step uint64, runID string) error {
	views := map[string]safetensors.TensorView{}
	off, m := 0, 0
	for _, t := range tensors {
		n := t.Size()
		if off+n > len(params) {
			return fmt.Errorf("int8 export: tensor %q does not fit the parameters", t.Name)
		}
		var v safetensors.TensorView
		var err error
		if len(t.Shape) >= 2 {
			if m >= len(levels) || len(levels[m]) != n {
				return fmt.Errorf("int8 export: no levels for matrix %q", t.Name)
			}
			data := make([]byte, n)
			for i, l := range levels[m] {
				data[i] = byte(l)
			}
			if v, err = safetensors.NewTensorView(safetensors.I8, dims(t.Shape), data); err != nil {
				return err
			}
			sv, err := f32View([]int{len(scales[m])}, scales[m])
			if err != nil {
				return fmt.Errorf("int8 export: %q scales: %w", t.Name, err)
			}
			views[t.Name+".scale"] = sv
			m++
		} else if v, err = f32View(t.Shape, params[off:off+n]); err != nil {
			return fmt.Errorf("int8 export: %q: %w", t.Name, err)
		}
		views[t.Name] = v
		off += n
	}
	meta, _ := json.Marshal(map[string]any{"format": CheckpointFormat, "step": step, "run_id": runID,
		"quantization": "int8, symmetric per output channel: weight = level × <name>.scale[c], c the last index of a 2-D in×out weight, the first of a conv's out×in×k×k"})
	b, err := safetensors.Serialize(views, map[string]string{metaKey: string(meta), "format": "pt"})
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}
