package trainer

import (
	"fmt"
	"math"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// Optimizer updates flat parameters from an averaged mean gradient. The
// update is plain Go on float32 buffers, not a gorgonia solver, so that every
// peer applies bit-identical updates on every architecture: each product
// that meets an addition is wrapped in an explicit float32(...) conversion,
// which the Go spec says rounds and so forbids fusing it into an FMA (arm64
// would fuse, amd64 would not). Implementations are not safe for concurrent
// use.
type Optimizer interface {
	// Name identifies the update rule, e.g. "adamw".
	Name() string
	// Step applies one update with learning rate lr. params and grads must
	// have the length given to the constructor (it panics otherwise); neither
	// slice is retained.
	Step(params, grads []float32, lr float32)
	// State returns a copy of the full optimizer state, for a joining peer.
	State() []float32
	// AppendState appends the state to dst and returns it: State without
	// the allocation, for callers that hash the state every step.
	AppendState(dst []float32) []float32
	// LoadState replaces the state with s as returned by State. It checks
	// the length and rejects NaN/Inf and out-of-range values, and changes
	// nothing on error.
	LoadState(s []float32) error
	// FirstNonFinite is the index, in State's layout, of the first NaN or
	// Inf in the state, or -1: a step can overflow the state while the
	// parameters stay finite (Adam's v = g² of a huge gradient). It reads
	// the state in place, with no copy.
	FirstNonFinite() int
}

// OptimizerNames are the names NewOptimizer accepts, as a run config
// spells them (and NewOptimizer's error lists them).
var OptimizerNames = []string{"adam", "adamw", "sgd", "momentum", "nesterov"}

// NewOptimizer returns the optimizer a run config names, for n parameters:
//
//   - "adam": Adam with AdamBeta1, AdamBeta2 and AdamEps; weightDecay is
//     ignored
//   - "adamw": the same with decoupled weight decay weightDecay
//   - "sgd": SGD with L2 weight decay weightDecay; momentum is ignored
//   - "momentum": SGD with momentum and L2 weight decay
//   - "nesterov": SGD with Nesterov momentum and L2 weight decay
//
// The result's Name is the rule it runs, which is not name when a
// parameter of 0 switches a part off: "adamw" with weightDecay 0 is
// "adam", "momentum" and "nesterov" with momentum 0 are "sgd". An unknown
// name or n < 0 is an error.
func NewOptimizer(name string, momentum, weightDecay float32, n int) (Optimizer, error) {
	if n < 0 {
		return nil, fmt.Errorf("optimizer %q: %d parameters, want >= 0", name, n)
	}
	switch name {
	case "adam":
		return NewAdam(AdamBeta1, AdamBeta2, AdamEps, 0, n), nil
	case "adamw":
		return NewAdam(AdamBeta1, AdamBeta2, AdamEps, weightDecay, n), nil
	case "sgd":
		return NewSGD(0, weightDecay, n), nil
	case "momentum":
		return NewSGD(momentum, weightDecay, n), nil
	case "nesterov":
		return NewNesterov(momentum, weightDecay, n), nil
	}
	return nil, fmt.Errorf("optimizer %q: want adam, adamw, sgd, momentum or nesterov", name)
}

// sgd is SGD with optional (Nesterov) momentum and coupled L2 weight decay,
// with PyTorch's semantics:
//
//	g = grad + wd·p;  v = μ·v + g;  p -= lr·(nesterov ? g + μ·v : v)
//
// With μ = 0 it is plain SGD and has no state.
type sgd struct {
	mu, wd   float32
	nesterov bool
	n        int
	v        []float32 // momentum buffer; nil when mu == 0
}

// NewSGD returns SGD with momentum (0 means plain SGD) and L2 weight decay
// for n parameters. State is the momentum buffer (n values), or empty when
// momentum is 0.
func NewSGD(momentum, weightDecay float32, n int) Optimizer {
	return newSGD(momentum, weightDecay, false, n)
}

// NewNesterov returns SGD with Nesterov momentum, the usual outer optimizer
// of DiLoCo. State as for NewSGD.
func NewNesterov(momentum, weightDecay float32, n int) Optimizer {
	return newSGD(momentum, weightDecay, true, n)
}

func newSGD(momentum, weightDecay float32, nesterov bool, n int) *sgd {
	if n < 0 {
		panic("trainer: optimizer size < 0")
	}
	o := &sgd{mu: momentum, wd: weightDecay, nesterov: nesterov, n: n}
	if momentum != 0 {
		o.v = make([]float32, n)
	}
	return o
}

func (o *sgd) Name() string {
	switch {
	case o.mu == 0:
		return "sgd"
	case o.nesterov:
		return "nesterov"
	}
	return "momentum"
}

func (o *sgd) Step(params, grads []float32, lr float32) {
	checkStepLen(o.n, params, grads)
	mu, wd := o.mu, o.wd
	for i, g := range grads {
		p := params[i]
		if wd != 0 {
			g += float32(wd * p)
		}
		if mu != 0 {
			v := float32(mu*o.v[i]) + g
			o.v[i] = v
			if o.nesterov {
				g += float32(mu * v)
			} else {
				g = v
			}
		}
		params[i] = p - float32(lr*g)
	}
}

func (o *sgd) State() []float32 { return o.AppendState([]float32{}) }

func (o *sgd) FirstNonFinite() int { return compression.FirstNonFinite(o.v) }

func (o *sgd) AppendState(dst []float32) []float32 { return append(dst, o.v...) }

func (o *sgd) LoadState(s []float32) error {
	want := len(o.v)
	if len(s) != want {
		return fmt.Errorf("%s: state has %d values, want %d", o.Name(), len(s), want)
	}
	if i := compression.FirstNonFinite(s); i >= 0 {
		return fmt.Errorf("%s: state value %d is %v", o.Name(), i, s[i])
	}
	copy(o.v, s)
	return nil
}

// adam is Adam with bias correction, and AdamW's decoupled weight decay
// when wd > 0 (PyTorch's semantics and order):
//
//	p *= 1 - lr·wd
//	m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²
//	p -= lr/(1-β1^t) · m / (√v/√(1-β2^t) + ε)
type adam struct {
	b1, b2, eps, wd float32
	n               int
	m, v            []float32
	t               uint64 // steps taken
}

// NewAdam returns Adam for n parameters (AdamW when weightDecay > 0).
// State layout, 2n+2 values: m (n), v (n), then the step count t as two
// integer-valued float32s, t mod 2^24 and t / 2^24 (float32 holds integers
// exactly only up to 2^24).
func NewAdam(beta1, beta2, eps, weightDecay float32, n int) Optimizer {
	if n < 0 {
		panic("trainer: optimizer size < 0")
	}
	return &adam{b1: beta1, b2: beta2, eps: eps, wd: weightDecay, n: n,
		m: make([]float32, n), v: make([]float32, n)}
}

func (o *adam) Name() string {
	if o.wd != 0 {
		return "adamw"
	}
	return "adam"
}

func (o *adam) Step(params, grads []float32, lr float32) {
	checkStepLen(o.n, params, grads)
	o.t++
	b1, b2, eps := o.b1, o.b2, o.eps
	c1, c2 := 1-b1, 1-b2
	// Bias corrections in float64 with exactly rounded operations only:
	// math.Pow is not promised to give the same bits on every architecture.
	bc1 := 1 - powi(float64(b1), o.t)
	bc2 := 1 - powi(float64(b2), o.t)
	stepSize := float32(float64(lr) / bc1)
	sqrtBc2 := float32(math.Sqrt(bc2))
	decay := 1 - float32(lr*o.wd) // 1 without weight decay, and p·1 is p
	// The loop, vectorised where the CPU allows, with the same bits.
	kernels.AdamStep(params, grads, o.m, o.v, b1, c1, b2, c2, sqrtBc2, eps, decay, stepSize)
}

func (o *adam) State() []float32 { return o.AppendState(make([]float32, 0, 2*o.n+2)) }

// FirstNonFinite scans m, then v (the step count is always finite).
func (o *adam) FirstNonFinite() int {
	if i := compression.FirstNonFinite(o.m); i >= 0 {
		return i
	}
	if i := compression.FirstNonFinite(o.v); i >= 0 {
		return o.n + i
	}
	return -1
}

func (o *adam) AppendState(dst []float32) []float32 {
	dst = append(dst, o.m...)
	dst = append(dst, o.v...)
	return append(dst, float32(o.t&(1<<24-1)), float32(o.t>>24))
}

func (o *adam) LoadState(s []float32) error {
	n := o.n
	if len(s) != 2*n+2 {
		return fmt.Errorf("%s: state has %d values, want %d (m, v, step)", o.Name(), len(s), 2*n+2)
	}
	if i := compression.FirstNonFinite(s); i >= 0 {
		return fmt.Errorf("%s: state value %d is %v", o.Name(), i, s[i])
	}
	for i, v := range s[n : 2*n] {
		if v < 0 {
			return fmt.Errorf("%s: second moment %d is negative (%v)", o.Name(), i, v)
		}
	}
	lo, hi := s[2*n], s[2*n+1]
	for _, f := range [2]float32{lo, hi} {
		if f < 0 || f >= 1<<24 || f != float32(math.Trunc(float64(f))) {
			return fmt.Errorf("%s: step count parts (%v, %v) must be integers in 0..2^24-1", o.Name(), lo, hi)
		}
	}
	copy(o.m, s[:n])
	copy(o.v, s[n:2*n])
	o.t = uint64(hi)<<24 | uint64(lo)
	return nil
}

// powi returns x^k by binary exponentiation. Each product is rounded
// explicitly, so the result is identical on every architecture.
func powi(x float64, k uint64) float64 {
	r := 1.0
	for ; k > 0; k >>= 1 {
		if k&1 != 0 {
			r = float64(r * x)
		}
		x = float64(x * x)
	}
	return r
}

// sqrt32 is the correctly rounded float32 square root (rounding the exact
// float64 root to float32 is exact-rounding safe for float32 inputs).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

func checkStepLen(n int, params, grads []float32) {
	if len(params) != n || len(grads) != n {
		panic(fmt.Sprintf("trainer: optimizer Step: len(params)=%d len(grads)=%d, want %d", len(params), len(grads), n))
	}
}
