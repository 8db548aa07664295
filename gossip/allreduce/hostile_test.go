package allreduce

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/statesync"
)

// Garbage on every stream protocol costs the sender, never the receiver:
// no panic, and the next honest round still works.
func TestHostileStreamsDoNotHurt(t *testing.T) {
	net, ts, ids := memPeers(3)
	net.Timeout = 200 * time.Millisecond
	var avs []*Averager
	for _, tr := range ts[:2] {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: 2 * time.Second}))
	}
	view := &fixedView{ids: ids[:2]}
	NewMatchmaker(ts[0], MatchConfig{Run: "ab", JoinWindow: 200 * time.Millisecond}, view)
	statesync.NewServer(ts[0], "ab", func() (uint64, error) { return 0, nil }, func() (statesync.Snapshot, error) { return statesync.Snapshot{Params: []float32{1}}, nil }, nil)
	(&gossip.Admission{Run: "ab", Config: json.RawMessage(`{}`)}).Serve(ts[0])

	attacker := ts[2]
	rng := rand.New(rand.NewPCG(9, 9))
	hdr, _ := json.Marshal(partHeader{Round: "00", Sender: 0, Part: 0, Samples: 1})
	payloads := [][]byte{
		nil, {0}, []byte("{"), []byte(strings.Repeat("x", 5000)), hdr,
		[]byte(`{"v":1,"kind":"join","join":{"run":"ab","step":0,"samples":-5}}`),
		[]byte(`{"run":"ab"}`),
	}
	for i := 0; i < 20; i++ {
		b := make([]byte, rng.IntN(300))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		payloads = append(payloads, b)
	}
	for _, proto := range []protocol.ID{gossip.ProtoAllReduce, gossip.ProtoMatch, gossip.ProtoState, gossip.ProtoHello, gossip.ProtoPart, gossip.ProtoDigest} {
		for _, p := range payloads {
			s, err := attacker.Open(context.Background(), ids[0], proto)
			if err != nil {
				t.Fatal(err)
			}
			s.Send(p)
			s.Send(p)
			s.Recv(gossip.MaxMessageSize) // whatever comes back, if anything
			s.Reset()
		}
	}
	// Announce many rounds that will never start, leaving the streams
	// open, so they stay pending on the victim.
	for i := 0; i < 3*maxPendingRounds; i++ {
		s, err := attacker.Open(context.Background(), ids[0], gossip.ProtoAllReduce)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := json.Marshal(partHeader{Round: fmt.Sprintf("%032x", i), Sender: 0, Part: 0, Samples: 1})
		s.Send(h)
	}
	// An honest round between the two victims still completes.
	samples := []int{1, 1}
	r := Round{Members: ids[:2], Samples: samples, ID: RoundID("ab", 0, 0, ids[:2], samples, nil)}
	rng2 := rand.New(rand.NewPCG(1, 1))
	outs, errs := runRound(t, avs, r, [][]float32{randVec(rng2, 50), randVec(rng2, 50)})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("peer %d after the attack: %v", i, err)
		}
	}
	if outs[0][3] != outs[1][3] {
		t.Fatal("honest round diverged after the attack")
	}
}
