package allreduce

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
)

// nanFrame is a well-formed fp32 part frame whose values are all NaN:
// what a sender with a diverged model (or a hostile one) could send.
func nanFrame(n int) []byte {
	f := []byte{compression.Version, byte(compression.IDFP32), byte(compression.LosslessNone), 0}
	f = binary.LittleEndian.AppendUint32(f, uint32(n))
	f = binary.LittleEndian.AppendUint32(f, uint32(4*n))
	for range n {
		f = binary.LittleEndian.AppendUint32(f, 0x7fc00000)
	}
	return binary.LittleEndian.AppendUint32(f, crc32.Checksum(f, crc32.MakeTable(crc32.Castagnoli)))
}

// A contribution holding NaN is left out of the average, reported, and
// never spread: the round succeeds for everyone else with the same bits,
// the mean of the others.
func TestAllReduceDropsNonFiniteContribution(t *testing.T) {
	_, ts, ids := memPeers(3)
	var mu sync.Mutex
	var dropped []peer.ID
	var avs []*Averager
	for _, tr := range ts[:2] {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: 2 * time.Second,
			OnDrop: func(_ string, p peer.ID, _ error) { mu.Lock(); dropped = append(dropped, p); mu.Unlock() }}))
	}
	const n = 64
	samples := []int{1, 1, 1}
	shares := []int{1, 1, 0} // peer 2 owns nothing: it only sends
	r := Round{Step: 3, Members: ids, Samples: samples, Shares: shares, ID: RoundID("ab", 3, 0, ids, samples, shares)}
	// Peer 2 speaks the protocol by hand: NaN parts to owners 0 and 1.
	var wg sync.WaitGroup
	for j := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := ts[2].Open(context.Background(), ids[j], gossip.ProtoAllReduce)
			if err != nil {
				t.Error(err)
				return
			}
			hdr, _ := json.Marshal(partHeader{Round: r.ID, Sender: 2, Part: j, Samples: 1})
			s.Send(hdr)
			lo, hi := r.Bounds(n, j)
			s.Send(nanFrame(hi - lo))
			s.Recv(1 << 20)
			s.Close()
		}()
	}
	local := [][]float32{make([]float32, n), make([]float32, n)}
	for e := range n {
		local[0][e], local[1][e] = float32(e), float32(3*e)
	}
	outs := [][]float32{make([]float32, n), make([]float32, n)}
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = avs[i].AllReduce(context.Background(), r, local[i], outs[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
	}
	for e := range n {
		if outs[0][e] != float32(2*e) || math.Float32bits(outs[0][e]) != math.Float32bits(outs[1][e]) {
			t.Fatalf("element %d: %v and %v, want %v from both", e, outs[0][e], outs[1][e], 2*e)
		}
	}
	if len(dropped) != 2 || dropped[0] != ids[2] || dropped[1] != ids[2] {
		t.Errorf("drops reported: %v, want peer 2 at both owners", dropped)
	}
}
