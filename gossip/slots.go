package gossip

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// SlotLimits bound a server's serving slots: how many streams it serves
// at once, in all and per peer, and the pace a stream must keep to be
// safe from a newcomer once every slot is taken.
type SlotLimits struct {
	Total   int // streams served at once
	PerPeer int // streams one peer may hold: one peer cannot take every slot
	// Grace is how long a new stream holds its slot before it must keep
	// up with MinRate.
	Grace time.Duration
	// MinRate is the slowest link served for sure, in bytes per second.
	MinRate float64
}

// Lag is how far behind l.MinRate a stream that took its slot at start
// and has sent sent bytes is at now, in bytes (≤ 0: keeping up, or still
// in its grace period).
func (l SlotLimits) Lag(start time.Time, sent int64, now time.Time) int64 {
	age := now.Sub(start) - l.Grace
	if age <= 0 {
		return 0
	}
	return int64(age.Seconds()*l.MinRate) - sent
}

// Slot is what a SlotPool needs of a stream holding a slot: whose it is,
// when it took the slot, and how many bytes it has been sent since.
type Slot interface {
	comparable
	SlotState() (holder peer.ID, start time.Time, sent int64)
}

// SlotPool is the bookkeeping of a bounded set of serving slots. It does
// no I/O and reads no clock, and has no lock: the caller holds its own
// around every call, and resets the streams it takes slots from. Held
// and ByPeer are the caller's maps (both non-nil).
type SlotPool[S Slot] struct {
	Limits SlotLimits
	Held   map[S]struct{}
	ByPeer map[peer.ID]int // slots each peer holds; no zero entries
}

// Room reports whether p may take a slot at now. When every slot is
// taken, p may take the one of the stream furthest behind MinRate:
// victim, which the caller must Free (and reset) before it Adds p's.
// Streams that hold a slot without reading lose it to anyone who would
// use it, however many identities hold them, while streams that keep up
// are never displaced. victim is the zero S when a slot is free.
func (sp SlotPool[S]) Room(p peer.ID, now time.Time) (victim S, ok bool) {
	if sp.ByPeer[p] >= sp.Limits.PerPeer {
		return victim, false
	}
	if len(sp.Held) < sp.Limits.Total {
		return victim, true
	}
	var worst int64
	for sl := range sp.Held {
		_, start, sent := sl.SlotState()
		if lag := sp.Limits.Lag(start, sent, now); lag > worst {
			victim, worst = sl, lag
		}
	}
	return victim, worst > 0
}

// Add counts sl as holding a slot; Room must have made room for it.
func (sp SlotPool[S]) Add(sl S) {
	p, _, _ := sl.SlotState()
	sp.Held[sl] = struct{}{}
	sp.ByPeer[p]++
}

// Free gives sl's slot back, and reports whether sl held one (a slot
// freed twice, by its stream and by the server, counts once).
func (sp SlotPool[S]) Free(sl S) bool {
	if _, ok := sp.Held[sl]; !ok {
		return false
	}
	delete(sp.Held, sl)
	p, _, _ := sl.SlotState()
	if sp.ByPeer[p]--; sp.ByPeer[p] <= 0 {
		delete(sp.ByPeer, p)
	}
	return true
}
