package allreduce

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Round bookkeeping of an owner. The owner of part j of a round collects
// every member's copy of part j, averages them once all are in, and hands
// the same encoded average to every sender. roundTable and roundState are
// that bookkeeping as plain data, in the spirit of etcd-raft's state
// machine: events in (a sender announced a round, the local AllReduce
// started it, a copy arrived, the average is made, the round's time is
// up), decisions out (admit or refuse, all parts in, the outcome to send).
// They start no goroutine, do no I/O and read no clock: callers pass the
// time. They are not safe for concurrent use; the Averager guards them
// with its mutex, and does the streams, timers and waiting around them
// (allreduce.go).

// roundTable holds the rounds this peer owns a part of: those a local
// AllReduce started, and those senders announced before it did.
type roundTable struct {
	rounds map[string]*roundState
}

func newRoundTable() roundTable { return roundTable{rounds: map[string]*roundState{}} }

// roundState is one round as seen by this peer acting as the owner of a
// part. Senders may announce it before the local AllReduce starts it;
// until then only created and announcedBy are set.
type roundState struct {
	created     time.Time // when this peer first heard of the round
	announcedBy peer.ID   // the sender that announced it before it started; "" if none
	started     bool      // a local AllReduce runs it: the fields below are set

	round    Round
	me       int       // our index in round
	lo, hi   int       // the values of our part
	deadline time.Time // when the round is void

	// Copies arrive chunk by chunk (chunks.go): a member's stream is
	// claimed once, its chunks are decoded into contribs[m] as they come,
	// and chunk c can be averaged once chunkIn[c] reaches every member.
	contribs [][]float32 // by member index: its copy (ours: own); nil until claimed
	claimed  []bool      // by member index: a stream of its copy was admitted
	left     [][]bool    // by member, by chunk: left out (NaN/Inf); nil: none left out
	chunkIn  []int       // by chunk: members whose copy of it is in (ours included)
	seen     []bool      // by member index: its whole copy arrived
	missing  int         // members whose copy has not arrived
	readers  int         // streams still writing into contribs
	pooled   []*[]float32

	// The average, published chunk by chunk as it is made: ends[c] is
	// where chunk c's framed bytes end in blob (chunks.go).
	blob []byte
	ends []int
	kept *keptBuf // blob's buffer, for the streams sending from it to hold

	finished bool   // the outcome below is final
	result   []byte // the encoded average every sender gets
	err      error  // why the round failed, instead
}

// prune forgets rounds nobody started that are older than stale: their
// members gave up on them long ago.
func (t *roundTable) prune(now time.Time, stale time.Duration) {
	for id, rs := range t.rounds {
		if !rs.started && now.Sub(rs.created) > stale {
			delete(t.rounds, id)
		}
	}
}

// announce is a sender's header for round id, from peer from, at now. A
// known round is returned as it is. An unknown one is created, announced
// by from, unless the table is full (maxPendingRounds) or from already
// announced maxPendingPerPeer rounds we have not started: junk from one
// peer cannot crowd out honest ones. Nil means refused. Unstarted rounds
// older than stale are forgotten first.
func (t *roundTable) announce(id string, from peer.ID, now time.Time, stale time.Duration) *roundState {
	t.prune(now, stale)
	if rs, ok := t.rounds[id]; ok {
		return rs
	}
	if len(t.rounds) >= maxPendingRounds || t.pendingBy(from) >= maxPendingPerPeer {
		return nil
	}
	rs := &roundState{created: now, announcedBy: from}
	t.rounds[id] = rs
	return rs
}

// errAlreadyRun: a round runs once; a retry is a new round.
var errAlreadyRun = errors.New("round was already run")

// start is the local AllReduce taking up round r, in which this peer is
// member me and owns values [lo, hi); own is its own copy of that part,
// and the round is void at deadline. Unstarted rounds older than stale
// are forgotten first. The round counts own as in; one in which we own
// nothing needs nobody's copy.
func (t *roundTable) start(r Round, me, lo, hi int, own []float32, deadline, now time.Time, stale time.Duration) (*roundState, error) {
	t.prune(now, stale)
	rs, ok := t.rounds[r.ID]
	if !ok {
		rs = &roundState{created: now}
		t.rounds[r.ID] = rs
	}
	if rs.started {
		return nil, errAlreadyRun
	}
	k := len(r.Members)
	rs.started = true
	rs.round, rs.me, rs.lo, rs.hi, rs.deadline = r, me, lo, hi, deadline
	rs.contribs = make([][]float32, k)
	rs.contribs[me] = own
	rs.claimed = make([]bool, k)
	rs.claimed[me] = true
	rs.left = make([][]bool, k)
	rs.seen = make([]bool, k)
	rs.seen[me] = true
	rs.missing = k - 1
	rs.chunkIn = make([]int, chunkCount(hi-lo))
	for c := range rs.chunkIn {
		rs.chunkIn[c] = 1 // our own copy
	}
	if lo == hi {
		rs.missing = 0 // we own nothing: nobody sends us a part
	}
	return rs, nil
}

// forget drops round id from the table. Whoever holds its roundState
// (a sender still being served) keeps it.
func (t *roundTable) forget(id string) { delete(t.rounds, id) }

// pendingBy counts the unstarted rounds p announced.
func (t *roundTable) pendingBy(p peer.ID) int {
	n := 0
	for _, rs := range t.rounds {
		if !rs.started && rs.announcedBy == p {
			n++
		}
	}
	return n
}

// errHeader: a sender's header does not fit the round.
var errHeader = errors.New("header does not match the round")

