package allreduce

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// Assembler picks who assembles the group for step: the candidate with the
// lowest hash of (peer, step). Every peer with the same view picks the
// same one, and the role rotates from step to step.
func Assembler(step uint64, candidates []peer.ID) peer.ID {
	var best peer.ID
	var bestSum [32]byte
	for i, p := range candidates {
		h := sha256.New()
		h.Write([]byte(p))
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], step)
		h.Write(b[:])
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		if i == 0 || string(sum[:]) < string(bestSum[:]) {
			best, bestSum = p, sum
		}
	}
	return best
}

// ErrBehind means the swarm already averaged this step without us: the
// caller's state is stale and must be downloaded again.
var ErrBehind = errors.New("swarm moved past this step")

// ErrTooFew means fewer peers than the run's minimum group joined.
var ErrTooFew = errors.New("too few peers for a round")

const tooFewReason = "too few peers for a round"

// ErrGroupFull means the assembler already had the run's maximum group
// size; the caller may retry, which opens the step's next group.
var ErrGroupFull = errors.New("group full")

const fullReason = "group full: the run's maximum group size joined first"

// MatchConfig tunes matchmaking.
type MatchConfig struct {
	Run string
	// JoinWindow is how long an assembler waits, after the first join, for
	// the peers it expects; then it starts the round with whoever came.
	// Longer tolerates slower peers; shorter bounds the stall a dead peer
	// causes. Default 2 s.
	JoinWindow time.Duration
	// Slack is how much longer than JoinWindow a joiner waits for the
	// group before trying again (default 3 s).
	Slack time.Duration
	// Uplink reports, at each join, this peer's measured uplink rate
	// (bytes/s, 0 unknown; see Averager.Uplink) and whether it is a client
	// that cannot accept inbound streams. Nil: unknown, not a client.
	Uplink func() (uplink float64, client bool)
	// MinGroup is the fewest members a group may have; an assembly with
	// fewer is refused with ErrTooFew and the joiners try again.
	MinGroup int
	// MaxGroup caps a group (0: no cap). The assembler closes as soon as
	// MaxGroup peers joined; later joiners are told the group is full
	// (ErrGroupFull) and retry, forming the next group among themselves.
	MaxGroup int
	// Clock times the join window and the joiners' waits (nil: the wall
	// clock); tests pass a clock.Mock.
	Clock clock.Clock
	// NoPart reports peers an assembler gives no part to own: they join
	// and send their parts, but another member averages them. A node
	// passes Averager.Penalised, so an owner caught sending different
	// results to different members (or a member caught lying about
	// them) owns nothing for a while. Nil: everyone may own. If it
	// leaves no member that could own a part, it is ignored.
	NoPart func(peer.ID) bool
	// EvenShares splits the vector evenly among the owners whatever
	// their measured uplinks: the uplinks differ from run to run, and
	// where parts begin moves a lossy codec's blocks, so a deterministic
	// run gives up sizing parts by link speed.
	EvenShares bool
}

// MatchView is what an assembler needs to know about the swarm.
type MatchView interface {
	// Step is the local step; joins for older steps are answered "behind".
	Step() uint64
	// Expected lists the peers (self included) the assembler waits for at step.
	Expected(step uint64) []peer.ID
	// Behind reports that some live peer already passed step: a group for
	// it now would average stale replicas, so joiners are told to resync.
	Behind(step uint64) bool
}

// minGroupView is a MatchView that sets the minimum group per step,
// overriding MatchConfig.MinGroup: under Moshpit groups a grid line may
// hold fewer peers than the run's minimum, and refusing it would stall
// those peers for good.
type minGroupView interface {
	MinGroup(step uint64) int
}

// Matchmaker forms the group for each step. Ready peers send Join to the
// step's assembler; the assembler answers every joiner with the same
// ordered Group once all expected peers joined or JoinWindow passed.
type Matchmaker struct {
	t    gossip.Transport
	cfg  MatchConfig
	view MatchView

	mu         sync.Mutex
	assemblies map[uint64]*assembly // the newest attempt per step
}

// assembly is one attempt at forming the group of a step. A failed round
// is retried under a new attempt, hence a new round ID.
type assembly struct {
	step    uint64
	attempt uint32
	mu      sync.Mutex
	joined  map[peer.ID]gossip.Join
	order   []peer.ID     // join order: the first MaxGroup make the group
	full    bool          // closed at MaxGroup; later joiners form the next group
	taken   []peer.ID     // the full previous attempt's group: busy, not expected here
	retry   []peer.ID     // the failed previous attempt's group: waited for past the window
	graced  bool          // the window passed and the grace for retry began
	joinCh  chan struct{} // poked on each join
	done    chan struct{}
	group   gossip.Group
}

