// Package trainer is the local half of a swarmtrain peer: data (MNIST,
// text datasets for masked-language modelling and classification,
// deterministic shards and minibatches), the models behind one Model
// interface (gorgonia MLP, CNN and a small BERT, whose parameters and
// gradients are flat float32 vectors), checkpoints, and optimizers and
// schedules written in plain Go so that every peer applies bit-identical
// updates on every architecture. It knows nothing of the network; the node
// package moves the flat vectors between peers. Tokenization lives in
// trainer/text.
//
// A peer's training loop, with the swarm's averaging marked:
//
//	train, test, err := trainer.LoadMNIST("") // "" = the GoMNIST module's data/
//	if err != nil { ... }
//	shard, err := train.Shard(runSeed, peerIndex, peerCount)
//	if err != nil { ... }
//	cfg := trainer.ModelConfig{Hidden: []int{256}, Batch: 64, Seed: runSeed} // Arch: trainer.ArchCNN, …
//	m, err := trainer.NewModel(cfg, train)
//	if err != nil { ... }
//	n := m.NumParams()
//	params, grads := make([]float32, n), make([]float32, n)
//	m.ReadParams(params)
//	opt, err := trainer.NewOptimizer("adam", 0, 0, n) // any of trainer.OptimizerNames
//	if err != nil { ... }
//	sched := trainer.Schedule{Base: 1e-3, Min: 1e-5, Warmup: 100, Total: 5000, Decay: trainer.DecayCosine}
//	b := trainer.NewBatcher(shard, cfg.Batch, runSeed^uint64(peerIndex))
//	x, y := make([]float32, cfg.Batch*train.Dim), make([]uint8, cfg.Batch)
//	for step := 0; step < sched.Total; step++ {
//		clear(grads)
//		b.Next(x, y)
//		loss, err := m.ComputeGradients(x, y)
//		if err != nil { ... }
//		m.AddGrads(grads, 1) // more batches may be accumulated, scaled by 1/k
//		// swarm: grads = weighted average of every peer's grads (bit-identical everywhere)
//		opt.Step(params, grads, sched.LR(step))
//		if err := m.WriteParams(params); err != nil { ... }
//		_ = loss
//	}
//	acc, testLoss, err := m.Evaluate(test)
//
// Models are the only gorgonia-facing types; they are not safe for
// concurrent use, so build one per goroutine. Everything that must agree
// between peers (initial weights, shard and batch order, optimizer steps,
// learning rates) is derived from explicit seeds with operations whose
// rounding the Go spec pins down.
package trainer
