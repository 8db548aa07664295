//go:build adversary

package node

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/statesync"
)

// adversaryEnv switches a node built with -tags adversary into the
// malicious peer of the security tests (docs/SECURITY.md). The shipped
// binary is built without the tag: it has neither the code nor the
// switch.
//
//	SWARMTRAIN_ADVERSARY="from=100,scale=-50,claim=300,ahead=400"
//
// from: scale every gradient it sends by scale from that step on;
// claim: from that step on, gossip a step ahead further than it is with
// a made-up hash, and serve an all-zero state; data=1: serve the
// dataset's true manifest with every chunk corrupted.
const adversaryEnv = "SWARMTRAIN_ADVERSARY"

type adversary struct {
	from, claim, ahead uint64
	scale              float32
	data               bool
}

func loadAdversary() (*adversary, error) {
	spec := os.Getenv(adversaryEnv)
	if spec == "" {
		return nil, nil
	}
	a := &adversary{scale: 1, from: ^uint64(0), claim: ^uint64(0)}
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "from":
			a.from, err = strconv.ParseUint(v, 10, 64)
		case "claim":
			a.claim, err = strconv.ParseUint(v, 10, 64)
		case "data":
			a.data, err = strconv.ParseBool(v)
		case "ahead":
			a.ahead, err = strconv.ParseUint(v, 10, 64)
		case "scale":
			var f float64
			f, err = strconv.ParseFloat(v, 32)
			a.scale = float32(f)
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", adversaryEnv, err)
		}
	}
	return a, nil
}

func (a *adversary) gradient(step uint64, g []float32) {
	if a == nil || step < a.from {
		return
	}
	for i := range g {
		g[i] *= a.scale
	}
}

func (a *adversary) heartbeat(hb *gossip.Heartbeat) {
	if a == nil || hb.Step < a.claim {
		return
	}
	hb.Step += a.ahead
	hb.Hash = fmt.Sprintf("%064x", hb.Step) // a state nobody holds
	hb.Syncing = false
}

func (a *adversary) snapshot(s *statesync.Snapshot) {
	if a == nil || s.Step < a.claim {
		return
	}
	s.Step += a.ahead
	clear(s.Params)
	clear(s.Opt)
}

// dataNet is the transport the data server runs on: with data=1, one
// that flips a byte in every frame after the manifest.
func (a *adversary) dataNet(t gossip.Transport) gossip.Transport {
	if a == nil || !a.data {
		return t
	}
	return corruptingNet{t}
}

type corruptingNet struct{ gossip.Transport }

func (c corruptingNet) Handle(proto protocol.ID, h func(gossip.Stream)) {
	c.Transport.Handle(proto, func(s gossip.Stream) { h(&corruptingStream{Stream: s}) })
}

type corruptingStream struct {
	gossip.Stream
	sent int
}

func (s *corruptingStream) Send(frame []byte) error {
	if s.sent++; s.sent > 1 && len(frame) > 0 {
		frame = append([]byte(nil), frame...)
		frame[len(frame)/2] ^= 0x5a
	}
	return s.Stream.Send(frame)
}
