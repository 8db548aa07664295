package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// joinPlan paces the dials of a node's way into its swarm: the --join
// addresses and the peers saved in its directory. Every address is tried
// at once, then again after a backoff that doubles from joinRetryMin to
// joinRetryMax, the last time at the deadline, until one of them joins.
// A peer that is restarting, or a home router that drops the first SYNs,
// gets minutes instead of one refused dial. No I/O and no clock reads:
// the caller passes now and dials.
type joinPlan struct {
	deadline time.Time
	addrs    []*joinAddr
	joined   bool
}

type joinAddr struct {
	addr    string
	saved   bool // from the peers file, not --join: its failure is no error of the user's
	tries   int
	next    time.Time     // earliest next dial
	backoff time.Duration // the wait after the last failure
	busy    bool          // a dial is under way
	dropped bool          // tried for the last time (refused, or at the deadline)
	lastErr error
	// maybeKey: a try failed in the handshake (errMaybeKey), which the
	// last error may not show (the peer may have gone since).
	maybeKey bool
}

const (
	joinRetryMin = time.Second
	// joinRetryMax caps the wait between two dials of one address: a
	// peer that comes back is found within this long.
	joinRetryMax = 30 * time.Second
)

// newJoinPlan plans dials of join (the user's) and saved addresses until
// now+timeout. An address given twice is dialled once.
func newJoinPlan(join, saved []string, now time.Time, timeout time.Duration) *joinPlan {
	p := &joinPlan{deadline: now.Add(timeout)}
	seen := map[string]bool{}
	add := func(addrs []string, saved bool) {
		for _, a := range addrs {
			if !seen[a] {
				seen[a] = true
				p.addrs = append(p.addrs, &joinAddr{addr: a, saved: saved})
			}
		}
	}
	add(join, false)
	add(saved, true)
	return p
}

// due returns the addresses to dial now and marks them busy. None once
// the plan joined.
func (p *joinPlan) due(now time.Time) []string {
	if p.joined {
		return nil
	}
	var out []string
	for _, a := range p.addrs {
		if a.busy || a.dropped || now.Before(a.next) {
			continue
		}
		a.busy = true
		a.tries++
		out = append(out, a.addr)
	}
	return out
}

// failed records a failed dial of addr and returns how long until it is
// tried again: the backoff, cut short to end at the deadline; 0 when it
// is not tried again (a final error, or the deadline has come).
func (p *joinPlan) failed(addr string, err error, final bool, now time.Time) time.Duration {
	a := p.find(addr)
	if a == nil {
		return 0
	}
	a.busy, a.lastErr = false, err
	a.maybeKey = a.maybeKey || errors.Is(err, errMaybeKey)
	if final || !now.Before(p.deadline) {
		a.dropped = true
		return 0
	}
	a.backoff = min(max(2*a.backoff, joinRetryMin), joinRetryMax)
	a.next = now.Add(a.backoff)
	if a.next.After(p.deadline) {
		a.next = p.deadline
	}
	return a.next.Sub(now)
}

// succeeded records that addr joined: the plan is done.
func (p *joinPlan) succeeded(addr string) {
	if a := p.find(addr); a != nil {
		a.busy = false
	}
	p.joined = true
}

func (p *joinPlan) find(addr string) *joinAddr {
	for _, a := range p.addrs {
		if a.addr == addr {
			return a
		}
	}
	return nil
}

// wait is how long until the next dial is due (0: now); an hour when
// none is planned (the dials under way end the wait).
func (p *joinPlan) wait(now time.Time) time.Duration {
	wait := time.Hour
	for _, a := range p.addrs {
		if !a.busy && !a.dropped {
			wait = min(wait, max(a.next.Sub(now), 0))
		}
	}
	return wait
}

// over reports whether nothing more will be dialled: joined, or every
// address dropped with no dial under way.
func (p *joinPlan) over() bool {
	if p.joined {
		return true
	}
	for _, a := range p.addrs {
		if a.busy || !a.dropped {
			return false
		}
	}
	return true
}

// required reports whether the user gave addresses (--join): failing
// them all stops the node; saved peers alone do not.
func (p *joinPlan) required() bool {
	for _, a := range p.addrs {
		if !a.saved {
			return true
		}
	}
	return false
}

// err says why the plan failed, naming every --join address with its
// tries and last error (saved peers are counted, not listed).
func (p *joinPlan) err(timeout time.Duration) error {
	var b strings.Builder
	saved, savedTried := 0, 0
	for _, a := range p.addrs {
		if a.saved {
			saved++
			if a.tries > 0 {
				savedTried++
			}
			continue
		}
		fmt.Fprintf(&b, "\n  %s: %d tries, last: %v", a.addr, a.tries, a.lastErr)
		if a.maybeKey && !errors.Is(a.lastErr, errMaybeKey) {
			fmt.Fprintf(&b, "; an earlier try failed in the handshake: %v", errMaybeKey)
		}
	}
	if saved > 0 {
		fmt.Fprintf(&b, "\n  and %d saved peers (%d tried), none reachable", saved, savedTried)
	}
	return fmt.Errorf("could not join the swarm within --join-timeout %v:%s", timeout, b.String())
}