// NewMatchmaker registers the match protocol on t.
func NewMatchmaker(t gossip.Transport, cfg MatchConfig, view MatchView) *Matchmaker {
	if cfg.JoinWindow <= 0 {
		cfg.JoinWindow = defaultJoinWindow
	}
	if cfg.Slack <= 0 {
		cfg.Slack = defaultJoinSlack
	}
	cfg.Clock = gossip.OrWall(cfg.Clock)
	m := &Matchmaker{t: t, cfg: cfg, view: view, assemblies: map[uint64]*assembly{}}
	t.Handle(gossip.ProtoMatch, m.serve)
	return m
}

// Match joins the group for step with samples of work, and returns the
// round once the assembler announced it. candidates is the caller's view
// of live peers at step, self included.
func (m *Matchmaker) Match(ctx context.Context, step uint64, samples int, candidates []peer.ID) (Round, error) {
	return m.MatchRef(ctx, step, samples, candidates, "")
}

// MatchRef is Match announcing ref, the tag of the Moshpit reference
// this peer holds for the group ("": none); the round lists every
// member's tag in Round.Refs.
func (m *Matchmaker) MatchRef(ctx context.Context, step uint64, samples int, candidates []peer.ID, ref string) (Round, error) {
	leader := Assembler(step, candidates)
	j := gossip.Join{Run: m.cfg.Run, Step: step, Samples: samples, Ref: ref}
	if m.cfg.Uplink != nil {
		j.Uplink, j.Client = m.cfg.Uplink()
	}
	var g gossip.Group
	if leader == m.t.Self() {
		var err error
		g, err = m.join(ctx, m.t.Self(), j)
		if err != nil {
			return Round{}, err
		}
	} else {
		var err error
		g, err = m.ask(ctx, leader, j)
		if err != nil {
			return Round{}, fmt.Errorf("assembler %s: %w", leader.ShortString(), err)
		}
	}
	if len(g.Members) == 0 {
		if g.Reason == behindReason {
			return Round{}, ErrBehind
		}
		if g.Reason == fullReason {
			return Round{}, ErrGroupFull
		}
		if strings.HasPrefix(g.Reason, tooFewReason) {
			return Round{}, fmt.Errorf("%w: %s", ErrTooFew, strings.TrimPrefix(g.Reason, tooFewReason))
		}
		return Round{}, fmt.Errorf("refused by assembler %s: %s", leader.ShortString(), g.Reason)
	}
	r := Round{ID: g.Round, Step: g.Step, Members: g.Members, Samples: g.Samples, Shares: g.Shares, Rates: g.Rates, Refs: g.Refs}
	me := r.Index(m.t.Self())
	if g.Run != m.cfg.Run || g.Step != step || me < 0 || groupID(g) != g.Round {
		return Round{}, fmt.Errorf("assembler %s announced an inconsistent group", leader.ShortString())
	}
	// A hostile assembler could tell us others hold our reference; it
	// cannot misreport ours unseen.
	if mine := ""; g.Refs != nil || ref != "" {
		if g.Refs != nil {
			mine = g.Refs[me]
		}
		if mine != ref {
			return Round{}, fmt.Errorf("assembler %s announced our reference tag as %q, we sent %q", leader.ShortString(), truncate(mine, 8), truncate(ref, 8))
		}
	}
	return r, nil
}

