package allreduce

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
)

func TestReportRoundTrip(t *testing.T) {
	rep := report{sums: make([]digest, 3), has: []bool{true, false, true}}
	rep.sums[0] = digestOf([]byte("a"))
	rep.sums[2] = digestOf([]byte("c"))
	b := encodeReport("r1", rep)
	id, got, err := decodeReport(b)
	if err != nil || id != "r1" || !slices.Equal(got.has, rep.has) || got.sums[0] != rep.sums[0] || got.sums[2] != rep.sums[2] || got.sums[1] != (digest{}) {
		t.Fatalf("round trip: %q %+v %v", id, got, err)
	}
	for name, frame := range map[string][]byte{
		"empty":       nil,
		"no id":       {0, 0},
		"long id":     append([]byte{65}, bytes.Repeat([]byte("x"), 65)...),
		"short id":    {5, 'a'},
		"no count":    {1, 'a'},
		"huge count":  {1, 'a', 0xff, 0xff, 0x03},
		"short parts": {1, 'a', 2, 0},
		"bad flag":    {1, 'a', 1, 2},
		"short sum":   {1, 'a', 1, 1, 7, 7},
		"stray":       append(slices.Clone(b), 0),
	} {
		if _, _, err := decodeReport(frame); !errors.Is(err, errReport) {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
	}
}

func FuzzDecodeReport(f *testing.F) {
	f.Add(encodeReport("r", report{sums: make([]digest, 2), has: []bool{true, false}}))
	f.Add([]byte{1, 'a', 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, rep, err := decodeReport(b)
		if err != nil {
			return
		}
		id2, rep2, err := decodeReport(encodeReport(id, rep))
		if err != nil || id2 != id || !slices.Equal(rep2.has, rep.has) || !slices.Equal(rep2.sums, rep.sums) {
			t.Fatalf("a report does not survive encoding: %v", err)
		}
	})
}

// The digest a repair answer must match is the one most reports hold;
// a tie between two is no agreement; a part nobody holds has none.
func TestAgreedAndMismatches(t *testing.T) {
	a, b := digestOf([]byte("a")), digestOf([]byte("b"))
	rep := func(sums ...*digest) *report {
		r := &report{sums: make([]digest, len(sums)), has: make([]bool, len(sums))}
		for j, s := range sums {
			if s != nil {
				r.sums[j], r.has[j] = *s, true
			}
		}
		return r
	}
	reports := []*report{nil, rep(&a, nil, &a), rep(&b, nil, &b), rep(&a, nil, nil)}
	if d, ok := agreed(reports, 0); !ok || d != a {
		t.Fatalf("part 0: %x %v, want the majority's", d, ok)
	}
	if _, ok := agreed(reports, 1); ok {
		t.Fatal("part 1: nobody holds it, yet agreed")
	}
	if _, ok := agreed(reports, 2); ok {
		t.Fatal("part 2: a tie between two digests, yet agreed")
	}
	if !held(reports, 2) || held(reports, 1) {
		t.Fatal("held")
	}
	// We hold a for parts 0 and 2 and nothing of part 1: member 2 differs on both.
	got := mismatches([]digest{a, {}, a}, []bool{true, false, true}, reports)
	want := []mismatch{{part: 0, member: 2}, {part: 2, member: 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("mismatches %v, want %v", got, want)
	}
	if got := mismatches([]digest{a, {}, a}, []bool{true, false, true}, []*report{nil, rep(&a, &b, nil)}); len(got) != 0 {
		t.Fatalf("parts only one side holds compare with nothing, got %v", got)
	}
}

func TestPenalties(t *testing.T) {
	const base = time.Minute
	t0 := time.Unix(1000, 0)
	p, q := peer.ID("p"), peer.ID("q")
	ps := newPenalties()
	if ps.active(p, t0) {
		t.Fatal("penalised before any offence")
	}
	if end := ps.add(p, t0, base); !end.Equal(t0.Add(base)) {
		t.Fatalf("first penalty ends %v, want after %v", end.Sub(t0), base)
	}
	if !ps.active(p, t0.Add(base-1)) || ps.active(p, t0.Add(base)) || ps.active(q, t0) {
		t.Fatal("a penalty lasts exactly its length, for its peer only")
	}
	// A repeat while remembered doubles; many repeats stop doubling.
	if end := ps.add(p, t0.Add(base), base); !end.Equal(t0.Add(3 * base)) {
		t.Fatalf("second penalty ends %v, want doubled", end.Sub(t0))
	}
	now := t0.Add(3 * base)
	for range 20 {
		ps.add(p, now, base)
	}
	if d := ps.peers[p].last; d != base<<maxPenaltyDoublings {
		t.Fatalf("penalty grew to %v, want capped at %v", d, base<<maxPenaltyDoublings)
	}
	// Forgotten once it has run out for as long again: the next offence starts over.
	end := ps.peers[p].until
	later := end.Add(base << maxPenaltyDoublings)
	if e := ps.add(p, later, base); !e.Equal(later.Add(base)) {
		t.Fatalf("after a quiet spell the penalty is %v, want the base again", e.Sub(later))
	}
	// The table is capped.
	for i := range maxPenalised + 10 {
		ps.add(peer.ID(rune(i)), later, base)
	}
	if len(ps.peers) > maxPenalised {
		t.Fatalf("%d peers held, cap %d", len(ps.peers), maxPenalised)
	}
}

// evil wraps one member's transport: rewrite sees each frame the member
// sends on a stream it accepted (served) or opened, and returns what to
// send instead, or nil to reset the stream. It is the adversary, in
// test code only.
type evil struct {
	gossip.Transport
	rewrite func(proto protocol.ID, to peer.ID, served bool, frame []byte) []byte
}

func (e *evil) Handle(proto protocol.ID, h func(gossip.Stream)) {
	e.Transport.Handle(proto, func(s gossip.Stream) { h(&evilStream{Stream: s, e: e, proto: proto, served: true}) })
}

func (e *evil) Open(ctx context.Context, p peer.ID, proto protocol.ID) (gossip.Stream, error) {
	s, err := e.Transport.Open(ctx, p, proto)
	if err != nil {
		return nil, err
	}
	return &evilStream{Stream: s, e: e, proto: proto}, nil
}

type evilStream struct {
	gossip.Stream
	e      *evil
	proto  protocol.ID
	served bool
}

func (s *evilStream) Send(f []byte) error {
	out := s.e.rewrite(s.proto, s.RemotePeer(), s.served, f)
	if out == nil {
		s.Stream.Reset()
		return errors.New("evil: reset")
	}
	return s.Stream.Send(out)
}

// isResult reports that f is an answer carrying a part's bytes (an
// owner's result or a repair answer).
func isResult(f []byte) bool { return len(f) > 1 && f[0] == resultOK }

// forge turns a result frame into another well-formed one: the first
// value moved by one.
func forge(t *testing.T, f []byte) []byte {
	n, err := compression.PeekCount(f[1:])
	if err != nil {
		t.Error(err)
		return f
	}
	vals := make([]float32, n)
	if err := compression.DecodePart(vals, f[1:]); err != nil {
		t.Error(err)
		return f
	}
	vals[0]++
	enc, err := compression.EncodePart(nil, compression.FP32{}, compression.LosslessNone, vals)
	if err != nil {
		t.Error(err)
		return f
	}
	return append([]byte{resultOK}, enc...)
}

// named collects, per member, whom OnMisbehaving named and why.
type named struct {
	mu  sync.Mutex
	got map[int]map[peer.ID]string
}

func (n *named) hook(i int) func(string, peer.ID, string) {
	return func(_ string, p peer.ID, why string) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.got == nil {
			n.got = map[int]map[peer.ID]string{}
		}
		if n.got[i] == nil {
			n.got[i] = map[peer.ID]string{}
		}
		n.got[i][p] = why
	}
}

func (n *named) by(i int) map[peer.ID]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.got[i]
}

