package allreduce

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

func TestAssemblerAgreesAndRotates(t *testing.T) {
	ids := []peer.ID{testutil.PeerID(1), testutil.PeerID(2), testutil.PeerID(3), testutil.PeerID(4)}
	rev := []peer.ID{ids[3], ids[2], ids[1], ids[0]}
	seen := map[peer.ID]bool{}
	for step := uint64(0); step < 64; step++ {
		x, y := Assembler(step, ids), Assembler(step, rev)
		if x != y {
			t.Fatalf("step %d: order of candidates changed the assembler", step)
		}
		seen[x] = true
	}
	if len(seen) < 3 {
		t.Fatalf("assembler role did not rotate: %v", seen)
	}
}

// fixedView is a swarm whose membership never changes.
type fixedView struct {
	mu     sync.Mutex
	step   uint64
	ids    []peer.ID
	behind bool
}

func (f *fixedView) Step() uint64              { f.mu.Lock(); defer f.mu.Unlock(); return f.step }
func (f *fixedView) Expected(uint64) []peer.ID { return f.ids }
func (f *fixedView) Behind(uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.behind
}

func TestMatchAllJoinSameGroup(t *testing.T) {
	_, ts, ids := memPeers(4)
	st := &fixedView{step: 5, ids: ids}
	var mms []*Matchmaker
	for _, tr := range ts {
		mms = append(mms, NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: 3 * time.Second}, st))
	}
	rounds := make([]Round, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range mms {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rounds[i], errs[i] = mms[i].Match(context.Background(), 5, 10*(i+1), ids)
		}(i)
	}
	wg.Wait()
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("group closed after %v: it should close as soon as all expected peers joined", el)
	}
	for i := range mms {
		if errs[i] != nil {
			t.Fatalf("peer %d: %v", i, errs[i])
		}
		if rounds[i].ID != rounds[0].ID || len(rounds[i].Members) != 4 {
			t.Fatalf("peer %d got a different round: %+v vs %+v", i, rounds[i], rounds[0])
		}
	}
	for i, m := range rounds[0].Members {
		if want := 10 * (1 + slices.Index(ids, m)); rounds[0].Samples[i] != want {
			t.Fatalf("member %s has samples %d, want %d", m, rounds[0].Samples[i], want)
		}
	}
}

// joinedAt counts the peers that joined m's newest assembly of step,
// and reports whether it closed.
func (m *Matchmaker) joinedAt(step uint64) (joined int, closed bool) {
	m.mu.Lock()
	a := m.assemblies[step]
	m.mu.Unlock()
	if a == nil {
		return 0, false
	}
	select {
	case <-a.done:
		closed = true
	default:
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.joined), closed
}

// The assembler waits for a missing peer only for the join window, then
// forms the group of those who came. The window is an hour on a mock
// clock: the test passes in no time only because advancing the clock
// closes it.
func TestMatchWindowClosesWithoutMissingPeer(t *testing.T) {
	net, ts, ids := memPeers(3)
	mock := clock.NewMock()
	const window = time.Hour
	net.Clock, net.Timeout = mock, 2*window // frames outlast the window
	st := &fixedView{step: 0, ids: ids}
	var mms []*Matchmaker
	for _, tr := range ts {
		mms = append(mms, NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: window, Clock: mock}, st))
	}
	// The assembler of step 0 waits for everyone, but one peer never comes.
	leader := Assembler(0, ids)
	var absent int
	for i, id := range ids {
		if id != leader {
			absent = i
			break
		}
	}
	var wg sync.WaitGroup
	rounds := make([]Round, 3)
	errs := make([]error, 3)
	for i := range mms {
		if i == absent {
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rounds[i], errs[i] = mms[i].Match(context.Background(), 0, 4, ids)
		}(i)
	}
	// Both joined: the window's timer runs since the first join. Just
	// short of the window nothing happens; at the window the group forms.
	assembler := mms[slices.Index(ids, leader)]
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n, _ := assembler.joinedAt(0); n != 2 {
			return fmt.Errorf("%d of 2 joined", n)
		}
		return nil
	})
	mock.Add(window - time.Second)
	if _, closed := assembler.joinedAt(0); closed {
		t.Fatal("the assembly closed before its window")
	}
	mock.Add(time.Second)
	wg.Wait()
	for i := range mms {
		if i == absent {
			continue
		}
		if errs[i] != nil {
			t.Fatalf("peer %d: %v", i, errs[i])
		}
		if len(rounds[i].Members) != 2 || rounds[i].Index(ids[absent]) >= 0 {
			t.Fatalf("peer %d: group %v should hold the two peers that came", i, rounds[i].Members)
		}
	}
	// Once the swarm moved on, the latecomer is told so.
	st.mu.Lock()
	st.step = 1
	st.mu.Unlock()
	if _, err := mms[absent].Match(context.Background(), 0, 4, ids); !errors.Is(err, ErrBehind) {
		t.Fatalf("late joiner: got %v, want ErrBehind", err)
	}
}

