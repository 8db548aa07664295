// Package p2p is swarmtrain's networking floor: a libp2p host with a
// persistent identity, TCP and QUIC, TLS/Noise and yamux, a resource manager
// tuned so bulk streams are not throttled, and length-prefixed frames with
// per-frame deadlines for the protocols built on it.
//
// It knows nothing of training: gossip and all-reduce live above it and speak
// through Streams. Everything read from a stream is hostile until checked:
// ReadFrame caps the length before allocating, Stream arms a deadline for
// every frame, and callers Reset a stream on any error.
//
// A node's life, in short:
//
//	cfg := p2p.DefaultConfig()
//	cfg.Dir = "node1"
//	h, err := p2p.New(cfg)
//	if err != nil { ... }
//	defer h.Close()
//	fmt.Println("join with", h.JoinAddrs()[0])
//
//	h.SetStreamHandler("/swarmtrain/echo/1", func(ns network.Stream) {
//		s := p2p.NewStream(ns, 10*time.Second)
//		for {
//			msg, err := s.Recv(1 << 20)
//			if err == io.EOF { s.Close(); return }     // peer finished cleanly
//			if err != nil { s.Reset(); return }        // hostile, slow or gone
//			if err := s.Send(msg); err != nil { s.Reset(); return }
//		}
//	})
//
//	id, err := h.Connect(ctx, otherJoinAddr)              // ".../p2p/12D3Koo..."
//	ns, err := h.NewStream(ctx, id, "/swarmtrain/echo/1")
//	s := p2p.NewStream(ns, 10*time.Second)
//	err = s.Send([]byte("hi"))
//	reply, err := s.Recv(1 << 20)
//	s.Close()
//
// ExampleNew runs this loop between two hosts on loopback.
//
// Files: defaults.go (Config and every default), identity.go (key file),
// host.go (New, JoinAddrs, Connect, byte counters), tcpconn.go (TCP socket
// options), frames.go (the codec), stream.go (deadlines and buffering),
// throughput.go (a raw-speed probe).
package p2p
