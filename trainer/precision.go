package trainer

import (
	"cmp"
	"fmt"

	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// Precisions of a model's matrix products: fp32 throughout, or inputs
// rounded to bfloat16 with fp32 sums (mixed precision). Parameters,
// gradients, optimizer state, norms, softmax and the loss are fp32 in
// both, and the average and the optimizer step run on the fp32 vectors as
// ever, so replicas stay bit-identical: only the gradient a node adds
// differs in its low bits, as between engines or CPUs.
const (
	PrecisionFP32 = "fp32"
	PrecisionBF16 = "bf16"
)

// DefaultPrecision is the precision of a ModelConfig with Precision "":
// like the engine, this node's choice, not the run's.
var DefaultPrecision = PrecisionFP32

// CheckPrecision reports why this machine cannot train in p, if it
// cannot: bf16 needs the CPU's bf16 dot products (AVX512_BF16), without
// which it would be slower than fp32, not faster.
func CheckPrecision(p string) error {
	switch p {
	case PrecisionFP32:
		return nil
	case PrecisionBF16:
		if !kernels.HasBF16() {
			return fmt.Errorf("precision %s: this CPU has no bf16 dot products (AVX512_BF16), so bf16 would be slower than fp32; use --precision %s", p, PrecisionFP32)
		}
		return nil
	default:
		return fmt.Errorf("precision %q, want %s or %s", p, PrecisionFP32, PrecisionBF16)
	}
}

// precision is the precision cfg trains in.
func (c ModelConfig) precision() string { return cmp.Or(c.Precision, DefaultPrecision) }

// Compute names the engine and precision c trains on, e.g. "native/bf16".
func (c ModelConfig) Compute() string { return c.engine() + "/" + c.precision() }
