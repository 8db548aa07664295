package averaging

import (
	"context"
	"errors"
	"log/slog"
	"slices"

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
type moshpit struct {
	exact      Strategy // below the cap
	av         *allreduce.Averager
	log        *slog.Logger
	active     bool      // the last step averaged in Moshpit groups
	local, avg []float32 // our parameters after the local step; the group's mean
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
	r, err := env.Match(ctx, step, samples, group)
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
	if err := s.av.AllReduce(ctx, r, s.local, s.avg); err != nil {
		return keep, &RoundError{"all-reduce", err}
	}
	return Outcome{Next: step + 1, Params: s.avg, Members: r.Members, Group: grid}, nil
}

func (s *moshpit) Reset() { s.exact.Reset() }