func (m *Matchmaker) ask(ctx context.Context, leader peer.ID, j gossip.Join) (gossip.Group, error) {
	ctx, cancel := m.cfg.Clock.WithTimeout(ctx, m.cfg.JoinWindow+m.cfg.Slack)
	defer cancel()
	s, err := m.t.Open(ctx, leader, gossip.ProtoMatch)
	if err != nil {
		return gossip.Group{}, err
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	b, err := gossip.Encode(gossip.Message{Kind: gossip.KindJoin, Join: &j})
	if err != nil {
		s.Reset()
		return gossip.Group{}, err
	}
	if err := s.Send(b); err != nil {
		s.Reset()
		return gossip.Group{}, err
	}
	resp, err := s.Recv(gossip.MaxMessageSize)
	if err != nil {
		s.Reset()
		return gossip.Group{}, err
	}
	s.Close()
	msg, err := gossip.Decode(resp)
	if err != nil {
		return gossip.Group{}, err
	}
	if msg.Kind != gossip.KindGroup {
		return gossip.Group{}, fmt.Errorf("expected a group, got %s", msg.Kind)
	}
	return *msg.Group, nil
}

func (m *Matchmaker) serve(s gossip.Stream) {
	b, err := s.Recv(gossip.MaxMessageSize)
	if err != nil {
		s.Reset()
		return
	}
	msg, err := gossip.Decode(b)
	if err != nil || msg.Kind != gossip.KindJoin || msg.Join.Run != m.cfg.Run {
		s.Reset()
		return
	}
	ctx, cancel := m.cfg.Clock.WithTimeout(context.Background(), m.cfg.JoinWindow+m.cfg.Slack)
	defer cancel()
	g, err := m.join(ctx, s.RemotePeer(), *msg.Join)
	if err != nil {
		g = gossip.Group{Run: m.cfg.Run, Step: msg.Join.Step, Reason: err.Error()}
	}
	out, err := gossip.Encode(gossip.Message{Kind: gossip.KindGroup, Group: &g})
	if err != nil {
		s.Reset()
		return
	}
	if s.Send(out) != nil {
		s.Reset()
		return
	}
	s.Close()
}

const behindReason = "behind: the swarm already averaged this step"

// join adds p to the open assembly for j.Step and waits for the group.
func (m *Matchmaker) join(ctx context.Context, p peer.ID, j gossip.Join) (gossip.Group, error) {
	cur := m.view.Step()
	if j.Step < cur {
		return gossip.Group{Run: m.cfg.Run, Step: j.Step, Reason: behindReason}, nil
	}
	if j.Step > cur+maxJoinAhead {
		return gossip.Group{}, fmt.Errorf("join for step %d, assembler is at step %d", j.Step, cur)
	}
	if j.Samples <= 0 {
		return gossip.Group{}, errors.New("join without samples")
	}
	a := m.open(j.Step)
	a.mu.Lock()
	if _, again := a.joined[p]; !again {
		a.order = append(a.order, p)
	}
	a.joined[p] = j
	a.mu.Unlock()
	select {
	case a.joinCh <- struct{}{}:
	default:
	}
	select {
	case <-a.done:
	case <-ctx.Done():
		return gossip.Group{}, ctx.Err()
	}
	if a.group.Reason != "" {
		return a.group, nil // a refusal, the same for every joiner
	}
	if a.group.Index(p) < 0 {
		if a.full {
			return gossip.Group{Run: m.cfg.Run, Step: j.Step, Reason: fullReason}, nil
		}
		return gossip.Group{Run: m.cfg.Run, Step: j.Step, Reason: behindReason}, nil
	}
	return a.group, nil
}

// Assembling reports whether a group this peer assembles is still open:
// a peer about to close its network waits for it, so the joiners get
// their group rather than a reset stream.
func (m *Matchmaker) Assembling() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.assemblies {
		select {
		case <-a.done:
		default:
			return true
		}
	}
	return false
}

// open returns the assembly of step that still takes joins, starting a
// new attempt when the newest one already closed: a join after a close is
// a retry after a failed round (or a latecomer, whom close turns away if
// the swarm moved on).
func (m *Matchmaker) open(step uint64) *assembly {
	m.mu.Lock()
	defer m.mu.Unlock()
	var attempt uint32
	var taken, retry []peer.ID
	if a, ok := m.assemblies[step]; ok {
		select {
		case <-a.done:
			attempt = a.attempt + 1
			if a.full {
				taken = append(slices.Clone(a.taken), a.group.Members...)
			} else {
				retry = a.group.Members
			}
		default:
			return a
		}
	}
	for s := range m.assemblies {
		if s+keepAssemblies < step {
			delete(m.assemblies, s)
		}
	}
	a := &assembly{step: step, attempt: attempt, taken: taken, retry: retry, joined: map[peer.ID]gossip.Join{}, joinCh: make(chan struct{}, 1), done: make(chan struct{})}
	m.assemblies[step] = a
	// The window opens with the assembly, before anyone can join it (and
	// before a test driving a mock clock can see it).
	deadline := m.cfg.Clock.Timer(m.cfg.JoinWindow)
	tick := m.cfg.Clock.Ticker(m.cfg.JoinWindow / joinPolls)
	go m.assemble(a, deadline, tick)
	return a
}

