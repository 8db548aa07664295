// Package gossip is what peers of one run gossip, and the seams their
// stream protocols share: the control messages (Message: heartbeats and
// progress, hellos, and matchmaking's joins and groups), validated and
// signed, over gossipsub (Bus); the view of live peers they build
// (Membership, Consensus); run admission (Admission); and the Transport
// of framed streams, with MemNetwork, an in-process network that can
// drop, stall, corrupt and isolate peers, for tests.
//
// The stream protocols live in subpackages that import this one (never
// the reverse): allreduce forms each step's group and averages in it
// (Matchmaker, Averager, Moshpit groups), statesync downloads the state
// for joiners, and datasync the dataset. The two downloads share their
// server's bounded serving slots (SlotPool) and their parallel pull of
// verified chunks from several peers (AskEach, PullChunks, JoinFailures).
// Package node wires them to libp2p:
//
//	view := gossip.NewMembership(self, 5*time.Second) // fed by Bus deliveries
//	adm := &gossip.Admission{Run: run, Config: cfg, Admit: admitted.Add}
//	adm.Serve(tr) // hellos on tr, a Transport
//	gate := gossip.Gate{Admitted: admitted.Has} // only admitted authors' gossip
//	bus, _ := gossip.NewBus(ctx, host, run, gate, func(from peer.ID, m gossip.Message) {
//		if m.Kind == gossip.KindHeartbeat {
//			view.ObserveHeartbeat(*m.Heartbeat, time.Now())
//		}
//	})
//
// Every message and frame from the network is hostile until validated:
// sizes are capped before allocation (defaults.go) and fields are
// range-checked; Decode is fuzzed.
package gossip
