package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/nlpodyssey/safetensors"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
)

// Checkpoints are safetensors files (github.com/nlpodyssey/safetensors),
// so PyTorch, JAX and 🤗 tooling read the weights directly: one F32
// tensor per parameter tensor under its model name, the optimizer state
// as one flat F32 tensor "optimizer.state" (its layout is the optimizer's
// AppendState), and everything else in the header's metadata under
// "swarmtrain" as JSON. Files are written to a temporary name, synced and
// renamed, so a crash mid-write leaves the previous checkpoint intact.

// CheckpointFormat is the version of the metadata below.
const CheckpointFormat = 1

// maxCheckpointBytes bounds what ReadCheckpoint loads into memory.
const maxCheckpointBytes = 8 << 30

// Checkpoint is a trainer's state at a step.
type Checkpoint struct {
	Step uint64
	// Run is the run config as JSON (it fixes the model, the optimizer
	// and the schedule); RunID its hash.
	Run   json.RawMessage
	RunID string
	// Tensors name and shape Params in order.
	Tensors   []Tensor
	Params    []float32
	Optimizer string    // "adam", "sgd", …; empty: no optimizer state (an export)
	OptState  []float32 // the optimizer's AppendState
	// Group is the member list of the round that produced the state, as
	// the swarm names its peers: it is inside the state hash peers
	// compare, so a resumed node must hold it too. Optional.
	Group []string
	// Preprocess is how inputs are prepared for the model. Optional.
	Preprocess *Preprocess
}

type checkpointMeta struct {
	Format     int             `json:"format"`
	Step       uint64          `json:"step"`
	RunID      string          `json:"run_id,omitempty"`
	Run        json.RawMessage `json:"run,omitempty"`
	Tensors    []string        `json:"tensors"` // the order of the flat parameter vector
	Optimizer  string          `json:"optimizer,omitempty"`
	Group      []string        `json:"group,omitempty"`
	Preprocess *Preprocess     `json:"preprocess,omitempty"`
}

const (
	metaKey  = "swarmtrain"
	optState = "optimizer.state"
)

// EncodeCheckpoint returns the safetensors bytes of c. The bytes depend
// only on c: equal checkpoints give equal files.
func EncodeCheckpoint(c Checkpoint) ([]byte, error) {
	views := map[string]safetensors.TensorView{}
	meta := checkpointMeta{Format: CheckpointFormat, Step: c.Step, RunID: c.RunID, Run: c.Run, Optimizer: c.Optimizer, Group: c.Group, Preprocess: c.Preprocess}
	off := 0
	for _, t := range c.Tensors {
		n := t.Size()
		if n <= 0 || off+n > len(c.Params) {
			return nil, fmt.Errorf("checkpoint: tensor %q %v does not fit the %d parameters", t.Name, t.Shape, len(c.Params))
		}
		if t.Name == optState || t.Name == "" || views[t.Name].DataLen() > 0 {
			return nil, fmt.Errorf("checkpoint: tensor name %q is empty, reserved or repeated", t.Name)
		}
		v, err := f32View(t.Shape, c.Params[off:off+n])
		if err != nil {
			return nil, fmt.Errorf("checkpoint: tensor %q: %w", t.Name, err)
		}
		views[t.Name] = v
		meta.Tensors = append(meta.Tensors, t.Name)
		off += n
	}
	if off != len(c.Params) {
		return nil, fmt.Errorf("checkpoint: tensors cover %d of %d parameters", off, len(c.Params))
	}
	if c.Optimizer != "" {
		v, err := f32View([]int{len(c.OptState)}, c.OptState)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: optimizer state: %w", err)
		}
		views[optState] = v
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	return safetensors.Serialize(views, map[string]string{metaKey: string(mb), "format": "pt"})
}

func f32View(shape []int, vals []float32) (safetensors.TensorView, error) {
	if i := compression.FirstNonFinite(vals); i >= 0 {
		return safetensors.TensorView{}, fmt.Errorf("value %d is %v", i, vals[i])
	}
	return safetensors.NewTensorView(safetensors.F32, dims(shape), compression.FP32{}.Encode(nil, vals))
}

// dims is shape as safetensors writes it.
func dims(shape []int) []uint64 {
	out := make([]uint64, len(shape))
	for i, d := range shape {
		out[i] = uint64(d)
	}
	return out
}