// verifyPeers builds k averagers (fp32) and matchmakers over a
// MemNetwork; wrap may replace member i's transport. The assemblers give
// no part to the peers their averager penalises.
func verifyPeers(t *testing.T, k int, nm *named, wrap func(i int, tr gossip.Transport) gossip.Transport) ([]*Matchmaker, []*Averager, []peer.ID, *gossip.MemNetwork) {
	net, ts, ids := memPeers(k)
	net.Timeout = 150 * time.Millisecond
	view := &fixedView{ids: ids}
	mms := make([]*Matchmaker, k)
	avs := make([]*Averager, k)
	for i, mt := range ts {
		var tr gossip.Transport = mt
		if wrap != nil {
			tr = wrap(i, tr)
		}
		avs[i] = NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: 600 * time.Millisecond, OnMisbehaving: nm.hook(i)})
		mms[i] = NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: 100 * time.Millisecond, Slack: 300 * time.Millisecond, NoPart: avs[i].Penalised}, view)
	}
	return mms, avs, ids, net
}

// matchAndReduce is step, also returning every member's round.
func matchAndReduce(mms []*Matchmaker, avs []*Averager, ids []peer.ID, s uint64, vecs [][]float32, samples []int) ([]Round, []outcome) {
	rounds := make([]Round, len(ids))
	res := make([]outcome, len(ids))
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := mms[i].Match(context.Background(), s, samples[i], ids)
			if err != nil {
				res[i].err = err
				return
			}
			rounds[i] = r
			out := make([]float32, len(vecs[i]))
			if res[i].err = avs[i].AllReduce(context.Background(), r, vecs[i], out); res[i].err == nil {
				res[i].out = out
			}
		}()
	}
	wg.Wait()
	return rounds, res
}

