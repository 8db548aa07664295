package allreduce

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

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// Parts are sized so the slowest uplink finishes first: a member whose
// uplink alone sets the round time owns nothing, the others split evenly
// within what their links allow; clients own nothing; unmeasured members
// count at the median; equal means nil.
func TestPartShares(t *testing.T) {
	const mbit = 125e3 // bytes/s
	for _, c := range []struct {
		name  string
		joins []gossip.Join
		want  []int
	}{
		{"nobody measured", []gossip.Join{{}, {}, {}}, nil},
		{"all equal", []gossip.Join{{Uplink: 5}, {Uplink: 5}, {Uplink: 5}}, nil},
		{"two members: the split cannot help", []gossip.Join{{Uplink: 1}, {Uplink: 1000}}, nil},
		{"2 Mbit/s among 100 Mbit/s owns nothing", []gossip.Join{{Uplink: 100 * mbit}, {Uplink: 2 * mbit}, {Uplink: 100 * mbit}, {Uplink: 100 * mbit}}, []int{341, 0, 341, 341}},
		{"unmeasured counts at the median", []gossip.Join{{Uplink: 100 * mbit}, {Uplink: 2 * mbit}, {}, {Uplink: 100 * mbit}}, []int{341, 0, 341, 341}},
		{"client owns nothing", []gossip.Join{{Client: true}, {}, {}}, []int{0, 512, 512}},
		{"a fast link owns at most 4x an even part", []gossip.Join{{Uplink: 1000}, {Uplink: 1}, {Uplink: 1}, {Uplink: 1}, {Uplink: 1}}, []int{819, 51, 51, 51, 51}},
		{"only clients", []gossip.Join{{Client: true}, {Client: true}}, nil},
	} {
		if got := PartShares(c.joins); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// Over random links, the shares never make the slowest member slower
// than an even split or any of many random splits would, and add up to
// the whole vector.
func TestPartSharesBeatEvenSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	roundTime := func(rates []float64, fracs []float64) float64 {
		k := float64(len(rates))
		var worst float64
		for i, r := range rates {
			worst = max(worst, (1+(k-2)*fracs[i])/r)
		}
		return worst
	}
	for trial := range 500 {
		k := 3 + rng.IntN(8)
		joins := make([]gossip.Join, k)
		rates := make([]float64, k)
		for i := range joins {
			rates[i] = math.Exp(rng.Float64() * 6) // 1 to 400: a slow volunteer to a lab
			joins[i].Uplink = rates[i]
		}
		shares := PartShares(joins)
		fracs := make([]float64, k)
		even := make([]float64, k)
		total := 0
		for i := range k {
			even[i] = 1 / float64(k)
			fracs[i] = even[i]
			if shares != nil {
				fracs[i] = float64(shares[i]) / shareTotal
				total += shares[i]
			}
		}
		if shares != nil && (total < shareTotal-k || total > shareTotal+k) {
			t.Fatalf("trial %d: shares %v add up to %d, want about %d", trial, shares, total, shareTotal)
		}
		got, base := roundTime(rates, fracs), roundTime(rates, even)
		if got > base*1.01 {
			t.Fatalf("trial %d: rates %v, shares %v: round time %.4g, an even split takes %.4g", trial, rates, shares, got, base)
		}
		// Nor does any other split do better, here random ones that
		// favour the fast links.
		for range 50 {
			other := make([]float64, k)
			var sum float64
			for i := range other {
				other[i] = rng.Float64() * math.Pow(rates[i], rng.Float64()*2)
				sum += other[i]
			}
			for i := range other {
				other[i] /= sum
			}
			if alt := roundTime(rates, other); alt < got*0.99 {
				t.Fatalf("trial %d: rates %v: shares %v take %.4g, the split %v only %.4g", trial, rates, shares, got, other, alt)
			}
		}
		// No member's bound can be beaten: owning nothing, the slowest
		// uplink still sends the whole vector once.
		floor := 0.0
		for _, r := range rates {
			floor = max(floor, 1/r)
		}
		if got < floor*0.999 {
			t.Fatalf("trial %d: round time %.4g below the floor %.4g: the model is wrong", trial, got, floor)
		}
	}
}

// Weighted bounds tile the vector in member order, sized by share.
func TestRoundBoundsTile(t *testing.T) {
	r := Round{Members: []peer.ID{testutil.PeerID(0), testutil.PeerID(1), testutil.PeerID(2), testutil.PeerID(3)}, Shares: []int{16, 32, 0, 8}}
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
	net.SetFault(func(e gossip.FrameEvent) gossip.FrameAction {
		if e.To == ids[client] && e.Opener && e.Proto == gossip.ProtoAllReduce {
			toClient.Add(1)
		}
		return gossip.Deliver
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
func TestMatchSharesFollowUplink(t *testing.T) {
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
			Uplink: func() (float64, bool) { return c.rate, c.client }}, st))
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
		// At 100 B/s, member 0 alone sends the whole vector as slowly as
		// member 1 sends it and its average of everything: it owns nothing.
		want := map[int]int{0: 0, 1: shareTotal, 2: 0}[slices.Index(ids, m)]
		if r.Shares[i] != want {
			t.Errorf("member %d has share %d, want %d (shares %v)", slices.Index(ids, m), r.Shares[i], want, r.Shares)
		}
		if wantRate := caps[slices.Index(ids, m)].rate; r.Rates[i] != wantRate {
			t.Errorf("member %d announced at %v B/s, joined with %v", slices.Index(ids, m), r.Rates[i], wantRate)
		}
	}
}
