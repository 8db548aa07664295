package statesync

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// squat holds one state stream at donor the way a slot squatter does: it
// pins the donor's step, asks for a chunk it will never read (the test's
// fault hook makes the donor's chunks to it crawl), and opens a new
// stream whenever the donor cuts it, until ctx ends.
func squat(ctx context.Context, t gossip.Transport, donor peer.ID, step uint64) {
	for ctx.Err() == nil {
		s, err := t.Open(ctx, donor, gossip.ProtoState)
		if err != nil {
			return
		}
		stop := context.AfterFunc(ctx, func() { s.Reset() })
		s.SetTimeout(24 * time.Hour)
		b, _ := json.Marshal(stateRequest{Run: "ab", Step: step})
		var m stateManifest
		if s.Send(b) == nil {
			if mb, err := s.Recv(gossip.MaxMessageSize + 1<<20); err == nil && json.Unmarshal(mb, &m) == nil && m.Error == "" {
				c, _ := json.Marshal(chunkRequest{Chunk: 0})
				if s.Send(c) == nil {
					s.Recv(maxChunkFrame(StateChunk)) // returns when the donor cuts us
				}
			}
		}
		s.Reset()
		stop()
		if m.Error != "" {
			select { // busy: try again soon
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
	}
}

// slowTo makes every chunk the donor sends to one of slow crawl (the
// manifest, frame 0, goes out at once): a joiner that reads a byte a
// second, or nothing, as a donor's blocked Send sees it.
func slowTo(net *gossip.MemNetwork, slow map[peer.ID]bool) {
	net.SlowDelay = 24 * time.Hour
	net.SetFault(func(ev gossip.FrameEvent) gossip.FrameAction {
		if slow[ev.To] && ev.Proto == gossip.ProtoState && !ev.Opener && ev.Seq > 0 {
			return gossip.Slow
		}
		return gossip.Deliver
	})
}

func (r *replica) slotsHeld() int {
	r.srv.mu.Lock()
	defer r.srv.mu.Unlock()
	return len(r.srv.slots)
}

// Acceptance (issue 14): four sybil identities that each hold the most
// state streams a peer may, reading nothing, and that reopen every stream
// the donor cuts, do not delay an honest joiner's download past 60 s.
// Fake time in a synctest bubble: the minute passes in milliseconds.
func TestSybilSlotSquattersDoNotDelayJoiner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, ts, ids := memPeers(6) // donor, four sybils, joiner
		net.Timeout = 2 * time.Second
		donor := &replica{step: 3, nParams: testNParams, nOpt: testNOpt}
		donor.srv = NewServer(ts[0], "ab", donor.current, donor.snapshot, nil)
		sybils := map[peer.ID]bool{}
		for _, id := range ids[1:5] {
			sybils[id] = true
		}
		slowTo(net, sybils)
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { // the donor's crawling sends end only with the donor
			cancel()
			net.Isolate(ids[0])
			synctest.Wait()
		}()
		for _, tr := range ts[1:5] {
			for range maxStateStreamsPerPeer {
				go squat(ctx, tr, ids[0], 3)
			}
		}
		synctest.Wait()
		if n := donor.slotsHeld(); n != maxStateStreams {
			t.Fatalf("the sybils hold %d slots, want all %d", n, maxStateStreams)
		}
		start := time.Now()
		var f *Fetched
		for time.Since(start) < 2*time.Minute {
			var err error
			if f, err = Fetch(ctx, ts[5], ids[:1], request(3)); err == nil {
				break
			}
			time.Sleep(2 * time.Second) // as a joiner retries: soon, not at once
		}
		took := time.Since(start)
		cancel()
		if f == nil {
			t.Fatalf("no download in %v with sybils on every slot", took)
		}
		checkFetched(t, f, 3)
		t.Logf("download done %v after the sybils took every slot", took)
		if took > 60*time.Second {
			t.Fatalf("download took %v with sybils on every slot, want ≤ 60s", took)
		}
	})
}

