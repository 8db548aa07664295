package p2p_test

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// Two hosts on loopback: one echoes frames, the other joins it by address and
// talks to it. Real nodes set Config.Dir instead of Identity, and keep the
// default listen addresses.
func ExampleNew() {
	start := func() *p2p.Host {
		cfg := p2p.DefaultConfig()
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.Identity, _, _ = crypto.GenerateEd25519Key(nil)
		h, err := p2p.New(cfg)
		if err != nil {
			panic(err)
		}
		return h
	}
	server, client := start(), start()
	defer server.Close()
	defer client.Close()

	server.SetStreamHandler("/swarmtrain/echo/1", func(ns network.Stream) {
		s := p2p.NewStream(ns, 10*time.Second)
		for {
			msg, err := s.Recv(1 << 20)
			if err == io.EOF {
				s.Close() // the client finished cleanly
				return
			}
			if err != nil {
				s.Reset() // hostile, slow or gone: drop it
				return
			}
			if err := s.Send(append([]byte("echo: "), msg...)); err != nil {
				s.Reset()
				return
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := client.Connect(ctx, server.JoinAddrs()[0])
	if err != nil {
		panic(err)
	}
	ns, err := client.NewStream(ctx, id, "/swarmtrain/echo/1")
	if err != nil {
		panic(err)
	}
	s := p2p.NewStream(ns, 10*time.Second)
	defer s.Close()
	for _, msg := range []string{"hello", "swarm"} {
		if err := s.Send([]byte(msg)); err != nil {
			panic(err)
		}
		reply, err := s.Recv(1 << 20)
		if err != nil {
			panic(err)
		}
		fmt.Println(string(reply))
	}
	// Output:
	// echo: hello
	// echo: swarm
}
