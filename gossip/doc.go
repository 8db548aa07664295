// Package gossip holds the protocols peers of one run speak to each other:
// membership and progress over gossipsub (Bus, Membership), matchmaking of
// a group per step (Matchmaker), the all-reduce that averages gradients
// bit-identically (Averager, with error feedback for lossy codecs), state
// download for joiners in verified chunks from several donors (StateServer,
// FetchState, Download), Moshpit group layouts (MoshpitGrid) and run
// admission (Admission).
//
// Streams go through the Transport interface, so everything except Bus
// runs over MemNetwork in tests. One sync-mode step, as package node
// drives it:
//
//	view := gossip.NewMembership(self, 5*time.Second)    // fed by Bus deliveries
//	mm := gossip.NewMatchmaker(tr, gossip.MatchConfig{Run: run}, myView)
//	av := gossip.NewAverager(tr, gossip.AveragerConfig{Codec: fp32})
//	for {
//		// ... accumulate local gradient `mean` over `samples`, publish Progress ...
//		r, err := mm.Match(ctx, step, samples, candidates)
//		if errors.Is(err, gossip.ErrBehind) { /* FetchState from peers */ continue }
//		if err != nil { continue } // retry; the gradient is kept
//		if err := av.AllReduce(ctx, r, mean, avg); err != nil { continue }
//		// every member now holds the same avg: apply the same optimizer step
//	}
//
// Every message and frame from the network is hostile until validated:
// sizes are capped before allocation, fields are range-checked, tensor
// parts are checksummed, and a part holding NaN or Inf is left out.
package gossip