// joinSwarm connects to the swarm through the --join addresses and the
// saved peers, retrying each with backoff for JoinTimeout, and returns
// once one of them has joined (dials still under way may add more
// bootstrap peers). It fails when the user's --join addresses all failed
// within JoinTimeout, or one of them refused us (another run); with only
// saved peers, it gives up after savedPeersWait and the node goes on
// alone: discovery (mDNS, the DHT) or a peer's dial may still find it.
func (n *Node) joinSwarm(ctx context.Context, saved []string) error {
	timeout := n.cfg.JoinTimeout
	if len(n.cfg.Join) == 0 {
		timeout = min(timeout, savedPeersWait)
	}
	plan := newJoinPlan(n.cfg.Join, saved, n.clock.Now(), timeout)
	if len(plan.addrs) == 0 {
		return nil
	}
	type result struct {
		addr string
		err  error
	}
	results := make(chan result, len(plan.addrs))
	busy := 0
	for {
		now := n.clock.Now()
		for _, a := range plan.due(now) {
			busy++
			go func() { results <- result{a, n.join(ctx, a)} }()
		}
		if plan.over() {
			break
		}
		timer := n.clock.Timer(plan.wait(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case r := <-results:
			busy--
			a := plan.find(r.addr)
			if r.err == nil {
				plan.succeeded(r.addr)
				break
			}
			var refused *refusedJoin
			final := errors.As(r.err, &refused)
			retry := plan.failed(r.addr, r.err, final, n.clock.Now())
			switch {
			case refused != nil && !a.saved:
				timer.Stop()
				return r.err // another run: retrying will not change it
			case a.saved:
				n.log.Info("saved peer not reachable", "addr", r.addr, "try", a.tries, "err", r.err, "retry_in", retry)
			case a.dropped:
				n.log.Warn("join: giving up on peer", "addr", r.addr, "try", a.tries, "err", r.err)
			default:
				n.log.Warn("join: could not reach peer, will retry", "addr", r.addr, "try", a.tries, "err", r.err, "retry_in", retry)
			}
		case <-timer.C:
		}
		timer.Stop()
	}
	if plan.joined {
		return nil
	}
	err := plan.err(timeout)
	if plan.required() {
		return err
	}
	n.log.Warn("no saved peer answered; training alone until a peer is found", "err", err)
	return nil
}

// savedPeersWait bounds how long a node without --join waits for one of
// its saved peers before it goes on alone: long enough for a swarm that
// restarts together, short enough that a lone node is not held up.
const savedPeersWait = 30 * time.Second

// refusedJoin is a hello refused by the peer: it is on another run.
type refusedJoin struct{ reason string }

func (e *refusedJoin) Error() string { return e.reason }

// join connects to a peer by address and checks it is on our run.
func (n *Node) join(ctx context.Context, addr string) error {
	cctx, cancel := n.clock.WithTimeout(ctx, joinDialTimeout)
	defer cancel()
	p, err := n.net.Connect(cctx, addr)
	if err != nil {
		if len(n.cfg.SwarmKey) > 0 && n.cfg.Network == nil && !strings.Contains(err.Error(), "connection refused") {
			// A key mismatch looks like a dead peer: the handshake
			// never completes. Say which to check (a refused TCP
			// connection is nobody listening, not a key).
			return fmt.Errorf("%w (%w)", err, errMaybeKey)
		}
		return err
	}
	if err := n.adm.Greet(cctx, n.net, p); err != nil {
		var ref *gossip.RefusedError
		if errors.As(err, &ref) {
			n.net.ClosePeer(p)
			return fmt.Errorf("join refused by %s: %w", p, &refusedJoin{ref.Reason})
		}
		return err
	}
	n.net.Keep(p, nil)
	n.redials.heard(p, n.clock.Now())
	n.mu.Lock()
	if len(n.bootstrap) < maxBootstrap && !slices.Contains(n.bootstrap, p) {
		n.bootstrap = append(n.bootstrap, p)
	}
	n.mu.Unlock()
	n.log.Info("joined", "peer", p, "addr", addr)
	return nil
}

// errMaybeKey marks a dial that reached something but failed before the
// hello: with a swarm key, most likely a node on another key.
var errMaybeKey = errors.New("if that node is up, it is on another swarm key: paste the whole join line it printed, --key included")

// joinDialTimeout bounds one dial and hello of a join address.
const joinDialTimeout = 15 * time.Second

// joined reports whether the node came in through a peer (--join or a
// saved one) rather than starting alone.
func (n *Node) joined() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.bootstrap) > 0
}
