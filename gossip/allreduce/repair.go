package allreduce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// Part repair keeps a round all-or-nothing when an owner fails halfway
// through its broadcast: a member that could not get part j from its owner
// asks the other members for the bytes they got directly. Either someone
// has them — and then everyone who asks ends with the same bytes — or
// nobody does, because the owner sent them to nobody, and then every
// member fails the round. A member only answers once its own direct
// exchange for that part is over, so an answer of "I don't have it" is
// final, not just early.

// results holds, for one round, the final bytes of every part this peer
// got directly (from the owner, or as the owner), our digests of the parts
// we hold, and the other members' reports (verify.go). Plain data,
// guarded by Averager.mu like the round bookkeeping.
type results struct {
	seq      uint64    // creation order: the oldest are dropped first
	deadline time.Time // the round's: no direct outcome comes later
	members  []peer.ID // the round's
	me       int       // our index in members
	parts    [][]byte
	bufs     []*keptBuf // parts' buffers, held while the part is kept (kept.go)
	known    []bool     // the direct outcome of a part is in

	sums    []digest  // our digest of each part we hold, directly or repaired
	have    []bool    // we hold part j
	reports []*report // by member: what it says it got directly; nil: not yet
	gone    []bool    // by member: our report could not reach it, so it is not waited for
}

// resolve records the direct outcome of part j: its bytes and their
// digest, or nil. The first outcome is final; it reports whether this one
// was.
func (r *results) resolve(j int, part []byte, sum digest) bool {
	if r.known[j] {
		return false
	}
	r.parts[j], r.known[j] = part, true
	if part != nil {
		r.sums[j], r.have[j] = sum, true
	}
	return true
}

// allKnown reports that the direct outcome of every part is in: our
// report can go out.
func (r *results) allKnown() bool { return !slices.Contains(r.known, false) }

// direct is our report: the digests of the parts we got directly.
func (r *results) direct() report {
	rep := report{sums: make([]digest, len(r.parts)), has: make([]bool, len(r.parts))}
	for j, p := range r.parts {
		if p != nil {
			rep.sums[j], rep.has[j] = r.sums[j], true
		}
	}
	return rep
}

// allReported reports that every other member's report is in, or that
// the member could not be reached.
func (r *results) allReported() bool {
	for i := range r.members {
		if i != r.me && r.reports[i] == nil && !r.gone[i] {
			return false
		}
	}
	return true
}

// resolve records the direct outcome of part j of res and wakes repairs
// waiting for it. kb, when set, is part's buffer: the results take over
// its user.
func (a *Averager) resolve(res *results, j int, part []byte, kb *keptBuf) {
	var sum digest
	if part != nil {
		sum = digestOf(part) // outside the lock: parts resolve in parallel
	}
	a.mu.Lock()
	if res.resolve(j, part, sum) {
		res.bufs[j] = kb
		a.signalLocked()
	} else {
		a.dropLocked(kb)
	}
	a.mu.Unlock()
}

// resolveKept is resolve with the part in kb (nil: no part).
func (a *Averager) resolveKept(res *results, j int, kb *keptBuf) {
	if kb == nil {
		a.resolve(res, j, nil, nil)
		return
	}
	a.resolve(res, j, kb.b, kb)
}

func (a *Averager) track(r Round, me int, deadline time.Time) *results {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.resultSeq++
	k := len(r.Members)
	res := &results{seq: a.resultSeq, deadline: deadline, members: r.Members, me: me, parts: make([][]byte, k), bufs: make([]*keptBuf, k), known: make([]bool, k),
		sums: make([]digest, k), have: make([]bool, k), reports: make([]*report, k), gone: make([]bool, k)}
	a.results[r.ID] = res
	if len(a.results) > keepResults {
		ids := make([]string, 0, len(a.results))
		for id := range a.results {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return a.results[ids[i]].seq < a.results[ids[j]].seq })
		for _, old := range ids[:len(ids)-keepResults] {
			for _, kb := range a.results[old].bufs {
				a.dropLocked(kb)
			}
			delete(a.results, old)
		}
	}
	return res
}

type partRequest struct {
	Round string `json:"round"`
	Part  int    `json:"part"`
}

