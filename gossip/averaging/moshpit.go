package averaging

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
)

// moshpit averages in Moshpit groups (allreduce.MoshpitGrid) while the
// swarm has more trainers than the run's MaxGroup, and like exact below
// it: every peer takes an optimizer step on its own gradient, then its
// group averages the parameters with equal weights. Groups rotate every
// step, so what one group learned reaches the whole grid within its
// number of dimensions of steps, and no round waits on more than
// MaxGroup peers. Replicas then agree closely, not bit for bit, so the
// swarm policy relaxes its checks above the cap (swarm.View.Behind,
// Diverged); the run still ends on one state through the final-step
// consensus.
//
// Under a lossy codec the parameters themselves are not quantised (a
// weight's quantisation step is as large as many optimizer steps): each
// group keeps a reference, its last average, which every member that
// was in that round holds bit for bit, and averages the members'
// deltas from it, parameters = reference + mean(codec(delta)). On a
// grid a group meets again every Dims steps, so a delta is the few
// steps of progress since, small and quantised finely. Members announce
// the tag of the reference they hold (the ID of the round that made it);
// unless every member holds the same one (the group's first meeting, a
// member that missed the last, a changed grid) the round averages the
// parameters in fp32 and becomes the new reference. What the codec drops
// is kept per peer, in parameter space, and added to the next delta
// whatever group that goes to: a round conserves the group's sum of
// parameters plus residuals, so nothing is lost, only delayed.
type moshpit struct {
	exact      Strategy // below the cap
	av         *allreduce.Averager
	lossy      bool // the run's codec drops something: average deltas
	log        *slog.Logger
	active     bool      // the last step averaged in Moshpit groups
	local, avg []float32 // our parameters after the local step; the group's mean
	delta      []float32 // local - the group's reference
	residual   []float32 // what the codec owes from our past contributions
	refs       map[[32]byte]*groupRef
	deltas     int // rounds averaged as codec'd deltas
}

// DeltaRounds is how many Moshpit rounds s averaged as codec'd deltas
// from a shared reference (0 for any other strategy).
func DeltaRounds(s Strategy) int {
	if m, ok := s.(*moshpit); ok {
		return m.deltas
	}
	return 0
}

// groupRef is a group's last average: identical at every member of the
// round named by tag.
type groupRef struct {
	tag    string
	params []float32
}

func newMoshpit(exact Strategy, av *allreduce.Averager, codec compression.Codec, n int, log *slog.Logger) *moshpit {
	s := &moshpit{exact: exact, av: av, log: log, local: make([]float32, n), avg: make([]float32, n)}
	if codec != nil && codec.ID() != compression.IDFP32 {
		s.lossy = true
		s.delta, s.residual = make([]float32, n), make([]float32, n)
		s.refs = map[[32]byte]*groupRef{}
	}
	return s
}

// fp32Codecs makes a round lossless whatever the averager's codec.
func fp32Codecs(lo, hi int) (compression.Codec, compression.Codec) {
	return compression.FP32{}, compression.FP32{}
}

func (s *moshpit) Step(ctx context.Context, env Env, step uint64, grad []float32, samples int) (Outcome, error) {
	if err := checkLen(grad, s.avg); err != nil {
		return Outcome{}, err
	}
	v := env.Swarm()
	grid := v.Moshpit()
	if (grid != nil) != s.active {
		s.active = grid != nil
		if s.active {
			s.log.Info("swarm is larger than the max group: averaging parameters in rotating Moshpit groups", "step", step, "peers", len(grid), "max_group", v.MaxGroup)
		} else {
			s.log.Info("swarm fits one group again: averaging gradients exactly", "step", step)
		}
	}
	if grid == nil {
		return s.exact.Step(ctx, env, step, grad, samples)
	}
	env.Params(s.local)
	if err := env.LocalStep(step, s.local, grad); err != nil {
		return Outcome{}, err
	}
	// Only an averaged round, or a group that went on without us,
	// advances the step; after a failed round the local step is kept at
	// the same step and mixed in on the next try.
	keep := Outcome{Next: step, Params: s.local, Group: grid}
	group := v.MoshpitGroup(step, grid)
	if len(group) < 2 {
		// A partly filled grid leaves some peers alone in a dimension.
		keep.Next = step + 1
		return keep, nil
	}
	var ref *groupRef
	tag := ""
	key := groupKey(group)
	if s.lossy {
		s.forgetRefs(v.MoshpitGrid(grid), step, v.Self)
		if ref = s.refs[key]; ref != nil {
			tag = ref.tag
		}
	}
	r, err := env.MatchRef(ctx, step, samples, group, tag)
	switch {
	case errors.Is(err, allreduce.ErrBehind):
		s.log.Debug("group averaged without us; keeping our local step", "step", step)
		keep.Next = step + 1
		return keep, nil
	case errors.Is(err, allreduce.ErrTooFew):
		return keep, err
	case err != nil:
		return keep, &RoundError{"matchmaking", err}
	}
	// Parameters, not gradients: every replica counts the same. (A new
	// slice: the assembler still serves the announced one.)
	r.Samples = slices.Repeat([]int{1}, len(r.Members))
	switch {
	case !s.lossy:
		err = s.av.AllReduce(ctx, r, s.local, s.avg)
	case ref != nil && sharedRef(r.Refs, tag):
		for i, x := range s.local {
			s.delta[i] = x - ref.params[i]
		}
		if err = s.av.AllReduceEF(ctx, r, s.delta, s.residual, s.avg); err == nil {
			for i, d := range s.avg {
				s.avg[i] = ref.params[i] + d
			}
			s.deltas++
		}
	default:
		// No reference every member holds: this round makes one.
		r.Codecs = fp32Codecs
		err = s.av.AllReduceEF(ctx, r, s.local, s.residual, s.avg)
	}
	if err != nil {
		return keep, &RoundError{"all-reduce", err}
	}
	if s.lossy {
		if ref == nil {
			ref = &groupRef{params: make([]float32, len(s.avg))}
			s.refs[key] = ref
		}
		ref.tag = r.ID
		copy(ref.params, s.avg)
	}
	return Outcome{Next: step + 1, Params: s.avg, Members: r.Members, Group: grid}, nil
}

// sharedRef reports whether every member announced tag (non-empty).
func sharedRef(refs []string, tag string) bool {
	if tag == "" || len(refs) == 0 {
		return false
	}
	for _, r := range refs {
		if r != tag {
			return false
		}
	}
	return true
}

// groupKey names a group by its sorted members.
func groupKey(group []peer.ID) [32]byte {
	h := sha256.New()
	for _, p := range slices.Sorted(slices.Values(group)) {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// forgetRefs drops the references of groups we are no longer in on the
// current grid (a peer joined or left): at most Dims stay, one per
// dimension.
func (s *moshpit) forgetRefs(g allreduce.MoshpitGrid, step uint64, self peer.ID) {
	if len(s.refs) == 0 {
		return
	}
	keep := make(map[[32]byte]bool, g.Dims)
	for d := range uint64(g.Local + g.Dims - 1) { // a cycle of rounds
		keep[groupKey(g.GroupOf(step+d, self))] = true
	}
	for k := range s.refs {
		if !keep[k] {
			delete(s.refs, k)
		}
	}
}

// Reset forgets the residual, which belonged to the replaced replica.
// The references stay: they are the groups' shared averages, not ours,
// and a delta from them is right whatever our parameters.
func (s *moshpit) Reset() {
	s.exact.Reset()
	clear(s.residual)
}
