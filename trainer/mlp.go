package trainer

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
)

// MLP is a multilayer perceptron (ReLU hidden layers, log-softmax
// cross-entropy) whose forward and backward passes run as a gorgonia
// TapeMachine. Parameters and gradients are exchanged as flat float32
// vectors ordered layer by layer, each layer's W (in×out, row-major,
// y = x·W + b) followed by its b (out). Its Evaluate is plain Go (gonum
// sgemm) over the flat parameters, which takes any number of rows.
// An MLP is not safe for concurrent use; build one per goroutine.
type MLP struct {
	*graphNet
	cfg   ModelConfig
	sizes []int     // input, hidden..., classes
	flat  []float32 // scratch for Evaluate
}

// NewMLP builds the graph for inputDim → cfg.Hidden → classes with weights
// drawn from a PCG seeded by cfg.Seed: He-uniform for ReLU layers,
// Glorot-uniform for the output layer, zero biases.
func NewMLP(cfg ModelConfig, inputDim, classes int) (*MLP, error) {
	if err := checkMLPConfig(cfg, inputDim, classes); err != nil {
		return nil, err
	}
	m := &MLP{cfg: cfg}
	m.cfg.Hidden = append([]int(nil), cfg.Hidden...)
	m.sizes = append(append([]int{inputDim}, cfg.Hidden...), classes)
	g, err := newGraphNet(denseSpecs(m.sizes, "layers", 0), cfg.Batch, inputDim, classes, cfg.Seed, classifier(cfg.Batch, inputDim, classes, denseStack))
	if err != nil {
		return nil, err
	}
	m.graphNet = g
	m.flat = make([]float32, m.n)
	return m, nil
}

// checkMLPConfig refuses what neither MLP engine can build.
func checkMLPConfig(cfg ModelConfig, inputDim, classes int) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if inputDim < 1 || inputDim > maxWidth {
		return fmt.Errorf("model: inputDim=%d, want 1..%d", inputDim, maxWidth)
	}
	if classes < 2 || classes > 256 {
		return fmt.Errorf("model: classes=%d, want 2..256 (labels are uint8)", classes)
	}
	return nil
}

// denseSpecs lists the weight and bias of each fully connected layer from
// sizes[0] to sizes[len-1], named prefix.K.weight and prefix.K.bias from
// K = first: He-uniform weights for layers followed by ReLU,
// Glorot-uniform for the last (the logits), zero biases.
func denseSpecs(sizes []int, prefix string, first int) []paramSpec {
	var specs []paramSpec
	for l := 0; l+1 < len(sizes); l++ {
		in, out := sizes[l], sizes[l+1]
		limit := math.Sqrt(6 / float64(in)) // He-uniform: Var = 2/in
		if l+2 == len(sizes) {
			limit = math.Sqrt(6 / float64(in+out))
		}
		specs = append(specs,
			paramSpec{Tensor: Tensor{Name: fmt.Sprintf("%s.%d.weight", prefix, first+l), Shape: []int{in, out}}, limit: limit},
			paramSpec{Tensor: Tensor{Name: fmt.Sprintf("%s.%d.bias", prefix, first+l), Shape: []int{out}}, node: []int{1, out}})
	}
	return specs
}

// denseStack applies the (weight, bias) pairs of p to x, with ReLU between
// layers and none after the last.
func denseStack(x *G.Node, p []*G.Node) (z *G.Node, err error) {
	z = x
	for l := 0; l+1 < len(p); l += 2 {
		if l > 0 {
			if z, err = G.Rectify(z); err != nil {
				return nil, err
			}
		}
		if z, err = affine(z, p[l], p[l+1]); err != nil {
			return nil, err
		}
	}
	return z, nil
}

// Config returns the model's configuration.
func (m *MLP) Config() ModelConfig {
	c := m.cfg
	c.Hidden = append([]int(nil), c.Hidden...)
	c.Channels = append([]int(nil), c.Channels...)
	return c
}

// Sizes returns the layer widths: input, hidden..., classes.
func (m *MLP) Sizes() []int { return append([]int(nil), m.sizes...) }