func TestMatchDeadAssemblerTimesOut(t *testing.T) {
	net, ts, ids := memPeers(2)
	net.Timeout = 200 * time.Millisecond
	st := &fixedView{ids: ids}
	mm := NewMatchmaker(ts[0], MatchConfig{Run: "ab", JoinWindow: 100 * time.Millisecond, Slack: 100 * time.Millisecond}, st)
	NewMatchmaker(ts[1], MatchConfig{Run: "ab"}, st)
	// Find a step whose assembler is peer 1, then kill peer 1.
	var step uint64
	for Assembler(step, ids) != ids[1] {
		step++
	}
	st.step = step
	net.Isolate(ids[1])
	start := time.Now()
	if _, err := mm.Match(context.Background(), step, 1, ids); err == nil {
		t.Fatal("match with a dead assembler succeeded")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v to give up on a dead assembler", el)
	}
}

// A failed round is retried under a new attempt: same members, new round
// ID, so no owner mixes parts of two attempts.
func TestMatchRetryGetsNewRoundID(t *testing.T) {
	_, ts, ids := memPeers(2)
	st := &fixedView{step: 3, ids: ids}
	mms := []*Matchmaker{
		NewMatchmaker(ts[0], MatchConfig{Run: "ab", JoinWindow: time.Second}, st),
		NewMatchmaker(ts[1], MatchConfig{Run: "ab", JoinWindow: time.Second}, st),
	}
	both := func() [2]Round {
		var out [2]Round
		var wg sync.WaitGroup
		for i := range mms {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r, err := mms[i].Match(context.Background(), 3, 8, ids)
				if err != nil {
					t.Error(err)
				}
				out[i] = r
			}(i)
		}
		wg.Wait()
		return out
	}
	first, second := both(), both()
	if first[0].ID != first[1].ID || second[0].ID != second[1].ID {
		t.Fatal("members of one attempt got different rounds")
	}
	if first[0].ID == second[0].ID {
		t.Fatal("retry reused the failed round's ID")
	}
}

// An assembler that learns the swarm already passed the step turns the
// group away instead of averaging stale replicas.
func TestMatchRefusesWhenSwarmMovedOn(t *testing.T) {
	_, ts, ids := memPeers(1)
	st := &fixedView{step: 2, ids: ids, behind: true}
	mm := NewMatchmaker(ts[0], MatchConfig{Run: "ab", JoinWindow: 100 * time.Millisecond}, st)
	if _, err := mm.Match(context.Background(), 2, 8, ids); !errors.Is(err, ErrBehind) {
		t.Fatalf("got %v, want ErrBehind", err)
	}
}

// Below the run's minimum group size no round forms: every joiner hears
// ErrTooFew (and retries); at the minimum, the round forms.
func TestMatchMinGroup(t *testing.T) {
	_, ts, ids := memPeers(3)
	st := &fixedView{ids: ids[:2]}
	var mms []*Matchmaker
	for _, tr := range ts {
		mms = append(mms, NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: 100 * time.Millisecond, MinGroup: 3}, st))
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = mms[i].Match(context.Background(), 0, 4, ids[:2])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrTooFew) {
			t.Fatalf("peer %d: got %v, want ErrTooFew", i, err)
		}
	}
	st.mu.Lock()
	st.ids = ids
	st.mu.Unlock()
	rounds := make([]Round, 3)
	errs = make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rounds[i], errs[i] = mms[i].Match(context.Background(), 0, 4, ids)
		}()
	}
	wg.Wait()
	for i := range 3 {
		if errs[i] != nil || len(rounds[i].Members) != 3 {
			t.Fatalf("peer %d with three joined: %v, %d members", i, errs[i], len(rounds[i].Members))
		}
	}
}