// DecodeCheckpoint parses and validates safetensors bytes written by
// EncodeCheckpoint: every tensor the metadata lists, F32, finite, and
// nothing it does not explain.
func DecodeCheckpoint(b []byte) (*Checkpoint, error) {
	st, err := safetensors.Deserialize(b)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: not a safetensors file: %w", err)
	}
	_, md, err := safetensors.ReadMetadata(b)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	raw, ok := md.Metadata()[metaKey]
	if !ok {
		return nil, fmt.Errorf("checkpoint: no %q metadata: not written by swarmtrain", metaKey)
	}
	var meta checkpointMeta
	if err := json.Unmarshal([]byte(raw), &meta); err != nil {
		return nil, fmt.Errorf("checkpoint: metadata: %w", err)
	}
	if meta.Format != CheckpointFormat {
		return nil, fmt.Errorf("checkpoint: format %d, this build reads %d", meta.Format, CheckpointFormat)
	}
	c := &Checkpoint{Step: meta.Step, Run: meta.Run, RunID: meta.RunID, Optimizer: meta.Optimizer, Group: meta.Group, Preprocess: meta.Preprocess}
	want := len(meta.Tensors)
	for _, name := range meta.Tensors {
		tv, ok := st.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("checkpoint: tensor %q is listed but missing", name)
		}
		vals, shape, err := f32Values(name, tv)
		if err != nil {
			return nil, err
		}
		c.Tensors = append(c.Tensors, Tensor{Name: name, Shape: shape})
		c.Params = append(c.Params, vals...)
	}
	if meta.Optimizer != "" {
		tv, ok := st.Tensor(optState)
		if !ok {
			return nil, fmt.Errorf("checkpoint: optimizer %q without %q", meta.Optimizer, optState)
		}
		if c.OptState, _, err = f32Values(optState, tv); err != nil {
			return nil, err
		}
		want++
	}
	if st.Len() != want {
		return nil, fmt.Errorf("checkpoint: %d tensors, the metadata explains %d", st.Len(), want)
	}
	return c, nil
}

func f32Values(name string, tv safetensors.TensorView) ([]float32, []int, error) {
	if tv.DType() != safetensors.F32 {
		return nil, nil, fmt.Errorf("checkpoint: tensor %q is %s, want F32", name, tv.DType())
	}
	data := tv.Data()
	vals := make([]float32, len(data)/4)
	if err := (compression.FP32{}).Decode(vals, data[:4*len(vals)]); err != nil {
		return nil, nil, fmt.Errorf("checkpoint: tensor %q: %w", name, err)
	}
	if i := compression.FirstNonFinite(vals); i >= 0 {
		return nil, nil, fmt.Errorf("checkpoint: tensor %q value %d is %v", name, i, vals[i])
	}
	shape := make([]int, len(tv.Shape()))
	for i, d := range tv.Shape() {
		shape[i] = int(d)
	}
	return vals, shape, nil
}

// WriteCheckpoint writes c to path atomically: a temporary file in the
// same folder, synced, then renamed over path (and the folder synced), so
// a reader or a crash sees the old file or the new one, never half.
func WriteCheckpoint(path string, c Checkpoint) error {
	b, err := EncodeCheckpoint(c)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}

// ReadCheckpoint reads and validates a checkpoint file.
func ReadCheckpoint(path string) (*Checkpoint, error) {
	c, _, err := ReadCheckpointBytes(path)
	return c, err
}

// ReadCheckpointBytes is ReadCheckpoint that also returns the file's
// bytes, for a caller that must hash exactly what it loaded.
func ReadCheckpointBytes(path string) (*Checkpoint, []byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() > maxCheckpointBytes {
		return nil, nil, fmt.Errorf("checkpoint %s: %d bytes, more than this build loads (%d)", path, fi.Size(), int64(maxCheckpointBytes))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	c, err := DecodeCheckpoint(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, b, nil
}

// Matches checks that c holds a model laid out as tensors.
func (c *Checkpoint) Matches(tensors []Tensor) error {
	if len(c.Tensors) != len(tensors) {
		return fmt.Errorf("checkpoint has %d tensors, the model %d", len(c.Tensors), len(tensors))
	}
	for i, t := range tensors {
		if c.Tensors[i].Name != t.Name || !slices.Equal(c.Tensors[i].Shape, t.Shape) {
			return fmt.Errorf("checkpoint tensor %d is %s %v, the model's %s %v", i, c.Tensors[i].Name, c.Tensors[i].Shape, t.Name, t.Shape)
		}
	}
	return nil
}

// Transfer copies every checkpoint tensor whose name the model has into
// params (the model's flat vector, laid out by tensors) and returns the
// names of the model's tensors it left alone: fine-tuning a pre-trained
// encoder under a new head keeps the encoder and the head's fresh
// initialisation. A shared name with another shape is an error, and so
// is a checkpoint that shares no tensor with the model.
func (c *Checkpoint) Transfer(params []float32, tensors []Tensor) (fresh []string, err error) {
	src := map[string][]float32{}
	shape := map[string][]int{}
	off := 0
	for _, t := range c.Tensors {
		src[t.Name], shape[t.Name] = c.Params[off:off+t.Size()], t.Shape
		off += t.Size()
	}
	type copyOp struct {
		dst, src []float32
	}
	var ops []copyOp
	off = 0
	for _, t := range tensors {
		n := t.Size()
		if off+n > len(params) {
			return nil, fmt.Errorf("model tensors need %d values, the vector has %d", off+n, len(params))
		}
		if v, ok := src[t.Name]; !ok {
			fresh = append(fresh, t.Name)
		} else if !slices.Equal(shape[t.Name], t.Shape) {
			return nil, fmt.Errorf("checkpoint tensor %s is %v, the model's is %v", t.Name, shape[t.Name], t.Shape)
		} else {
			ops = append(ops, copyOp{params[off : off+n], v})
		}
		off += n
	}
	if len(ops) == 0 {
		return nil, errors.New("the checkpoint shares no tensor name with the model (another architecture?)")
	}
	for _, o := range ops {
		copy(o.dst, o.src)
	}
	return fresh, nil
}