// An owner that sends one member other (well-formed) bytes than the rest:
// every member's round fails with ErrMismatch, nobody applies, every
// honest member names the owner, and the retry's assembler gives it no
// part, so the retry succeeds with the exact mean.
func TestEquivocatingOwnerVoidsRoundAndLosesItsPart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 4
		_, _, ids := memPeers(k)
		// The liar and its victim are not the step's assembler: an
		// assembler that is itself the liar gives itself a part (see
		// the report on what is left out).
		var others []peer.ID
		for _, p := range slices.Sorted(slices.Values(ids)) {
			if p != Assembler(0, ids) {
				others = append(others, p)
			}
		}
		bad, victim := others[0], others[1]
		badIdx := slices.Index(ids, bad)
		var nm named
		mms, avs, ids, net := verifyPeers(t, k, &nm, func(i int, tr gossip.Transport) gossip.Transport {
			if i != badIdx {
				return tr
			}
			return &evil{Transport: tr, rewrite: func(proto protocol.ID, to peer.ID, served bool, f []byte) []byte {
				if proto == gossip.ProtoAllReduce && served && to == victim && isResult(f) {
					return forge(t, f)
				}
				return f
			}}
		})
		defer net.Release()
		rng := rand.New(rand.NewPCG(3, 4))
		vecs := make([][]float32, k)
		samples := make([]int, k)
		for i := range vecs {
			vecs[i], samples[i] = randVec(rng, 401), 1+rng.IntN(5)
		}

		rounds, res := matchAndReduce(mms, avs, ids, 0, vecs, samples)
		if lo, hi := rounds[0].Bounds(401, rounds[0].Index(bad)); lo == hi {
			t.Fatal("the liar owned no part in the first round: this tested nothing")
		}
		for i, r := range res {
			if !errors.Is(r.err, ErrMismatch) {
				t.Fatalf("member %d: %v, want ErrMismatch (nobody applies)", i, r.err)
			}
		}
		for i, p := range ids {
			if p == bad {
				continue
			}
			why, ok := nm.by(i)[bad]
			if !ok {
				t.Fatalf("member %d did not name the owner; named %v", i, nm.by(i))
			}
			t.Logf("member %d named the owner: %s", i, why)
		}

		rounds, res = matchAndReduce(mms, avs, ids, 0, vecs, samples)
		for i, r := range res {
			if r.err != nil {
				t.Fatalf("retry, member %d: %v", i, r.err)
			}
			if lo, hi := rounds[i].Bounds(401, rounds[i].Index(bad)); lo != hi {
				t.Fatalf("retry, member %d: the liar owns values [%d, %d)", i, lo, hi)
			}
		}
		if err := consistent(res); err != nil {
			t.Fatal(err)
		}
		checkMean(t, res[0].out, vecs, samples, []int{0, 1, 2, 3})
	})
}

// A member whose owner never sent it a part repairs it from the others,
// and takes only bytes that match the digest most members report: here
// the one member willing to answer forges them, so the repair fails (and
// names the forger) rather than applying them.
func TestRepairRefusesWrongBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 4
		_, _, ids := memPeers(k)
		sorted := slices.Sorted(slices.Values(ids))
		owner, asker, liar := sorted[0], sorted[1], sorted[2]
		var nm named
		_, avs, ids, net := verifyPeers(t, k, &nm, func(i int, tr gossip.Transport) gossip.Transport {
			me := ids[i]
			return &evil{Transport: tr, rewrite: func(proto protocol.ID, to peer.ID, served bool, f []byte) []byte {
				switch {
				case me == owner && proto == gossip.ProtoAllReduce && served && to == asker && isResult(f):
					return nil // the asker never gets the owner's result
				case proto == gossip.ProtoPart && served && me == liar && isResult(f):
					return forge(t, f)
				case proto == gossip.ProtoPart && served && me != liar:
					return nil // only the liar answers repairs
				}
				return f
			}}
		})
		defer net.Release()
		rng := rand.New(rand.NewPCG(5, 6))
		vecs := make([][]float32, k)
		samples := make([]int, k)
		for i := range vecs {
			vecs[i], samples[i] = randVec(rng, 64), 1
		}
		r := Round{Step: 0, Members: ids, Samples: samples, ID: RoundID("ab", 0, 0, ids, samples, nil)}
		_, errs := runRound(t, avs, r, vecs)
		a := slices.Index(ids, asker)
		err := errs[a]
		if err == nil || errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "not the one most members report") {
			t.Fatalf("asker: %v, want the forged repair refused", err)
		}
		if why, ok := nm.by(a)[liar]; !ok || !strings.Contains(why, "repair") {
			t.Fatalf("asker named %v, want the forger", nm.by(a))
		}
	})
}

