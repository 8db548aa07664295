package averaging

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/gossip/swarm"
)

// fakeEnv is a node without a node: its swarm view is given, Match
// builds the round every member builds alike, and its optimizer is
// plain SGD with rate 1 (params -= grad).
type fakeEnv struct {
	view     swarm.View
	params   []float32
	matchErr error
	samples  []int // the round's samples, in member order (else 1 each)
	claimed  int   // the samples the last Match was asked to claim
	board    *refBoard
}

// refBoard is what an assembler does with the members' reference tags:
// each member posts its tag for a step and waits for its group's.
type refBoard struct {
	mu   sync.Mutex
	cond *sync.Cond
	tags map[uint64]map[peer.ID]string
}

func newRefBoard() *refBoard {
	b := &refBoard{tags: map[uint64]map[peer.ID]string{}}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// post records self's tag at step and returns the group's, in member
// order (nil when nobody has one), once every member posted.
func (b *refBoard) post(step uint64, self peer.ID, tag string, members []peer.ID) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tags[step] == nil {
		b.tags[step] = map[peer.ID]string{}
	}
	b.tags[step][self] = tag
	b.cond.Broadcast()
	missing := func(p peer.ID) bool { _, ok := b.tags[step][p]; return !ok }
	for slices.ContainsFunc(members, missing) {
		b.cond.Wait()
	}
	out := make([]string, len(members))
	some := false
	for i, p := range members {
		out[i] = b.tags[step][p]
		some = some || out[i] != ""
	}
	if !some {
		return nil
	}
	return out
}

func (e *fakeEnv) MatchRef(ctx context.Context, step uint64, samples int, group []peer.ID, ref string) (allreduce.Round, error) {
	r, err := e.Match(ctx, step, samples, group)
	if err != nil {
		return r, err
	}
	r.Refs = e.board.post(step, e.view.Self, ref, r.Members)
	run := "t"
	if r.Refs != nil {
		run += "/" + strings.Join(r.Refs, ",")
	}
	r.ID = allreduce.RoundID(run, step, 0, r.Members, r.Samples, nil)
	return r, nil
}

func (e *fakeEnv) Swarm() swarm.View    { return e.view }
func (e *fakeEnv) Params(dst []float32) { copy(dst, e.params) }
func (e *fakeEnv) LocalStep(step uint64, params, grad []float32) error {
	for i := range params {
		params[i] -= grad[i]
	}
	return nil
}
func (e *fakeEnv) Match(ctx context.Context, step uint64, samples int, group []peer.ID) (allreduce.Round, error) {
	e.claimed = samples
	if e.matchErr != nil {
		return allreduce.Round{}, e.matchErr
	}
	members := slices.Sorted(slices.Values(group))
	ones := slices.Repeat([]int{1}, len(members))
	if len(e.samples) == len(members) {
		ones = e.samples
	}
	return allreduce.Round{Step: step, Members: members, Samples: ones, ID: allreduce.RoundID("t", step, 0, members, ones, nil)}, nil
}

func live(ids []peer.ID, self peer.ID, step uint64) []gossip.Member {
	var out []gossip.Member
	for _, p := range ids {
		if p != self {
			out = append(out, gossip.Member{Heartbeat: gossip.Heartbeat{Peer: p, Step: step, Hash: "h"}})
		}
	}
	return out
}

// stepAll runs one Step at every member at once.
func stepAll(t *testing.T, ss []Strategy, envs []*fakeEnv, step uint64, grads [][]float32) ([]Outcome, []error) {
	t.Helper()
	outs := make([]Outcome, len(ss))
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i := range ss {
		wg.Go(func() { outs[i], errs[i] = ss[i].Step(context.Background(), envs[i], step, grads[i], 1) })
	}
	wg.Wait()
	return outs, errs
}

func setup(t *testing.T, k, n, maxGroup int, codec compression.Codec) ([]Strategy, []*fakeEnv, []peer.ID) {
	t.Helper()
	_, ts, ids := memPeers(k)
	// Members in peer order, as rounds list them.
	slices.SortFunc(ts, func(a, b *gossip.MemTransport) int { return strings.Compare(string(a.Self()), string(b.Self())) })
	slices.Sort(ids)
	var ss []Strategy
	var envs []*fakeEnv
	board := newRefBoard()
	for i, tr := range ts {
		av := allreduce.NewAverager(tr, allreduce.AveragerConfig{Codec: codec, RoundTimeout: 5 * time.Second})
		s, err := New(Config{Averager: av, NumParams: n, Codec: codec, MaxGroup: maxGroup})
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
		envs = append(envs, &fakeEnv{view: swarm.View{Run: "t", Self: ids[i], Live: live(ids, ids[i], 0), MaxGroup: maxGroup}, params: make([]float32, n), board: board})
	}
	return ss, envs, ids
}