// A stream that holds its slot with nobody else asking is still cut
// once it has had the state's time at minLinkRate (plus slack), and the
// slot is free again.
func TestStateStreamCutAtLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, ts, ids := memPeers(2)
		donor := &replica{step: 3, nParams: testNParams, nOpt: testNOpt}
		donor.srv = NewServer(ts[0], "ab", donor.current, donor.snapshot, nil)
		slowTo(net, map[peer.ID]bool{ids[1]: true})
		defer net.Isolate(ids[0])
		s, err := ts[1].Open(context.Background(), ids[0], gossip.ProtoState)
		if err != nil {
			t.Fatal(err)
		}
		s.SetTimeout(24 * time.Hour)
		b, _ := json.Marshal(stateRequest{Run: "ab", Step: 3})
		s.Send(b)
		if _, err := s.Recv(gossip.MaxMessageSize + 1<<20); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c, _ := json.Marshal(chunkRequest{Chunk: 0})
		s.Send(c)
		if _, err := s.Recv(maxChunkFrame(StateChunk)); err == nil {
			t.Fatal("a crawling chunk arrived")
		}
		took := time.Since(start)
		life := streamLifetime(testNParams + testNOpt)
		if took < life || took > life+time.Second {
			t.Fatalf("stream cut after %v, want at its lifetime %v", took, life)
		}
		if n := donor.slotsHeld(); n != 0 {
			t.Fatalf("%d slots still held after the cut", n)
		}
	})
}

// A stream that asks for more than the state (here chunk 0 over and
// over) is cut once it passes the state's bytes and an eighth.
func TestStateStreamCutPastBudget(t *testing.T) {
	_, ts, ids, _ := donorsAt(t, 1, 3)
	s, err := ts[1].Open(context.Background(), ids[0], gossip.ProtoState)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	b, _ := json.Marshal(stateRequest{Run: "ab", Step: 3})
	s.Send(b)
	if _, err := s.Recv(gossip.MaxMessageSize + 1<<20); err != nil {
		t.Fatal(err)
	}
	n := numChunks(testNParams + testNOpt)
	got := 0
	for range 3 * n {
		c, _ := json.Marshal(chunkRequest{Chunk: 0})
		if s.Send(c) != nil {
			break
		}
		if _, err := s.Recv(maxChunkFrame(StateChunk)); err != nil {
			break
		}
		got++
	}
	// Each chunk-0 frame is a full chunk: the budget holds n of them and
	// an eighth, plus one frame of slack.
	if limit := n + n/8 + 1; got > limit || got < n {
		t.Fatalf("served %d copies of a chunk on one stream, want between %d and %d", got, n, limit)
	}
}

// When every slot is taken, a new joiner displaces only a stream that has
// fallen behind minLinkRate after its grace period, the one furthest
// behind; streams that keep up, or are still in their grace, stay.
func TestSlotPreemptsOnlyLaggingStreams(t *testing.T) {
	mock := clock.NewMock()
	_, ts, ids := memPeers(2)
	srv := NewServer(ts[0], "ab", func() (uint64, error) { return 0, nil }, func() (Snapshot, error) { return Snapshot{}, nil }, mock)
	start := mock.Now()
	var slots []*slot
	for i := range maxStateStreams {
		s, err := ts[1].Open(context.Background(), ids[0], gossip.ProtoState)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		sl := &slot{peer: testutil.PeerID(100 + i), st: s, start: start}
		srv.slots[sl] = struct{}{}
		srv.byPeer[sl.peer]++
		slots = append(slots, sl)
	}
	joiner := func() gossip.Stream {
		s, err := ts[1].Open(context.Background(), ids[0], gossip.ProtoState)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Reset() })
		return s
	}
	mock.Add(streamGrace + 20*time.Second)
	for _, sl := range slots { // everyone keeps up: 20 s at minLinkRate
		sl.sent = 20 * minLinkRate
	}
	if srv.acquire(joiner()) != nil {
		t.Fatal("a joiner displaced a stream that keeps up")
	}
	slots[3].sent = 10 * minLinkRate // behind by 10 s
	slots[5].sent = 2 * minLinkRate  // behind by 18 s: the victim
	if srv.acquire(joiner()) == nil {
		t.Fatal("no slot for a joiner while streams lag")
	}
	if _, held := srv.slots[slots[5]]; held || slots[5].cut == "" {
		t.Fatal("the stream furthest behind kept its slot")
	}
	if _, held := srv.slots[slots[3]]; !held {
		t.Fatal("a stream less far behind lost its slot first")
	}
	if len(srv.slots) != maxStateStreams {
		t.Fatalf("%d slots held, want %d", len(srv.slots), maxStateStreams)
	}
}
