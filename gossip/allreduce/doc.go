// Package allreduce forms the group of each step and averages in it:
// matchmaking (Matchmaker: ready peers join the step's assembler, which
// announces one ordered Group), the all-reduce that averages gradients
// bit-identically (Averager, with error feedback for lossy codecs, part
// repair when an owner fails halfway, results cross-checked by digest
// before they are applied (verify.go), and deadlines sized by the
// members' measured uplinks), and Moshpit group layouts above the maximum group
// size (MoshpitGrid, from a hash of each peer or, NewMoshpitGridLinks, from
// measured link costs; MoshpitRound). Joins may carry a Moshpit reference
// tag (MatchRef) that the round lists and its ID covers.
//
// Its streams go through gossip.Transport, so it runs over
// gossip.MemNetwork in tests. One sync-mode step, as package node drives
// it:
//
//	mm := allreduce.NewMatchmaker(tr, allreduce.MatchConfig{Run: run}, myView)
//	av := allreduce.NewAverager(tr, allreduce.AveragerConfig{Codec: fp32})
//	for {
//		// ... accumulate local gradient `mean` over `samples`, publish Progress ...
//		r, err := mm.Match(ctx, step, samples, candidates)
//		if errors.Is(err, allreduce.ErrBehind) { /* statesync.Fetch from peers */ continue }
//		if err != nil { continue } // retry; the gradient is kept
//		if err := av.AllReduce(ctx, r, mean, avg); err != nil { continue }
//		// every member now holds the same avg: apply the same optimizer step
//	}
//
// Frames from the network are hostile: sizes are capped before
// allocation, tensor parts are checksummed, a part holding NaN or Inf is
// left out, and a sender must be the member the round says it is.
package allreduce
