package allreduce

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// t0 is an arbitrary instant: the round bookkeeping reads no clock, the
// tests say what time it is.
var t0 = time.Unix(1_000_000, 0)

// ownerOf starts a 3-member round in which member me owns the values
// [0, 4) and holds own as its copy; the deadline is a minute off.
func ownerOf(t *testing.T, me int) (*roundTable, *roundState, Round) {
	t.Helper()
	ids := []peer.ID{testutil.PeerID(0), testutil.PeerID(1), testutil.PeerID(2)}
	r := Round{ID: "r", Members: ids, Samples: []int{1, 2, 3}}
	tab := newRoundTable()
	rs, err := tab.start(r, me, 0, 4, []float32{1, 1, 1, 1}, t0.Add(time.Minute), t0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return &tab, rs, r
}

// A sender's header is checked against the round before its part is read.
func TestRoundStateAdmit(t *testing.T) {
	_, rs, r := ownerOf(t, 0)
	stranger := testutil.PeerID(9)
	for _, c := range []struct {
		name string
		h    partHeader
		from peer.ID
		ok   bool
	}{
		{"member 1 sends our part", partHeader{Round: "r", Sender: 1, Part: 0, Samples: 2}, r.Members[1], true},
		{"member 2 sends our part", partHeader{Round: "r", Sender: 2, Part: 0, Samples: 3}, r.Members[2], true},
		{"a non-member", partHeader{Round: "r", Sender: 1, Part: 0, Samples: 2}, stranger, false},
		{"a member posing as another", partHeader{Round: "r", Sender: 1, Part: 0, Samples: 2}, r.Members[2], false},
		{"a sender index out of the round", partHeader{Round: "r", Sender: 3, Part: 0, Samples: 2}, stranger, false},
		{"a negative sender index", partHeader{Round: "r", Sender: -1, Part: 0, Samples: 2}, r.Members[1], false},
		{"ourselves", partHeader{Round: "r", Sender: 0, Part: 0, Samples: 1}, r.Members[0], false},
		{"another owner's part", partHeader{Round: "r", Sender: 1, Part: 2, Samples: 2}, r.Members[1], false},
		{"other samples than the round's", partHeader{Round: "r", Sender: 1, Part: 0, Samples: 5}, r.Members[1], false},
	} {
		t.Run(c.name, func(t *testing.T) {
			count, err := rs.admit(c.h, c.from)
			if c.ok && (err != nil || count != 4) {
				t.Fatalf("admit: %d values, %v; want 4 values", count, err)
			}
			if !c.ok && !errors.Is(err, errHeader) {
				t.Fatalf("admit: %v, want %v", err, errHeader)
			}
		})
	}
	// A round we own nothing of takes no part at all.
	tab := newRoundTable()
	empty, _ := tab.start(r, 0, 0, 0, nil, t0.Add(time.Minute), t0, time.Minute)
	if _, err := empty.admit(partHeader{Round: "r", Sender: 1, Part: 0, Samples: 2}, r.Members[1]); err == nil {
		t.Fatal("a round in which we own nothing admitted a part")
	}
	if !empty.complete() {
		t.Fatal("a round in which we own nothing waits for parts")
	}
}

// Contributions in, decisions out: duplicates and strangers are refused,
// the last missing copy makes the average ready.
func TestRoundStateContribute(t *testing.T) {
	type in struct {
		sender       int
		part         []float32
		accepted     bool
		complete     bool
		missingAfter int
	}
	two, three := []float32{2, 2, 2, 2}, []float32{3, 3, 3, 3}
	for _, c := range []struct {
		name   string
		events []in
		mean   []float32 // the average once complete; nil: not complete
	}{
		{"all parts in: the average is ready", []in{
			{1, two, true, false, 1},
			{2, three, true, true, 0},
		}, []float32{(1 + 2*2 + 3*3) / 6.0, 14 / 6.0, 14 / 6.0, 14 / 6.0}},
		{"in any order", []in{
			{2, three, true, false, 1},
			{1, two, true, true, 0},
		}, []float32{14 / 6.0, 14 / 6.0, 14 / 6.0, 14 / 6.0}},
		{"a duplicate is refused and counts once", []in{
			{1, two, true, false, 1},
			{1, three, false, false, 1},
			{2, three, true, true, 0},
		}, []float32{14 / 6.0, 14 / 6.0, 14 / 6.0, 14 / 6.0}},
		{"our own index is refused", []in{
			{0, three, false, false, 2},
		}, nil},
		{"an index outside the round is refused", []in{
			{3, three, false, false, 2},
			{-1, three, false, false, 2},
		}, nil},
		{"a dropped copy (NaN) counts as in and weighs nothing", []in{
			{1, nil, true, false, 1},
			{2, three, true, true, 0},
		}, []float32{10 / 4.0, 10 / 4.0, 10 / 4.0, 10 / 4.0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, rs, r := ownerOf(t, 0)
			for i, e := range c.events {
				accepted, complete := rs.contribute(e.sender, e.part)
				if accepted != e.accepted || complete != e.complete {
					t.Fatalf("event %d (sender %d): accepted %v complete %v, want %v %v", i, e.sender, accepted, complete, e.accepted, e.complete)
				}
				if n := len(rs.missingMembers()); n != e.missingAfter {
					t.Fatalf("event %d: %d missing, want %d", i, n, e.missingAfter)
				}
			}
			if rs.complete() != (c.mean != nil) {
				t.Fatalf("complete = %v", rs.complete())
			}
			if c.mean == nil {
				return
			}
			got := WeightedMean(rs.parts(), r.Samples)
			for e := range got {
				if d := got[e] - c.mean[e]; d > 1e-6 || d < -1e-6 {
					t.Fatalf("average %v, want %v", got, c.mean)
				}
			}
			if _, _, done := rs.outcome(); done {
				t.Fatal("the round is done before the owner finished it")
			}
			rs.finish([]byte("avg"), nil)
			rs.finish(nil, errors.New("late")) // the first outcome is final
			if res, err, done := rs.outcome(); !done || err != nil || string(res) != "avg" {
				t.Fatalf("outcome %q %v %v, want the average", res, err, done)
			}
		})
	}
}

// At the deadline a round still missing a member's copy fails, for every
// sender, naming who it waited for; a round already finished keeps its
// outcome.
func TestRoundStateMissingAtDeadline(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      []int // senders whose copies arrived
		finish  bool  // the owner finished before the deadline
		missing []int
	}{
		{"one member never sent", []int{1}, false, []int{2}},
		{"nobody sent", nil, false, []int{1, 2}},
		{"all in, average not made yet", []int{1, 2}, false, nil},
		{"finished in time", []int{1, 2}, true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, rs, r := ownerOf(t, 0)
			for _, i := range c.in {
				rs.contribute(i, []float32{2, 2, 2, 2})
			}
			if c.finish {
				rs.finish([]byte("avg"), nil)
			}
			var want []peer.ID
			for _, i := range c.missing {
				want = append(want, r.Members[i])
			}
			if got := rs.missingMembers(); !slices.Equal(got, want) {
				t.Fatalf("missing %v, want %v", got, want)
			}
			err := rs.expire(context.DeadlineExceeded)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "waiting for parts: ") {
				t.Fatalf("expire: %v", err)
			}
			for _, p := range want {
				if !strings.Contains(err.Error(), p.ShortString()) {
					t.Fatalf("error %q does not name missing member %s", err, p.ShortString())
				}
			}
			res, oerr, done := rs.outcome()
			if !done {
				t.Fatal("the round is not over after its deadline")
			}
			if c.finish {
				if oerr != nil || string(res) != "avg" {
					t.Fatalf("a finished round's outcome changed at the deadline: %q %v", res, oerr)
				}
				return
			}
			if oerr == nil || oerr.Error() != err.Error() {
				t.Fatalf("senders get %v, want %v", oerr, err)
			}
		})
	}
}

