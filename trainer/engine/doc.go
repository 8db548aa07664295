// Package engine is swarmtrain's own compute engine: layers with
// hand-written backward passes over flat float32 buffers, planned once
// per model and batch size so that a training step allocates nothing, and
// multiplied by trainer/kernels. It knows nothing of the swarm; package
// trainer puts its networks behind trainer.Model, and checks each one
// against the gorgonia graph of the same network and against finite
// differences.
//
// A training loop over an MLP:
//
//	m, _ := engine.NewMLP([]int{784, 256, 10}, 64)
//	copy(m.Params(), init)          // W0 (784×256), b0, W1 (256×10), b1
//	for x, y := range batches {
//		loss, _ := m.Step(x, y)     // forward, backward; gradients in m.Grads()
//		sgd(m.Params(), m.Grads())
//	}
package engine
