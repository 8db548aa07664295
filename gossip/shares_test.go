package gossip

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Parts follow measured throughput within [1/4, 4] × the median; clients
// own nothing; unmeasured members get the median; equal means nil.
func TestPartShares(t *testing.T) {
	for _, c := range []struct {
		name  string
		joins []Join
		want  []int
	}{
		{"nobody measured", []Join{{}, {}, {}}, nil},
		{"all equal", []Join{{Throughput: 5}, {Throughput: 5}}, nil},
		{"proportional", []Join{{Throughput: 100}, {Throughput: 200}, {Throughput: 50}}, []int{16, 32, 8}},
		{"clamped", []Join{{Throughput: 1}, {Throughput: 1000}, {Throughput: 1e6}}, []int{4, 16, 64}},
		{"unmeasured gets the median", []Join{{Throughput: 100}, {}, {Throughput: 300}}, []int{5, 16, 16}},
		{"client owns nothing", []Join{{Throughput: 100, Client: true}, {}, {}}, []int{0, 16, 16}},
		{"only clients", []Join{{Client: true}, {Client: true}}, nil},
	} {
		if got := PartShares(c.joins); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// Weighted bounds tile the vector in member order, sized by share.
func TestRoundBoundsTile(t *testing.T) {
	r := Round{Members: []peer.ID{testID(0), testID(1), testID(2), testID(3)}, Shares: []int{16, 32, 0, 8}}
	const n = 1000
	next := 0
	for i := range r.Members {
		lo, hi := r.Bounds(n, i)
		if lo != next || hi < lo {
			t.Fatalf("part %d = [%d,%d), want it to start at %d", i, lo, hi, next)
		}
		if want := n * r.Shares[i] / 56; hi-lo < want-1 || hi-lo > want+1 {
			t.Errorf("part %d has %d values, want about %d", i, hi-lo, want)
		}
		next = hi
	}
	if next != n {
		t.Fatalf("parts end at %d, want %d", next, n)
	}
}

// A round with uneven parts and a client member: every member ends with
// the same bits, the weighted mean, and nobody opens a stream to the
// client.
func TestAllReduceUnevenPartsAndClient(t *testing.T) {
	net, ts, ids := memPeers(4)
	var toClient atomic.Int64
	const client = 2
	net.SetFault(func(e FrameEvent) FrameAction {
		if e.To == ids[client] && e.Opener && e.Proto == ProtoAllReduce {
			toClient.Add(1)
		}
		return Deliver
	})
	var avs []*Averager
	for _, tr := range ts {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: 5 * time.Second}))
	}
	rng := rand.New(rand.NewPCG(3, 3))
	const n = 4099
	vecs := make([][]float32, 4)
	samples := []int{3, 1, 4, 1}
	for i := range vecs {
		vecs[i] = randVec(rng, n)
	}
	shares := []int{16, 32, 0, 8}
	r := Round{Step: 1, Members: ids, Samples: samples, Shares: shares, ID: RoundID("ab", 1, 0, ids, samples, shares)}
	outs, errs := runRound(t, avs, r, vecs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
	}
	for i := range outs {
		for e := range outs[0] {
			if math.Float32bits(outs[i][e]) != math.Float32bits(outs[0][e]) {
				t.Fatalf("peer %d differs at %d", i, e)
			}
		}
	}
	for e := 0; e < n; e++ {
		var want float64
		for i := range vecs {
			want += float64(samples[i]) * float64(vecs[i][e])
		}
		want /= 9
		if d := math.Abs(float64(outs[0][e]) - want); d > 1e-5*(1+math.Abs(want)) {
			t.Fatalf("element %d: got %v want %v", e, outs[0][e], want)
		}
	}
	if c := toClient.Load(); c != 0 {
		t.Errorf("%d all-reduce frames were sent on streams opened to the client", c)
	}
}

// The assembler turns the joiners' capacities into the group's shares,
// and every member gets the same Round, shares included.
func TestMatchSharesFollowCapacity(t *testing.T) {
	_, ts, ids := memPeers(3)
	st := &fixedView{step: 2, ids: ids}
	caps := []struct {
		rate   float64
		client bool
	}{{100, false}, {200, false}, {0, true}}
	var mms []*Matchmaker
	for i, tr := range ts {
		c := caps[i]
		mms = append(mms, NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: 3 * time.Second,
			Capacity: func() (float64, bool) { return c.rate, c.client }}, st))
	}
	rounds := make([]Round, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range mms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rounds[i], errs[i] = mms[i].Match(context.Background(), 2, 8, ids)
		}()
	}
	wg.Wait()
	for i := range rounds {
		if errs[i] != nil {
			t.Fatalf("peer %d: %v", i, errs[i])
		}
		if rounds[i].ID != rounds[0].ID || !slices.Equal(rounds[i].Shares, rounds[0].Shares) {
			t.Fatalf("peer %d got another round", i)
		}
	}
	r := rounds[0]
	for i, m := range r.Members {
		want := map[int]int{0: 8, 1: 16, 2: 0}[slices.Index(ids, m)] // relative to the (upper) median, 200
		if r.Shares[i] != want {
			t.Errorf("member %d has share %d, want %d (shares %v)", slices.Index(ids, m), r.Shares[i], want, r.Shares)
		}
	}
}