// With a maximum group size the assembler closes as soon as that many
// joined; the others hear ErrGroupFull, and their retry forms the step's
// next group (a new attempt, so a new round ID).
func TestMatchMaxGroup(t *testing.T) {
	_, ts, ids := memPeers(5)
	st := &fixedView{ids: ids}
	var mms []*Matchmaker
	for _, tr := range ts {
		mms = append(mms, NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: 5 * time.Second, MaxGroup: 3}, st))
	}
	rounds := make([]Round, 5)
	errs := make([]error, 5)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range mms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rounds[i], errs[i] = mms[i].Match(context.Background(), 0, 4, ids)
			if errors.Is(errs[i], ErrGroupFull) {
				rounds[i], errs[i] = mms[i].Match(context.Background(), 0, 4, ids)
			}
		}()
	}
	wg.Wait()
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("a full group waited for the join window (%v)", el)
	}
	sizes := map[string]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
		if len(rounds[i].Members) > 3 {
			t.Fatalf("peer %d: group of %d, cap is 3", i, len(rounds[i].Members))
		}
		sizes[rounds[i].ID] = len(rounds[i].Members)
	}
	if len(sizes) != 2 {
		t.Fatalf("got %d groups %v, want a full one and the rest", len(sizes), sizes)
	}
	var full []int
	for i, r := range rounds {
		if n := sizes[r.ID]; n != 3 && n != 2 {
			t.Fatalf("group %s has %d members, want 3 and 2", r.ID, n)
		} else if n == 3 {
			full = append(full, i)
		}
	}

	// The full group's round failed: its members retry, one a little
	// late. The retry waits for all three instead of closing on the first.
	for k, i := range full {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(k) * 50 * time.Millisecond)
			rounds[i], errs[i] = mms[i].Match(context.Background(), 0, 4, ids)
		}()
	}
	wg.Wait()
	for _, i := range full {
		if errs[i] != nil || len(rounds[i].Members) != 3 {
			t.Fatalf("retry of the full group: peer %d got %v, %d members", i, errs[i], len(rounds[i].Members))
		}
	}
}

// minView is a fixedView that sets the minimum group itself.
type minView struct {
	*fixedView
	min int
}

func (v minView) MinGroup(uint64) int { return v.min }

// A view's own minimum overrides the config's: two peers form a round
// although the run's minimum is three (a Moshpit grid line of two).
func TestMatchViewMinGroupOverrides(t *testing.T) {
	_, ts, ids := memPeers(2)
	v := minView{&fixedView{ids: ids}, 2}
	var mms []*Matchmaker
	for _, tr := range ts {
		mms = append(mms, NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: 200 * time.Millisecond, MinGroup: 3}, v))
	}
	rounds := make([]Round, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { rounds[i], errs[i] = mms[i].Match(context.Background(), 0, 4, ids) })
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil || len(rounds[i].Members) != 2 {
			t.Fatalf("peer %d: %v, %d members; the view's minimum of 2 should let the pair average", i, errs[i], len(rounds[i].Members))
		}
	}
}

// waitGraced waits until the newest assembly of step is past its window
// and still open, waiting for a failed round's member.
func (m *Matchmaker) waitGraced(t *testing.T, step uint64) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		m.mu.Lock()
		a := m.assemblies[step]
		m.mu.Unlock()
		a.mu.Lock()
		graced := a.graced
		a.mu.Unlock()
		if _, closed := m.joinedAt(step); closed || !graced {
			return fmt.Errorf("assembly of step %d: closed %v, in its grace %v; want open, in its grace", step, closed, graced)
		}
		return nil
	})
}

