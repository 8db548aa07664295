package averaging

import (
	"context"

	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
)

// feedback averages under a lossy codec with error feedback: what the
// codec dropped from our contribution is added to the next one, so over
// steps nothing is lost (see allreduce.Averager.AllReduceEF).
type feedback struct {
	av       *allreduce.Averager
	residual []float32 // what the codec owes from our last contribution
	avg      []float32
}

func (s *feedback) Step(ctx context.Context, env Env, step uint64, grad []float32, samples int) (Outcome, error) {
	if err := checkLen(grad, s.avg); err != nil {
		return Outcome{}, err
	}
	reduce := func(ctx context.Context, r allreduce.Round, x, out []float32) error {
		return s.av.AllReduceEF(ctx, r, x, s.residual, out)
	}
	return exactStep(ctx, env, step, grad, samples, reduce, s.avg)
}

// Reset drops the residual: it belonged to the state being replaced.
func (s *feedback) Reset() { clear(s.residual) }
