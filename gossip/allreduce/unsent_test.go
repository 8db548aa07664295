package allreduce

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// cutOff is a transport on which opening a stream to down fails at once
// (a dead peer refuses), and to slow blocks until the caller gives up (a
// peer reached only through a relay that is gone).
type cutOff struct {
	gossip.Transport
	down, slow peer.ID
}

func (c *cutOff) Open(ctx context.Context, p peer.ID, proto protocol.ID) (gossip.Stream, error) {
	switch p {
	case c.down:
		return nil, errors.New("connection refused")
	case c.slow:
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return c.Transport.Open(ctx, p, proto)
}

// A member that cannot even open a stream to a part's owner knows that
// part is lost (the owner needs every member's copy), so it fails the
// round at once instead of asking the others for the part: here the one
// other member it would wait for is reachable only after an open
// timeout, which used to make it join the retry that late.
func TestUnsentCopyFailsTheRoundAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 4
		net, ts, ids := memPeers(k)
		net.Timeout = time.Minute
		defer net.Release()
		sorted := slices.Sorted(slices.Values(ids))
		var others []peer.ID
		for _, p := range sorted {
			if p != Assembler(0, ids) {
				others = append(others, p)
			}
		}
		owner, x, y := others[0], others[1], others[2]
		view := &fixedView{ids: ids}
		const roundTimeout = 10 * time.Second
		mms := make([]*Matchmaker, k)
		avs := make([]*Averager, k)
		for i, mt := range ts {
			var tr gossip.Transport = mt
			switch ids[i] {
			case x:
				tr = &cutOff{Transport: mt, down: owner, slow: y}
			case y:
				tr = &cutOff{Transport: mt, slow: x}
			}
			avs[i] = NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: roundTimeout})
			mms[i] = NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: time.Second}, view)
		}
		var wg sync.WaitGroup
		var took time.Duration
		var xerr error
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := mms[i].Match(context.Background(), 0, 1, ids)
				if err != nil {
					t.Errorf("member %d: match: %v", i, err)
					return
				}
				if lo, hi := r.Bounds(64, r.Index(owner)); lo == hi {
					t.Errorf("the owner owns no part: this tests nothing")
				}
				vec := make([]float32, 64)
				start := time.Now()
				err = avs[i].AllReduce(context.Background(), r, vec, make([]float32, 64))
				if ids[i] == x {
					took, xerr = time.Since(start), err
				}
			}()
		}
		wg.Wait()
		time.Sleep(time.Hour) // every deadline passes: the bubble's goroutines end
		if xerr == nil {
			t.Fatal("the member that could not reach an owner applied the round")
		}
		if open := roundTimeout / openDivisor; took >= open/2 {
			t.Fatalf("it failed the round after %v (open timeout %v): it waited for the unreachable member instead of failing at once; err: %v", took, open, xerr)
		}
		t.Logf("failed after %v: %v", took, xerr)
	})
}