// A retry of a failed round waits past the join window for that round's
// members, so a member that learned of the failure late (it waited an
// open timeout on an unreachable peer) still averages the step. On a
// mock clock: at the window the retry stays open, and the late member's
// join closes it with everyone.
func TestMatchRetryWaitsForFailedRound(t *testing.T) {
	net, ts, ids := memPeers(3)
	mock := clock.NewMock()
	const window = time.Hour
	net.Clock, net.Timeout = mock, 4*window
	st := &fixedView{step: 0, ids: ids}
	var mms []*Matchmaker
	for _, tr := range ts {
		mms = append(mms, NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: window, Slack: 3 * window, Clock: mock}, st))
	}
	leader := Assembler(0, ids)
	assembler := mms[slices.Index(ids, leader)]
	late := (slices.Index(ids, leader) + 1) % len(ids)
	match := func(i int, out *Round, errp *error, wg *sync.WaitGroup) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*out, *errp = mms[i].Match(context.Background(), 0, 4, ids)
		}()
	}
	var wg sync.WaitGroup
	first := make([]Round, 3)
	errs := make([]error, 3)
	for i := range mms {
		match(i, &first[i], &errs[i], &wg)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || len(first[i].Members) != 3 {
			t.Fatalf("first attempt, peer %d: %v, %v", i, first[i].Members, err)
		}
	}
	// The round failed; two members retry at once, one comes late.
	retry := make([]Round, 3)
	for i := range mms {
		if i != late {
			match(i, &retry[i], &errs[i], &wg)
		}
	}
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n, _ := assembler.joinedAt(0); n != 2 {
			return fmt.Errorf("%d of 2 joined the retry", n)
		}
		return nil
	})
	mock.Add(window + time.Second)
	assembler.waitGraced(t, 0)
	match(late, &retry[late], &errs[late], &wg)
	wg.Wait()
	for i, err := range errs {
		if err != nil || len(retry[i].Members) != 3 {
			t.Fatalf("retry, peer %d: %v, %v; want all three", i, retry[i].Members, err)
		}
	}
	if retry[0].ID == first[0].ID {
		t.Fatal("the retry reused the failed round's ID")
	}

	// Another failure, and this time the third never comes: the retry
	// closes at the window plus the grace, with the two.
	for i := range mms {
		if i != late {
			match(i, &retry[i], &errs[i], &wg)
		}
	}
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n, _ := assembler.joinedAt(0); n != 2 {
			return fmt.Errorf("%d of 2 joined the second retry", n)
		}
		return nil
	})
	mock.Add(window)
	assembler.waitGraced(t, 0)
	// The grace runs from when the window passed: it closes no sooner.
	var advanced time.Duration
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if _, closed := assembler.joinedAt(0); closed {
			return nil
		}
		mock.Add(time.Minute)
		advanced += time.Minute
		return errors.New("the retry is still open")
	})
	if advanced < assembler.retryGrace() {
		t.Fatalf("the retry closed %v after its window, before the grace (%v)", advanced, assembler.retryGrace())
	}
	wg.Wait()
	for i, err := range errs {
		if i != late && (err != nil || len(retry[i].Members) != 2) {
			t.Fatalf("second retry, peer %d: %v, %v; want the two that came", i, retry[i].Members, err)
		}
	}
}

// Reference tags go from the joins into the round, in member order, and
// into its ID: members told different tags hold different rounds.
func TestMatchCarriesReferenceTags(t *testing.T) {
	_, ts, ids := memPeers(3)
	st := &fixedView{step: 5, ids: ids}
	var mms []*Matchmaker
	for _, tr := range ts {
		mms = append(mms, NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: 3 * time.Second}, st))
	}
	tags := []string{"aa", "aa", ""}
	rounds := make([]Round, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range mms {
		wg.Go(func() { rounds[i], errs[i] = mms[i].MatchRef(context.Background(), 5, 1, ids, tags[i]) })
	}
	wg.Wait()
	for i := range mms {
		if errs[i] != nil {
			t.Fatalf("peer %d: %v", i, errs[i])
		}
		if rounds[i].ID != rounds[0].ID || !slices.Equal(rounds[i].Refs, rounds[0].Refs) {
			t.Fatalf("peer %d got another round: %+v", i, rounds[i])
		}
		if got := rounds[0].Refs[rounds[0].Index(ts[i].Self())]; got != tags[i] {
			t.Fatalf("peer %d's tag %q in the round, it sent %q", i, got, tags[i])
		}
	}
	g := gossip.Group{Run: "ab", Step: 5, Members: rounds[0].Members, Samples: rounds[0].Samples, Shares: rounds[0].Shares, Refs: rounds[0].Refs}
	plain := g
	plain.Refs = nil
	if groupID(g) != rounds[0].ID || groupID(plain) == rounds[0].ID {
		t.Fatal("the round ID does not cover the reference tags")
	}
}