// assemble closes the group when every expected peer joined, or when the
// join window after the first join passes. A retry of a failed round
// waits a grace longer for that round's members: each learns of the
// failure in its own time (one that was waiting on an unreachable member
// learns it an open timeout late), and a member left out of the retry
// misses the step.
func (m *Matchmaker) assemble(a *assembly, deadline *clock.Timer, tick *clock.Ticker) {
	defer deadline.Stop()
	defer tick.Stop()
	var grace *clock.Timer
	var graceC <-chan time.Time
	for {
		select {
		case <-a.joinCh:
		case <-tick.C:
		case <-deadline.C:
			if grace == nil && m.awaitingRetry(a) {
				grace = m.cfg.Clock.Timer(m.retryGrace())
				a.mu.Lock()
				a.graced = true
				a.mu.Unlock()
				defer grace.Stop()
				graceC = grace.C
				continue
			}
			m.close(a)
			return
		case <-graceC:
			m.close(a)
			return
		}
		if m.allJoined(a) || (grace != nil && !m.awaitingRetry(a)) {
			m.close(a)
			return
		}
	}
}

// retryGrace is how much past the join window a retry waits for the
// failed round's members: two thirds of the slack, so that the first
// joiner, whose wait (window plus slack) began when it opened the
// assembly, still hears the group.
func (m *Matchmaker) retryGrace() time.Duration { return m.cfg.Slack * 2 / 3 }

// awaitingRetry reports that a is a retry and one of the failed round's
// members, still expected and the swarm still at a's step, has not
// joined yet.
func (m *Matchmaker) awaitingRetry(a *assembly) bool {
	if len(a.retry) == 0 || m.view.Step() != a.step {
		return false
	}
	exp := m.view.Expected(a.step)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.retry {
		if _, ok := a.joined[p]; !ok && slices.Contains(exp, p) {
			return true
		}
	}
	return false
}

func (m *Matchmaker) allJoined(a *assembly) bool {
	exp := m.view.Expected(a.step)
	a.mu.Lock()
	defer a.mu.Unlock()
	if m.cfg.MaxGroup > 0 && len(a.joined) >= m.cfg.MaxGroup {
		return true
	}
	// An attempt after a full group is either the overflow (nobody from
	// that group here: do not wait for them, they are busy) or a retry of
	// that group's failed round (wait for all of it).
	overflow := true
	for p := range a.joined {
		overflow = overflow && !slices.Contains(a.taken, p)
	}
	for _, p := range exp {
		if _, ok := a.joined[p]; !ok && !(overflow && slices.Contains(a.taken, p)) {
			return false
		}
	}
	return len(a.joined) > 0
}

func (m *Matchmaker) close(a *assembly) {
	stale := m.view.Step() > a.step || m.view.Behind(a.step)
	a.mu.Lock()
	defer a.mu.Unlock()
	if stale {
		// Everyone in it is told "behind" and resyncs.
		a.group = gossip.Group{Run: m.cfg.Run, Step: a.step, Reason: behindReason}
		close(a.done)
		return
	}
	need := m.cfg.MinGroup
	if v, ok := m.view.(minGroupView); ok {
		need = v.MinGroup(a.step)
	}
	if len(a.joined) < need {
		a.group = gossip.Group{Run: m.cfg.Run, Step: a.step, Reason: fmt.Sprintf("%s: %d joined, the run needs %d", tooFewReason, len(a.joined), need)}
		close(a.done)
		return
	}
	members := slices.Clone(a.order)
	if m.cfg.MaxGroup > 0 && len(members) >= m.cfg.MaxGroup {
		// Joins may race past the cap: the first to come are the group.
		members, a.full = members[:m.cfg.MaxGroup], true
	}
	sort.Slice(members, func(i, j int) bool { return members[i] < members[j] })
	samples := make([]int, len(members))
	joins := make([]gossip.Join, len(members))
	var rates []float64
	var refs []string
	for i, p := range members {
		joins[i] = a.joined[p]
		samples[i] = joins[i].Samples
		if joins[i].Ref != "" {
			if refs == nil {
				refs = make([]string, len(members))
			}
			refs[i] = joins[i].Ref
		}
		if m.cfg.NoPart != nil && m.cfg.NoPart(p) {
			joins[i].Client = true // owns nothing, like a peer that takes no inbound streams
		}
		if joins[i].Uplink > 0 {
			if rates == nil {
				rates = make([]float64, len(members))
			}
			rates[i] = joins[i].Uplink
		}
	}
	if m.cfg.EvenShares {
		for i := range joins {
			joins[i].Uplink = 0 // the rates above still size the deadline
		}
	}
	shares := PartShares(joins)
	a.group = gossip.Group{Run: m.cfg.Run, Step: a.step, Attempt: a.attempt, Members: members, Samples: samples, Shares: shares, Rates: rates, Refs: refs}
	a.group.Round = groupID(a.group)
	close(a.done)
}
