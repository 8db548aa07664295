package averaging

import (
	"context"

	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
)

// exact averages the gradient as it is (fp32 on the wire, or a lossless
// codec): every member applies the exact mean.
type exact struct {
	av  *allreduce.Averager
	avg []float32
}

func (s *exact) Step(ctx context.Context, env Env, step uint64, grad []float32, samples int) (Outcome, error) {
	if err := checkLen(grad, s.avg); err != nil {
		return Outcome{}, err
	}
	return exactStep(ctx, env, step, grad, samples, s.av.AllReduce, s.avg)
}

func (s *exact) Reset() {}
