package allreduce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
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
// got directly (from the owner, or as the owner). Plain data, guarded by
// Averager.mu like the round bookkeeping.
type results struct {
	seq      uint64    // creation order: the oldest are dropped first
	deadline time.Time // the round's: no direct outcome comes later
	parts    [][]byte
	known    []bool // the direct outcome of a part is in
}

// resolve records the direct outcome of part j: its bytes, or nil. The
// first outcome is final; it reports whether this one was.
func (r *results) resolve(j int, part []byte) bool {
	if r.known[j] {
		return false
	}
	r.parts[j], r.known[j] = part, true
	return true
}

// resolve records the direct outcome of part j of res and wakes repairs
// waiting for it.
func (a *Averager) resolve(res *results, j int, part []byte) {
	a.mu.Lock()
	if res.resolve(j, part) {
		a.signalLocked()
	}
	a.mu.Unlock()
}

func (a *Averager) track(id string, k int, deadline time.Time) *results {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.resultSeq++
	res := &results{seq: a.resultSeq, deadline: deadline, parts: make([][]byte, k), known: make([]bool, k)}
	a.results[id] = res
	if len(a.results) > keepResults {
		ids := make([]string, 0, len(a.results))
		for id := range a.results {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return a.results[ids[i]].seq < a.results[ids[j]].seq })
		for _, old := range ids[:len(ids)-keepResults] {
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
	part := res.parts[req.Part]
	a.mu.Unlock()
	if part == nil {
		s.Send(append([]byte{resultFail}, "did not get that part either"...))
		s.Close()
		return
	}
	frame := make([]byte, 0, len(part)+1)
	frame = append(frame, resultOK)
	frame = append(frame, part...)
	if s.Send(frame) == nil {
		a.bytesSent.Add(int64(len(frame)))
	}
	s.Close()
}

// repair fetches part j of round r from any other member that got it
// directly, decodes it into dst and returns its bytes.
func (a *Averager) repair(ctx context.Context, r Round, j int, dst []float32) ([]byte, error) {
	self := a.t.Self()
	type answer struct {
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
			answers <- answer{part, err}
		}()
	}
	var errs []error
	for ; asked > 0; asked-- {
		ans := <-answers
		if ans.err != nil {
			errs = append(errs, ans.err)
			continue
		}
		if err := compression.DecodePart(dst, ans.part); err != nil {
			errs = append(errs, err)
			continue
		}
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
	frame, err := s.Recv(a.maxResult(r, count) + 1)
	if err != nil {
		s.Reset()
		return nil, err
	}
	s.Close()
	a.bytesRecv.Add(int64(len(frame)))
	if len(frame) == 0 {
		return nil, errors.New("empty answer")
	}
	if frame[0] != resultOK {
		return nil, fmt.Errorf("%s: %s", p.ShortString(), truncate(string(frame[1:]), 100))
	}
	return frame[1:], nil
}
