package trainer

import (
	"errors"
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// CNN limits and defaults.
const (
	maxConvBlocks = 4
	maxChannels   = 1024
	convKernel    = 5   // odd, so "same" padding is symmetric
	cnnEvalRows   = 100 // rows per eval-graph run; MNIST's 10 000 test rows divide evenly
)

// DefaultChannels are the CNN's conv–pool blocks when the config names
// none: 28×28 → 16@14×14 → 32@7×7, then the fully connected layers.
var DefaultChannels = []int{16, 32}

// CNN is a convolutional classifier: conv–ReLU–pool blocks (5×5 kernels,
// "same" padding, 2×2 max pooling) followed by ReLU fully connected
// layers, trained with log-softmax cross-entropy. Conv weights are
// out×in×5×5 (PyTorch's layout), named conv.K.weight and conv.K.bias; the
// dense layers follow as fc.K.weight (in×out) and fc.K.bias. Evaluation
// runs on a separate forward-only graph.
type CNN struct {
	*graphNet
	cfg   ModelConfig
	shape []int // channels, height, width of an input row
	fwd   forwardFunc
	eval  *evalGraph // built on first use
}

// NewCNN builds the network for images of shape (channels, height, width)
// with weights drawn from cfg.Seed: He-uniform for layers followed by ReLU,
// Glorot-uniform for the logits, zero biases.
func NewCNN(cfg ModelConfig, shape []int, classes int) (*CNN, error) {
	specs, cfg, err := cnnSpecs(cfg, shape, classes)
	if err != nil {
		return nil, err
	}
	m := &CNN{cfg: cfg, shape: append([]int(nil), shape...)}
	blocks := len(cfg.Channels)
	flat := specs[2*blocks].Shape[0] // the first dense layer's input: the last block, flattened
	m.fwd = func(x *G.Node, p []*G.Node) (*G.Node, error) {
		rows := x.Shape()[0]
		z, err := G.Reshape(x, tensor.Shape{rows, shape[0], shape[1], shape[2]})
		if err != nil {
			return nil, err
		}
		for i := range blocks {
			if z, err = convBlock(z, p[2*i], p[2*i+1]); err != nil {
				return nil, err
			}
		}
		if z, err = G.Reshape(z, tensor.Shape{rows, flat}); err != nil {
			return nil, err
		}
		return denseStack(z, p[2*blocks:])
	}
	dim := shape[0] * shape[1] * shape[2]
	g, err := newGraphNet(specs, cfg.Batch, dim, classes, cfg.Seed, classifier(cfg.Batch, dim, classes, m.fwd))
	if err != nil {
		return nil, err
	}
	m.graphNet = g
	return m, nil
}

// Config returns the model's configuration, default channels filled in.
func (m *CNN) Config() ModelConfig {
	c := m.cfg
	c.Hidden = append([]int(nil), c.Hidden...)
	c.Channels = append([]int(nil), c.Channels...)
	return c
}

// Evaluate returns the accuracy and mean cross-entropy of the current
// parameters on ds.
func (m *CNN) Evaluate(ds *Dataset) (acc, loss float64, err error) {
	if m.eval == nil {
		if m.eval, err = newEvalGraph(m.graphNet, cnnEvalRows, m.fwd); err != nil {
			return 0, 0, err
		}
	}
	return m.eval.evaluate(m.graphNet, ds)
}

// Close releases both machines.
func (m *CNN) Close() error {
	if m.eval == nil {
		return m.graphNet.Close()
	}
	return errors.Join(m.graphNet.Close(), m.eval.vm.Close())
}

// cnnSpecs checks a CNN's config and image shape and lists its parameter
// tensors, which both engines lay out the same way; it returns cfg with
// the default channels filled in.
func cnnSpecs(cfg ModelConfig, shape []int, classes int) ([]paramSpec, ModelConfig, error) {
	if err := cfg.Validate(); err != nil {
		return nil, cfg, err
	}
	if len(shape) != 3 || shape[0] < 1 || shape[1] < 1 || shape[2] < 1 || shape[0]*shape[1]*shape[2] > maxWidth {
		return nil, cfg, fmt.Errorf("model: image shape %v, want channels,height,width with at most %d values", shape, maxWidth)
	}
	if classes < 2 || classes > 256 {
		return nil, cfg, fmt.Errorf("model: classes=%d, want 2..256 (labels are uint8)", classes)
	}
	cfg.Hidden = append([]int(nil), cfg.Hidden...)
	channels := cfg.Channels
	if len(channels) == 0 {
		channels = DefaultChannels
	}
	cfg.Channels = append([]int(nil), channels...)
	var specs []paramSpec
	c, h, w := shape[0], shape[1], shape[2]
	for i, out := range channels {
		if h < 2 || w < 2 {
			return nil, cfg, fmt.Errorf("model: a %d×%d image is too small for %d conv–pool blocks (each halves it)", shape[1], shape[2], len(channels))
		}
		fanIn := c * convKernel * convKernel
		if n := cfg.Batch * h * w * fanIn; n > maxActivations { // im2col's patch matrix
			return nil, cfg, fmt.Errorf("model: conv block %d needs %d values of patches, more than %d: lower the batch", i, n, maxActivations)
		}
		specs = append(specs,
			paramSpec{Tensor: Tensor{Name: fmt.Sprintf("conv.%d.weight", i), Shape: []int{out, c, convKernel, convKernel}}, limit: math.Sqrt(6 / float64(fanIn))},
			paramSpec{Tensor: Tensor{Name: fmt.Sprintf("conv.%d.bias", i), Shape: []int{out}}, node: []int{1, out, 1, 1}})
		c, h, w = out, h/2, w/2
	}
	flat := c * h * w
	specs = append(specs, denseSpecs(append(append([]int{flat}, cfg.Hidden...), classes), "fc", 0)...)
	return specs, cfg, nil
}
