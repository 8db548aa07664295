package gossip

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// resetStream counts Resets; PullChunks calls nothing else on a stream.
type resetStream struct {
	Stream
	resets atomic.Int32
}

func (s *resetStream) Reset() error { s.resets.Add(1); return nil }

type fakeSource struct {
	p   peer.ID
	s   *resetStream
	bad bool // every fetch fails
}

func (c fakeSource) Source() (peer.ID, Stream) { return c.p, c.s }

func fakeSources(bad ...bool) []fakeSource {
	var out []fakeSource
	for i, b := range bad {
		out = append(out, fakeSource{p: testutil.PeerID(i + 1), s: &resetStream{}, bad: b})
	}
	return out
}

func fakeFetcher(c fakeSource) func(int) error {
	return func(k int) error {
		if c.bad {
			return errors.New("bad chunk")
		}
		return nil
	}
}

func newPull() *Pull {
	return &Pull{Chunks: map[peer.ID]int{}, Failed: map[peer.ID]error{}}
}

// A failing source is dropped with its error and reset, and its chunk
// goes to the others: every chunk arrives exactly once.
func TestPullChunksHandsFailedChunksOn(t *testing.T) {
	srcs := fakeSources(false, true, false)
	todo := []int{0, 2, 3, 5, 6, 7, 9}
	p := newPull()
	got := map[int]int{}
	p.Got = func(k int) { got[k]++ }
	// The good sources wait for the bad one to fail first, so it does
	// take a chunk.
	failed := make(chan struct{})
	left, err := PullChunks(context.Background(), p, srcs, todo, func(c fakeSource) func(int) error {
		return func(int) error {
			if c.bad {
				close(failed)
				return errors.New("bad chunk")
			}
			<-failed
			return nil
		}
	})
	if left != 0 || err != nil {
		t.Fatalf("PullChunks = %d left, %v; want all fetched", left, err)
	}
	for _, k := range todo {
		if got[k] != 1 {
			t.Fatalf("chunk %d delivered %d times, want once", k, got[k])
		}
	}
	if len(got) != len(todo) {
		t.Fatalf("%d chunks delivered, want %d", len(got), len(todo))
	}
	if p.Chunks[srcs[0].p]+p.Chunks[srcs[2].p] != len(todo) || p.Chunks[srcs[1].p] != 0 {
		t.Fatalf("chunks by source %v", p.Chunks)
	}
	if err := p.Failed[srcs[1].p]; err == nil || len(p.Failed) != 1 {
		t.Fatalf("failed %v, want only the bad source", p.Failed)
	}
	if srcs[1].s.resets.Load() == 0 {
		t.Fatal("the failed source's stream was not reset")
	}
}

func TestPullChunksAllFail(t *testing.T) {
	srcs := fakeSources(true, true)
	p := newPull()
	left, err := PullChunks(context.Background(), p, srcs, []int{0, 1, 2}, fakeFetcher)
	if left != 3 || err != nil || len(p.Failed) != 2 {
		t.Fatalf("PullChunks = %d left, %v, failed %v; want 3 left and both failed", left, err, p.Failed)
	}
}

func TestPullChunksContextEnded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	left, err := PullChunks(ctx, newPull(), fakeSources(false), []int{0, 1}, func(fakeSource) func(int) error {
		return func(int) error { return ctx.Err() }
	})
	if left == 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("PullChunks = %d left, %v; want chunks left and the context's error", left, err)
	}
}

func TestAskEachKeepsPeerOrder(t *testing.T) {
	peers := []peer.ID{testutil.PeerID(1), testutil.PeerID(2), testutil.PeerID(3)}
	vals, errs := AskEach(peers, func(p peer.ID) (string, error) {
		if p == peers[1] {
			return "", fmt.Errorf("refused")
		}
		return string(p), nil
	})
	if vals[0] != string(peers[0]) || vals[2] != string(peers[2]) || errs[1] == nil || errs[0] != nil || errs[2] != nil {
		t.Fatalf("AskEach = %q, %v; want answers in the peers' order", vals, errs)
	}
}