// Rounds not started yet are capped per announcing peer and in all; a
// known round is never refused; starting a round frees its announcer's
// slot; stale announcements are forgotten.
func TestRoundTableAdmissionCap(t *testing.T) {
	a, b := testutil.PeerID(1), testutil.PeerID(2)
	stale := time.Minute
	type ev struct {
		announce string // round announced by from
		from     peer.ID
		start    string // or: round started locally
		at       time.Duration
		admitted bool
	}
	id := func(i int) string { return fmt.Sprintf("r%d", i) }
	perPeer := func() []ev {
		var evs []ev
		for i := range maxPendingPerPeer {
			evs = append(evs, ev{announce: id(i), from: a, admitted: true})
		}
		return evs
	}
	for _, c := range []struct {
		name string
		evs  []ev
	}{
		{"one peer may announce only a few", append(perPeer(),
			ev{announce: id(99), from: a, admitted: false},
			ev{announce: id(100), from: b, admitted: true},
		)},
		{"a known round is not refused", append(perPeer(),
			ev{announce: id(0), from: a, admitted: true},
			ev{announce: id(1), from: b, admitted: true},
		)},
		{"starting a round frees its slot", append(perPeer(),
			ev{announce: id(99), from: a, admitted: false},
			ev{start: id(0)},
			ev{announce: id(99), from: a, admitted: true},
		)},
		{"stale announcements are forgotten", append(perPeer(),
			ev{announce: id(99), from: a, at: stale, admitted: false},
			ev{announce: id(99), from: a, at: stale + time.Second, admitted: true},
		)},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := newRoundTable()
			for i, e := range c.evs {
				now := t0.Add(e.at)
				if e.start != "" {
					r := Round{ID: e.start, Members: []peer.ID{testutil.PeerID(0), a}, Samples: []int{1, 1}}
					if _, err := tab.start(r, 0, 0, 1, []float32{1}, now.Add(time.Second), now, stale); err != nil {
						t.Fatalf("event %d: start: %v", i, err)
					}
					continue
				}
				if got := tab.announce(e.announce, e.from, now, stale) != nil; got != e.admitted {
					t.Fatalf("event %d: %s announced by peer %s: admitted %v, want %v", i, e.announce, e.from.ShortString(), got, e.admitted)
				}
			}
		})
	}

	t.Run("the table is capped in all", func(t *testing.T) {
		tab := newRoundTable()
		for i := range maxPendingRounds {
			if tab.announce(id(i), testutil.PeerID(100+i), t0, stale) == nil {
				t.Fatalf("round %d of %d refused", i, maxPendingRounds)
			}
		}
		if tab.announce(id(maxPendingRounds), testutil.PeerID(1), t0, stale) != nil {
			t.Fatal("a full table took another round")
		}
		r := Round{ID: id(maxPendingRounds), Members: []peer.ID{testutil.PeerID(0), a}, Samples: []int{1, 1}}
		if _, err := tab.start(r, 0, 0, 1, []float32{1}, t0.Add(time.Second), t0, stale); err != nil {
			t.Fatalf("our own round is not capped: %v", err)
		}
	})

	t.Run("a round runs once", func(t *testing.T) {
		tab := newRoundTable()
		r := Round{ID: "once", Members: []peer.ID{testutil.PeerID(0), a}, Samples: []int{1, 1}}
		if tab.announce("once", a, t0, stale) == nil {
			t.Fatal("refused")
		}
		if _, err := tab.start(r, 0, 0, 1, []float32{1}, t0.Add(time.Second), t0, stale); err != nil {
			t.Fatal(err)
		}
		if _, err := tab.start(r, 0, 0, 1, []float32{1}, t0.Add(time.Second), t0, stale); !errors.Is(err, errAlreadyRun) {
			t.Fatalf("second start: %v", err)
		}
		tab.forget("once")
		if len(tab.rounds) != 0 {
			t.Fatal("forget left the round in the table")
		}
	})
}

// contribute is a whole copy arriving at once, in every chunk: what the
// streams do chunk by chunk (claim, arrived, leave). nil is a copy
// dropped for holding NaN or Inf.
func (rs *roundState) contribute(i int, part []float32) (accepted, complete bool) {
	buf := make([]float32, rs.hi-rs.lo)
	copy(buf, part)
	if !rs.claim(i, &buf) {
		return false, false
	}
	for c := range rs.chunkIn {
		rs.arrived(i, c, part == nil)
	}
	rs.readers--
	return true, rs.complete()
}