func TestExactAveragesTheGradient(t *testing.T) {
	const k, n = 3, 500
	ss, envs, ids := setup(t, k, n, 0, compression.FP32{})
	rng := rand.New(rand.NewPCG(1, 2))
	grads := [][]float32{randVec(rng, n), randVec(rng, n), randVec(rng, n)}
	outs, errs := stepAll(t, ss, envs, 0, grads)
	want := allreduce.WeightedMean(grads, []int{1, 1, 1})
	var share float64
	for i, o := range outs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if o.Next != 1 || !slices.Equal(o.Grad, want) || o.Params != nil || !slices.Equal(o.Members, ids) {
			t.Fatalf("member %d: next %d, members %v, grad equal %v", i, o.Next, o.Members, slices.Equal(o.Grad, want))
		}
		share += o.Share
	}
	if share < 0.999 || share > 1.001 {
		t.Errorf("the members' parts add up to %.3f of the vector", share)
	}
}

// Under a lossy codec the residual carries what was dropped; Reset
// forgets it (the node loaded another state).
func TestFeedbackKeepsAndResetsTheResidual(t *testing.T) {
	const k, n = 2, 300
	ss, envs, _ := setup(t, k, n, 0, compression.Int8{})
	rng := rand.New(rand.NewPCG(3, 4))
	grads := [][]float32{randVec(rng, n), randVec(rng, n)}
	if _, errs := stepAll(t, ss, envs, 0, grads); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	fb := ss[0].(*feedback)
	if !slices.ContainsFunc(fb.residual, func(x float32) bool { return x != 0 }) {
		t.Fatal("int8 left no residual: the test checks nothing")
	}
	ss[0].Reset()
	if slices.ContainsFunc(fb.residual, func(x float32) bool { return x != 0 }) {
		t.Fatal("Reset kept the residual")
	}
}

func TestRoundErrors(t *testing.T) {
	ss, envs, _ := setup(t, 1, 10, 0, compression.FP32{})
	for _, tc := range []struct {
		err   error
		round bool
	}{{allreduce.ErrBehind, false}, {allreduce.ErrTooFew, false}, {errors.New("boom"), true}} {
		envs[0].matchErr = tc.err
		out, err := ss[0].Step(context.Background(), envs[0], 3, make([]float32, 10), 1)
		var re *RoundError
		if !errors.Is(err, tc.err) || errors.As(err, &re) != tc.round || out.Grad != nil {
			t.Errorf("match error %v: got %v (round error %v), outcome %+v", tc.err, err, errors.As(err, &re), out)
		}
	}
	if _, err := ss[0].Step(context.Background(), envs[0], 3, make([]float32, 11), 1); err == nil {
		t.Error("a gradient of the wrong length was averaged")
	}
}

// Above the cap every member steps locally and its group averages the
// parameters; at the cap the same strategy averages gradients exactly.
func TestMoshpitAboveTheCap(t *testing.T) {
	const k, n = 4, 64
	ss, envs, ids := setup(t, k, n, 2, compression.FP32{})
	rng := rand.New(rand.NewPCG(5, 6))
	var grads [][]float32
	for i := range k {
		envs[i].params = randVec(rng, n)
		grads = append(grads, randVec(rng, n))
	}
	outs, errs := stepAll(t, ss, envs, 0, grads)
	for i, o := range outs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if o.Grad != nil || o.Params == nil || len(o.Members) != 2 || o.Next != 1 || !slices.Equal(o.Group, ids) {
			t.Fatalf("member %d: %+v", i, o)
		}
		// The group's mean of the local steps.
		var want []float32
		for _, p := range o.Members {
			j := slices.Index(ids, p)
			local := slices.Clone(envs[j].params)
			envs[j].LocalStep(0, local, grads[j])
			if want == nil {
				want = local
				continue
			}
			want = allreduce.WeightedMean([][]float32{want, local}, []int{1, 1})
		}
		if !slices.Equal(o.Params, want) {
			t.Fatalf("member %d did not get its group's mean parameters", i)
		}
	}
	// Two of the four, at the cap: exact gradient averaging.
	ss2, envs2, _ := setup(t, 2, n, 2, compression.FP32{})
	outs, errs = stepAll(t, ss2, envs2, 0, grads[:2])
	if errs[0] != nil || outs[0].Grad == nil || outs[0].Params != nil {
		t.Fatalf("at the cap: %v, %+v", errs[0], outs[0])
	}
	// A failed round keeps the local step at the same step.
	envs[0].matchErr = errors.New("boom")
	o, err := ss[0].Step(context.Background(), envs[0], 1, grads[0], 1)
	var re *RoundError
	if !errors.As(err, &re) || o.Next != 1 || o.Params == nil {
		t.Fatalf("failed Moshpit round: %v, %+v", err, o)
	}
}