// admit checks a sender's header, on a stream from peer from, against the
// started round: the sender must be the member it says it is, not us,
// send our part and weigh it as the round does. It returns the number of
// values the part holds.
func (rs *roundState) admit(h partHeader, from peer.ID) (count int, err error) {
	r := rs.round
	if !rs.started || rs.lo == rs.hi || h.Sender < 0 || h.Sender >= len(r.Members) || h.Sender == rs.me ||
		r.Members[h.Sender] != from || h.Part != rs.me || h.Samples != r.Samples[h.Sender] {
		return 0, errHeader
	}
	return rs.hi - rs.lo, nil
}

// claim admits member i's stream of its copy and gives it part, the
// buffer its chunks are decoded into (pooled: see release). A member
// outside the round, ourselves, or one already claimed is refused: two
// streams must not write one buffer.
func (rs *roundState) claim(i int, part *[]float32) bool {
	if !rs.started || rs.finished || i < 0 || i >= len(rs.claimed) || rs.claimed[i] {
		return false
	}
	rs.claimed[i] = true
	rs.contribs[i] = *part
	rs.pooled = append(rs.pooled, part)
	rs.readers++
	return true
}

// arrived records chunk c of member i's copy as in (left: dropped for
// holding NaN or Inf, so it weighs nothing in that chunk). It reports
// whether that completed chunk c, and whether it was i's last chunk.
func (rs *roundState) arrived(i, c int, left bool) (chunkDone, last bool) {
	if left {
		if rs.left[i] == nil {
			rs.left[i] = make([]bool, len(rs.chunkIn))
		}
		rs.left[i][c] = true
	}
	rs.chunkIn[c]++
	if c == len(rs.chunkIn)-1 && !rs.seen[i] {
		rs.seen[i] = true
		rs.missing--
		last = true
	}
	return rs.chunkIn[c] == len(rs.seen), last
}

// chunkDone reports that every member's chunk c is in.
func (rs *roundState) chunkDone(c int) bool { return rs.started && rs.chunkIn[c] == len(rs.seen) }

// chunkParts returns the members' copies of chunk c, values [clo, chi)
// of the part (nil: left out). Once the chunk is done they no longer
// change, so the caller may average them without the lock.
func (rs *roundState) chunkParts(c, clo, chi int) [][]float32 {
	xs := make([][]float32, len(rs.contribs))
	for m, x := range rs.contribs {
		if x != nil && (rs.left[m] == nil || !rs.left[m][c]) {
			xs[m] = x[clo:chi]
		}
	}
	return xs
}

// complete reports that every member's copy is in: the average can be made.
func (rs *roundState) complete() bool { return rs.started && rs.missing == 0 }

// parts returns the copies to average, by member index (nil: left out
// anywhere). Once complete they no longer change, so the caller may
// average them without holding the lock.
func (rs *roundState) parts() [][]float32 {
	xs := slices.Clone(rs.contribs)
	for m := range xs {
		if slices.Contains(rs.left[m], true) {
			xs[m] = nil
		}
	}
	return xs
}

// publish makes the average's chunks up to the end of blob available to
// the senders (blob only grows, within its capacity: what was published
// is never moved or rewritten).
func (rs *roundState) publish(blob []byte) {
	rs.blob = blob
	rs.ends = append(rs.ends, len(blob))
}

// resultChunk is chunk c of the published average as sent: its status
// byte and frame; ok false while it is not published.
func (rs *roundState) resultChunk(c int) (frame []byte, ok bool) {
	if c >= len(rs.ends) {
		return nil, false
	}
	start := 0
	if c > 0 {
		start = rs.ends[c-1]
	}
	return rs.blob[start+chunkPrefix : rs.ends[c]], true
}

// leave is a stream done writing into contribs. It returns the pooled
// buffers once no stream writes them and the owner no longer reads them
// (the round is finished), for the caller to put back.
func (rs *roundState) leave() []*[]float32 {
	rs.readers--
	return rs.release()
}

func (rs *roundState) release() []*[]float32 {
	if !rs.finished || rs.readers > 0 {
		return nil
	}
	p := rs.pooled
	rs.pooled = nil
	return p
}

// missingMembers lists the members whose copy has not arrived.
func (rs *roundState) missingMembers() []peer.ID {
	var out []peer.ID
	if rs.lo == rs.hi {
		return nil
	}
	for i, ok := range rs.seen {
		if !ok {
			out = append(out, rs.round.Members[i])
		}
	}
	return out
}

// finish records the round's outcome: the encoded average (err nil) or
// why there is none. The first outcome is final.
func (rs *roundState) finish(result []byte, err error) {
	if rs.finished {
		return
	}
	rs.finished, rs.result, rs.err = true, result, err
}

// expire is the local run giving up on the round before the average was
// made: its deadline passed (cause: context.DeadlineExceeded), or the
// round is void for another reason. The round fails for every sender,
// with an error naming the members whose copies were missing (an earlier
// outcome stands). It returns that error.
func (rs *roundState) expire(cause error) error {
	err := fmt.Errorf("waiting for parts: %w", cause)
	if m := rs.missingMembers(); len(m) > 0 {
		names := make([]string, len(m))
		for i, p := range m {
			names[i] = p.ShortString()
		}
		err = fmt.Errorf("waiting for parts: %w (missing %d of %d: %s)", cause, len(m), len(rs.seen), strings.Join(names, ", "))
	}
	rs.finish(nil, err)
	return err
}

// outcome is what senders get: the average's bytes or the round's
// error, once done.
func (rs *roundState) outcome() (result []byte, err error, done bool) {
	return rs.result, rs.err, rs.finished
}
