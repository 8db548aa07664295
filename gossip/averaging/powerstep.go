package averaging

import (
	"context"

	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
)

// powerStrategy runs PowerSGD's two rounds (powersgd.go) on each step's
// matched round.
type powerStrategy struct {
	ps  *PowerSGD
	av  *allreduce.Averager
	avg []float32
}

func (s *powerStrategy) Step(ctx context.Context, env Env, step uint64, grad []float32, samples int) (Outcome, error) {
	if err := checkLen(grad, s.avg); err != nil {
		return Outcome{}, err
	}
	reduce := func(ctx context.Context, r allreduce.Round, x, out []float32) error {
		return s.ps.AllReduce(ctx, s.av, r, x, out)
	}
	return exactStep(ctx, env, step, grad, samples, reduce, s.avg)
}

func (s *powerStrategy) Reset() { s.ps.Reset() }
