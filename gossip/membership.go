package gossip

import (
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Member is what this peer currently believes about another peer.
type Member struct {
	Heartbeat
	LastSeen time.Time
	// Progress toward step Heartbeat.Step+1, from the newest progress message
	// for that step (zero when none).
	ProgressStep    uint64
	ProgressSamples int
	progressSeq     uint64
}

// Membership is the view of live peers built from heartbeats and progress
// messages. It holds at most maxMembership peers: a new key that finds it
// full (after expired members are dropped) is ignored, never evicting an
// established member, so a flood of fresh identities cannot push the
// swarm's own peers out. It does no I/O and reads no clock: callers pass
// now, so tests drive it with fake time. Safe for concurrent use.
type Membership struct {
	mu      sync.Mutex
	self    peer.ID
	expiry  time.Duration
	members map[peer.ID]*Member
}

// NewMembership returns an empty view. A peer is live until expiry passes
// without a heartbeat or progress message from it.
func NewMembership(self peer.ID, expiry time.Duration) *Membership {
	return &Membership{self: self, expiry: expiry, members: make(map[peer.ID]*Member)}
}

// ObserveHeartbeat records hb. Stale (reordered) heartbeats are ignored;
// a leaving peer is dropped at once. It reports whether the peer is new.
func (m *Membership) ObserveHeartbeat(hb Heartbeat, now time.Time) (isNew bool) {
	if hb.Peer == m.self {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.members[hb.Peer]
	if hb.Leaving {
		delete(m.members, hb.Peer)
		return false
	}
	if ok && hb.Seq <= cur.Seq {
		return false
	}
	if !ok {
		if len(m.members) >= maxMembership {
			m.expireLocked(now)
			if len(m.members) >= maxMembership {
				return false
			}
		}
		cur = &Member{}
		m.members[hb.Peer] = cur
	}
	// Progress travels on another topic and may already have moved the
	// step on; an older heartbeat must not move it back.
	step, hash := cur.Step, cur.Hash
	cur.Heartbeat = hb
	if ok && step > hb.Step {
		cur.Step, cur.Hash = step, hash
	}
	cur.LastSeen = now
	return !ok
}

// ObserveProgress records p. A progress message also proves liveness; it
// moves a member's step and state hash forward (never back), so rounds and
// replica checks need not wait for the next heartbeat.
func (m *Membership) ObserveProgress(p Progress, now time.Time) {
	if p.Peer == m.self {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.members[p.Peer]
	if !ok {
		// Unknown until its first heartbeat: we have no addresses to dial.
		return
	}
	if p.Seq <= cur.progressSeq {
		return
	}
	cur.progressSeq = p.Seq
	cur.LastSeen = now
	cur.Syncing = false // only a peer that trains reports progress
	if p.Step >= cur.Step {
		cur.Step, cur.Hash = p.Step, p.Hash
	}
	cur.ProgressStep = p.Step
	cur.ProgressSamples = p.Samples
}

// Remove drops a peer, e.g. after it was refused or its connection closed.
func (m *Membership) Remove(p peer.ID) {
	m.mu.Lock()
	delete(m.members, p)
	m.mu.Unlock()
}

// Live returns the members heard from within expiry, sorted by peer ID.
// Expired members are forgotten.
func (m *Membership) Live(now time.Time) []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, *mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

func (m *Membership) expireLocked(now time.Time) {
	for id, mem := range m.members {
		if now.Sub(mem.LastSeen) > m.expiry {
			delete(m.members, id)
		}
	}
}

// Get returns one member, if live.
func (m *Membership) Get(p peer.ID, now time.Time) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[p]
	if !ok || now.Sub(mem.LastSeen) > m.expiry {
		return Member{}, false
	}
	return *mem, true
}

// SwarmSamples sums the samples that live peers (self excluded) report
// toward step+1, and counts the peers at that step that are not syncing.
func (m *Membership) SwarmSamples(step uint64, now time.Time) (samples, peers int) {
	for _, mem := range m.Live(now) {
		if mem.Step != step || mem.Syncing {
			continue
		}
		peers++
		if mem.ProgressStep == step {
			samples += mem.ProgressSamples
		}
	}
	return samples, peers
}

// Consensus picks the state replicas converge on at one step: the hash
// the most live replicas hold, ties broken by the smallest hash, so every
// peer that sees the same votes picks the same winner and a split swarm
// heals toward one side instead of flapping.
func Consensus(votes map[string]int) string {
	best, bestVotes := "", 0
	for h, v := range votes {
		if h == "" {
			continue
		}
		if v > bestVotes || (v == bestVotes && h < best) {
			best, bestVotes = h, v
		}
	}
	return best
}