// Every Moshpit outcome the node's loop commits on: the local step is
// spent whatever the round does, and only a round that counts (averaged,
// went on without us, or nobody to average with) moves the step on.
func TestMoshpitOutcomes(t *testing.T) {
	const n = 16
	for _, tc := range []struct {
		name     string
		live     int   // trainers besides self
		matchErr error // what matchmaking says
		next     uint64
		members  bool // averaged with a group
		errIs    error
		round    bool // a *RoundError
	}{
		{"the group went on without us", 3, allreduce.ErrBehind, 6, false, nil, false},
		{"too few for the line", 3, allreduce.ErrTooFew, 5, false, allreduce.ErrTooFew, false},
		{"matchmaking failed", 3, errors.New("boom"), 5, false, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss, envs, _ := setup(t, 1+tc.live, n, 2, compression.FP32{})
			env := envs[0]
			env.params = slices.Repeat([]float32{1}, n)
			env.matchErr = tc.matchErr
			grad := slices.Repeat([]float32{0.25}, n)
			out, err := ss[0].Step(context.Background(), env, 5, grad, 1)
			var re *RoundError
			if errors.As(err, &re) != tc.round || (tc.errIs != nil && !errors.Is(err, tc.errIs)) || (tc.errIs == nil && !tc.round && err != nil) {
				t.Fatalf("error %v", err)
			}
			if out.Next != tc.next || out.Params == nil || out.Params[0] != 0.75 || (out.Members != nil) != tc.members || len(out.Group) != 1+tc.live {
				t.Fatalf("outcome %+v, want next %d with the local step 1-0.25", out, tc.next)
			}
		})
	}
	// Alone in its grid line (5 trainers, cap 4: lines of at most 3, and
	// with the right layout one peer has none): a local step that counts.
	ss, envs, ids := setup(t, 5, n, 4, compression.FP32{})
	for i := range ids {
		envs[i].params = slices.Repeat([]float32{1}, n)
		v := envs[i].view
		if g := v.MoshpitGroup(5, v.Moshpit()); len(g) < 2 {
			envs[i].matchErr = errors.New("must not match alone")
			out, err := ss[i].Step(context.Background(), envs[i], 5, slices.Repeat([]float32{0.25}, n), 1)
			if err != nil || out.Next != 6 || out.Params[0] != 0.75 || out.Members != nil {
				t.Fatalf("alone: %v, %+v", err, out)
			}
			return
		}
	}
	t.Log("no peer alone in its line at step 5 with this layout")
}

// PowerSGD as a strategy: both members get the same averaged gradient,
// and Reset clears its error feedback.
func TestPowerSGDStrategy(t *testing.T) {
	const k, rows, cols = 2, 64, 80
	_, ts, ids := memPeers(k)
	var ss []Strategy
	var envs []*fakeEnv
	for i, tr := range ts {
		av := allreduce.NewAverager(tr, allreduce.AveragerConfig{RoundTimeout: 5 * time.Second})
		s, err := New(Config{Averager: av, NumParams: rows * cols, PowerSGD: &PowerSGDConfig{Rank: 2, Shapes: [][]int{{rows, cols}}, MinMatrix: 100, Seed: 1}})
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
		envs = append(envs, &fakeEnv{view: swarm.View{Run: "t", Self: ids[i], Live: live(ids, ids[i], 0)}, params: make([]float32, rows*cols)})
	}
	rng := rand.New(rand.NewPCG(9, 9))
	outs, errs := stepAll(t, ss, envs, 0, [][]float32{randVec(rng, rows*cols), randVec(rng, rows*cols)})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if !slices.Equal(outs[0].Grad, outs[1].Grad) || outs[0].Next != 1 {
		t.Fatal("the members' averaged gradients differ")
	}
	ps := ss[0].(*powerStrategy).ps
	if !slices.ContainsFunc(ps.residual, func(x float32) bool { return x != 0 }) {
		t.Fatal("a rank-2 step of a random gradient left no residual: the test checks nothing")
	}
	ss[0].Reset()
	if slices.ContainsFunc(ps.residual, func(x float32) bool { return x != 0 }) {
		t.Fatal("Reset kept the residual")
	}
}

// The next exact round's candidates are the members that owned a part:
// a client (share 0) is never asked to assemble, since others cannot
// dial it; a round with equal parts keeps every member.
func TestOwnersAreTheNextCandidates(t *testing.T) {
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	for _, tc := range []struct {
		r    allreduce.Round
		want []peer.ID
	}{
		{allreduce.Round{Members: []peer.ID{a, b, c}}, []peer.ID{a, b, c}},
		{allreduce.Round{Members: []peer.ID{a, b, c}, Shares: []int{3, 0, 2}}, []peer.ID{a, c}},
		{allreduce.Round{Members: []peer.ID{a, b}, Shares: []int{0, 1}}, []peer.ID{b}},
	} {
		if got := owners(tc.r); !slices.Equal(got, tc.want) {
			t.Errorf("owners(%v, shares %v) = %v, want %v", tc.r.Members, tc.r.Shares, got, tc.want)
		}
	}
}