// A member that reports false digests can void the round, never make an
// honest member apply other bytes: every honest member fails it, and
// names the liar.
func TestFalseReportOnlyVoids(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 4
		_, _, ids := memPeers(k)
		liar := ids[2]
		var nm named
		_, avs, ids, net := verifyPeers(t, k, &nm, func(i int, tr gossip.Transport) gossip.Transport {
			if ids[i] != liar {
				return tr
			}
			return &evil{Transport: tr, rewrite: func(proto protocol.ID, to peer.ID, served bool, f []byte) []byte {
				if proto != gossip.ProtoDigest || served {
					return f
				}
				id, rep, err := decodeReport(f)
				if err != nil {
					t.Error(err)
					return f
				}
				for j := range rep.sums {
					rep.sums[j][0] ^= 1
				}
				return encodeReport(id, rep)
			}}
		})
		defer net.Release()
		rng := rand.New(rand.NewPCG(7, 8))
		vecs := make([][]float32, k)
		samples := make([]int, k)
		for i := range vecs {
			vecs[i], samples[i] = randVec(rng, 64), 1
		}
		r := Round{Step: 0, Members: ids, Samples: samples, ID: RoundID("ab", 0, 0, ids, samples, nil)}
		_, errs := runRound(t, avs, r, vecs)
		for i, err := range errs {
			if ids[i] == liar {
				continue
			}
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("member %d: %v, want the round void", i, err)
			}
			if _, ok := nm.by(i)[liar]; !ok {
				t.Fatalf("member %d named %v, not the liar", i, nm.by(i))
			}
		}
	})
}

// Reports are taken only from the round's other members, in the round's
// shape, and a member's first report is final.
func TestServeReportRefusesStrangers(t *testing.T) {
	_, ts, ids := memPeers(3)
	a := NewAverager(ts[0], AveragerConfig{})
	r := Round{ID: "r", Members: ids[:2], Samples: []int{1, 1}}
	res := a.track(r, 0, time.Now().Add(time.Minute))
	send := func(from int, id string, parts int, first byte) error {
		rep := report{sums: make([]digest, parts), has: slices.Repeat([]bool{true}, parts)}
		for j := range rep.sums {
			rep.sums[j][0] = first
		}
		s, err := ts[from].Open(context.Background(), ids[0], gossip.ProtoDigest)
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.Send(encodeReport(id, rep)); err != nil {
			return err
		}
		_, err = s.Recv(1)
		return err
	}
	taken := func() []*report {
		a.mu.Lock()
		defer a.mu.Unlock()
		return slices.Clone(res.reports)
	}
	if send(2, "r", 2, 1) == nil || send(1, "r", 3, 1) == nil || send(1, "other", 2, 1) == nil {
		t.Fatal("a stranger's report, one of another shape or of an unknown round was acknowledged")
	}
	if got := taken(); got[0] != nil || got[1] != nil {
		t.Fatalf("refused reports were taken: %v", got)
	}
	if err := send(1, "r", 2, 1); err != nil {
		t.Fatalf("a member's report: %v", err)
	}
	send(1, "r", 2, 2)
	if got := taken(); got[1] == nil || got[1].sums[0][0] != 1 {
		t.Fatal("a member's first report is not the one kept")
	}
}

// What the check costs a member per round: one digest over the whole
// averaged vector (16 MiB of fp32 here, as in swarmtrain bench allreduce).
func BenchmarkDigest(b *testing.B) {
	part := make([]byte, 16<<20)
	b.SetBytes(int64(len(part)))
	for b.Loop() {
		digestOf(part)
	}
}
