package allreduce

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// penalties remembers the peers suspected of misbehaving in a round and
// until when each is given no part to own: an owner that sent different
// bytes to different members, or a member whose report or repair answer
// contradicted the others (without signed results the two cannot be told
// apart, so both are suspects; a liar framing an honest owner is
// penalised with it, so lying buys no ownership). Each offence doubles
// the last penalty (up to 2^maxPenaltyDoublings × base); a record
// forgotten once its penalty has run out for as long again, so the
// doubling decays. Plain data: callers pass the time; Averager.mu guards it.
type penalties struct {
	peers map[peer.ID]penalty
}

type penalty struct {
	until time.Time     // owns no part before this
	last  time.Duration // the latest penalty's length
}

func newPenalties() penalties { return penalties{peers: map[peer.ID]penalty{}} }

// add penalises p at now for base, doubled for each offence still
// remembered. It returns the penalty's end.
func (ps *penalties) add(p peer.ID, now time.Time, base time.Duration) time.Time {
	ps.prune(now)
	d := base
	if old, ok := ps.peers[p]; ok {
		d = min(2*old.last, base<<maxPenaltyDoublings)
	}
	if _, ok := ps.peers[p]; !ok && len(ps.peers) >= maxPenalised {
		ps.evict()
	}
	until := now.Add(d)
	if old, ok := ps.peers[p]; ok && old.until.After(until) {
		until = old.until
	}
	ps.peers[p] = penalty{until: until, last: d}
	return until
}

// active reports whether p is penalised at now.
func (ps *penalties) active(p peer.ID, now time.Time) bool {
	pen, ok := ps.peers[p]
	return ok && now.Before(pen.until)
}

// prune forgets records whose penalty ran out at least its length ago.
func (ps *penalties) prune(now time.Time) {
	for p, pen := range ps.peers {
		if now.Sub(pen.until) >= pen.last {
			delete(ps.peers, p)
		}
	}
}

// evict drops the record that ends first, to make room.
func (ps *penalties) evict() {
	var first peer.ID
	var at time.Time
	for p, pen := range ps.peers {
		if first == "" || pen.until.Before(at) {
			first, at = p, pen.until
		}
	}
	delete(ps.peers, first)
}
