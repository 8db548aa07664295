package allreduce

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// The streams around verify.go: each member sends its report to every
// other member once the direct outcome of every part is known (ProtoDigest:
// one frame, answered by one byte), and before applying the round waits
// for the others' reports, until the round's deadline, and compares.

// sendReports waits for the direct outcome of every part of res, then
// sends our report to every other member of r. A member it cannot reach
// is marked gone, so verify does not wait for its report.
func (a *Averager) sendReports(ctx context.Context, r Round, res *results, open time.Duration) {
	if !a.await(ctx.Done(), nil, res.allKnown) {
		return
	}
	a.mu.Lock()
	frame := encodeReport(r.ID, res.direct())
	a.mu.Unlock()
	var wg sync.WaitGroup
	for i, m := range r.Members {
		if i == res.me {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a.sendReport(ctx, m, frame, open) != nil {
				a.mu.Lock()
				res.gone[i] = true
				a.signalLocked()
				a.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func (a *Averager) sendReport(ctx context.Context, p peer.ID, frame []byte, open time.Duration) error {
	octx, cancel := a.clk.WithTimeout(ctx, open)
	s, err := a.t.Open(octx, p, gossip.ProtoDigest)
	cancel()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		s.SetTimeout(max(a.clk.Until(d), time.Millisecond))
	}
	if err := s.Send(frame); err != nil {
		s.Reset()
		return err
	}
	a.bytesSent.Add(int64(len(frame)))
	ack, err := s.Recv(1)
	if err == nil && (len(ack) != 1 || ack[0] != resultOK) {
		err = errors.New("report refused")
	}
	if err != nil {
		s.Reset()
		return err
	}
	s.Close()
	return nil
}

// serveReport takes a fellow member's report. A report for a round we
// do not track (honest members report only after every member started
// the round), from outside the round, or of another shape is refused; a
// member's first report is final.
func (a *Averager) serveReport(s gossip.Stream) {
	b, err := s.Recv(maxReport)
	if err != nil {
		s.Reset()
		return
	}
	id, rep, err := decodeReport(b)
	if err != nil {
		s.Reset()
		return
	}
	a.mu.Lock()
	res := a.results[id]
	i := -1
	if res != nil {
		i = slices.Index(res.members, s.RemotePeer())
	}
	ok := i >= 0 && i != res.me && len(rep.has) == len(res.members)
	if ok && res.reports[i] == nil {
		res.reports[i] = &rep
		a.signalLocked()
	}
	a.mu.Unlock()
	if !ok {
		s.Reset()
		return
	}
	a.bytesRecv.Add(int64(len(b)))
	s.Send([]byte{resultOK})
	s.Close()
}

// verify waits, until deadline, for the report of every other member
// that our report reached, and compares them with the parts we hold. On a
// mismatch the round is void (ErrMismatch) and the suspects are named and
// penalised: the part's owner, and the member whose report differs (one of
// them lied; which one, unsigned digests cannot tell). When we own the
// part ourselves we know our bytes, so only the reporter is named.
func (a *Averager) verify(r Round, res *results, deadline time.Time) error {
	wait := a.clk.Timer(a.clk.Until(deadline))
	defer wait.Stop()
	a.await(nil, wait.C, res.allReported)
	a.mu.Lock()
	ms := mismatches(res.sums, res.have, res.reports)
	a.mu.Unlock()
	if len(ms) == 0 {
		return nil
	}
	suspects := map[peer.ID]string{}
	var parts []string
	for _, m := range ms {
		owner, member := r.Members[m.part], r.Members[m.member]
		if m.part != res.me {
			suspects[owner] = fmt.Sprintf("owner of part %d: %s reports other bytes than we got", m.part, member.ShortString())
		}
		if m.member != m.part {
			suspects[member] = fmt.Sprintf("reports other bytes of part %d (owner %s) than we got", m.part, owner.ShortString())
		}
		parts = append(parts, fmt.Sprintf("part %d (owner %s) per %s", m.part, owner.ShortString(), member.ShortString()))
	}
	for _, p := range r.Members { // in member order: logs read the same everywhere
		if why, ok := suspects[p]; ok {
			a.blame(r.ID, p, why)
		}
	}
	return fmt.Errorf("%w: %s", ErrMismatch, truncate(strings.Join(parts, "; "), 300))
}

// blame names p as misbehaving in round and gives it no part to own for
// a while (see penalties).
func (a *Averager) blame(round string, p peer.ID, reason string) {
	a.mu.Lock()
	a.penalties.add(p, a.clk.Now(), a.cfg.Penalty)
	a.mu.Unlock()
	if a.cfg.OnMisbehaving != nil {
		a.cfg.OnMisbehaving(round, p, reason)
	}
}

// Penalised reports whether p is serving a penalty here: it was suspected
// of sending different results to different members, or of a false
// report or repair answer. An assembler gives it no part (see
// MatchConfig.NoPart).
func (a *Averager) Penalised(p peer.ID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.penalties.active(p, a.clk.Now())
}
