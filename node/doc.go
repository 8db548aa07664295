// Package node composes a running peer: a libp2p host (package p2p), the
// run's gossip and averaging protocols (package gossip and its
// subpackages) and a local trainer (package trainer), driven by the
// sync-mode loop
//
//	accumulate minibatches → gossip progress → match → all-reduce → identical optimizer step
//
// plus state download for joiners and after divergence, a final settle so
// a run never ends with different replicas, /status and /metrics, and a
// clean leave on cancellation.
//
//	cfg := node.DefaultConfig()
//	cfg.Dir = "./node-a"
//	cfg.Join = []string{"/ip4/192.0.2.1/tcp/4001/p2p/12D3KooW…"}
//	n, err := node.New(cfg)
//	if err != nil { ... }
//	res, err := n.Run(ctx) // until the run's last step or ctx is cancelled
//	fmt.Println(res.Accuracy, res.Hash)
package node