// serveRepair answers a member's request for a part's final bytes.
func (a *Averager) serveRepair(s gossip.Stream) {
	b, err := s.Recv(maxHeader)
	if err != nil {
		s.Reset()
		return
	}
	var req partRequest
	if json.Unmarshal(b, &req) != nil {
		s.Reset()
		return
	}
	a.mu.Lock()
	res := a.results[req.Round]
	a.mu.Unlock()
	if res == nil || req.Part < 0 || req.Part >= len(res.parts) {
		s.Send(append([]byte{resultFail}, "no such round or part"...))
		s.Close()
		return
	}
	wait := a.clk.Timer(a.clk.Until(res.deadline))
	defer wait.Stop()
	a.await(nil, wait.C, func() bool { return res.known[req.Part] })
	a.mu.Lock()
	part, kb := res.parts[req.Part], res.bufs[req.Part]
	a.holdLocked(kb) // while its bytes go out
	a.mu.Unlock()
	defer a.drop(kb)
	if part == nil {
		s.Send(append([]byte{resultFail}, "did not get that part either"...))
		s.Close()
		return
	}
	// The chunks go out as the owner sent them, straight from where
	// they are kept.
	for rest := part; len(rest) > 0; {
		f, next, err := nextChunk(rest)
		if err != nil || s.Send(f) != nil {
			s.Reset()
			return
		}
		a.bytesSent.Add(int64(len(f)))
		rest = next
	}
	s.Close()
}

// repair fetches part j of round r from any other member that got it
// directly, decodes it into dst and returns its bytes. An answer is taken
// only if its digest is the one most members' reports hold for part j
// (verify.go): it waits for a report that holds the part, or for every
// member's report. An answer that differs names its sender.
func (a *Averager) repair(ctx context.Context, r Round, res *results, j int, dst []float32) ([]byte, error) {
	self := a.t.Self()
	if !a.await(ctx.Done(), nil, func() bool { return held(res.reports, j) || res.allReported() }) {
		return nil, fmt.Errorf("no report of part %d: %w", j, ctx.Err())
	}
	type answer struct {
		from peer.ID
		part []byte
		err  error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan answer, len(r.Members))
	asked := 0
	for _, m := range r.Members {
		if m == self {
			continue
		}
		asked++
		go func() {
			part, err := a.askPart(ctx, r, j, m, len(dst))
			answers <- answer{m, part, err}
		}()
	}
	var errs []error
	for ; asked > 0; asked-- {
		ans := <-answers
		if ans.err != nil {
			errs = append(errs, ans.err)
			continue
		}
		sum := digestOf(ans.part)
		a.mu.Lock()
		want, ok := agreed(res.reports, j)
		a.mu.Unlock()
		if !ok || sum != want {
			err := fmt.Errorf("%s: answer's digest is not the one most members report", ans.from.ShortString())
			if ok {
				a.blame(r.ID, ans.from, fmt.Sprintf("repair answer for part %d differs from the digest most members report", j))
			}
			errs = append(errs, err)
			continue
		}
		if err := decodeChunks(dst, ans.part); err != nil {
			errs = append(errs, err)
			continue
		}
		a.mu.Lock()
		res.sums[j], res.have[j] = sum, true
		a.mu.Unlock()
		return ans.part, nil
	}
	return nil, fmt.Errorf("no member has part %d: %w", j, errors.Join(errs...))
}

func (a *Averager) askPart(ctx context.Context, r Round, j int, p peer.ID, count int) ([]byte, error) {
	s, err := a.t.Open(ctx, p, gossip.ProtoPart)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	req, _ := json.Marshal(partRequest{Round: r.ID, Part: j})
	if err := s.Send(req); err != nil {
		s.Reset()
		return nil, err
	}
	kept := make([]byte, 0, maxChunked(count, func(n int) int { return a.maxResult(r, n) }))
	for c := range chunkCount(count) {
		lo, hi := chunkBounds(count, c)
		f, err := recvChunk(s, kept, a.maxResult(r, hi-lo)+1)
		if err != nil {
			s.Reset()
			return nil, err
		}
		a.bytesRecv.Add(int64(len(f)))
		if len(f) == 0 {
			s.Reset()
			return nil, errors.New("empty answer")
		}
		if f[0] != resultOK {
			s.Reset()
			return nil, fmt.Errorf("%s: %s", p.ShortString(), truncate(string(f[1:]), 100))
		}
		kept = keepChunk(kept, f)
	}
	s.Close()
	return kept, nil
}
