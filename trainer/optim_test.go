package trainer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"strings"
	"testing"
)

func near(t *testing.T, what string, got float32, want float64) {
	t.Helper()
	if math.Abs(float64(got)-want) > 1e-6*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %.9g, want %.9g", what, got, want)
	}
}

func TestSGDHandValues(t *testing.T) {
	p := []float32{1}
	o := NewSGD(0, 0, 1)
	o.Step(p, []float32{0.5}, 0.1)
	near(t, "plain", p[0], 0.95)

	p = []float32{1}
	NewSGD(0, 0.1, 1).Step(p, []float32{0.5}, 0.1) // g = 0.5 + 0.1·1
	near(t, "weight decay", p[0], 0.94)

	p = []float32{1}
	o = NewSGD(0.9, 0, 1)
	o.Step(p, []float32{0.5}, 0.1) // v = 0.5
	near(t, "momentum step 1", p[0], 0.95)
	o.Step(p, []float32{0.5}, 0.1) // v = 0.9·0.5 + 0.5 = 0.95
	near(t, "momentum step 2", p[0], 0.855)

	p = []float32{1}
	o = NewNesterov(0.9, 0, 1)
	o.Step(p, []float32{0.5}, 0.1) // v = 0.5, update 0.5 + 0.45
	near(t, "nesterov step 1", p[0], 0.905)
	o.Step(p, []float32{0.5}, 0.1) // v = 0.95, update 0.5 + 0.855
	near(t, "nesterov step 2", p[0], 0.7695)

	if o.Name() != "nesterov" || NewSGD(0, 0, 1).Name() != "sgd" || NewSGD(0.9, 0, 1).Name() != "momentum" {
		t.Error("names")
	}
}

func TestAdamHandValues(t *testing.T) {
	p := []float32{1}
	o := NewAdam(0.9, 0.999, 1e-8, 0, 1)
	o.Step(p, []float32{1}, 0.1) // bias-corrected m̂ = 1, v̂ = 1: step lr·1/(1+ε)
	near(t, "adam step 1", p[0], 0.9)
	o.Step(p, []float32{-1}, 0.1)
	// m = 0.09 - 0.1 = -0.01, m̂ = -0.01/0.19; v = 0.000999 + 0.001, v̂ = 0.001999/0.001999 = 1
	near(t, "adam step 2", p[0], 0.9+0.1*0.01/0.19)

	p = []float32{1}
	w := NewAdam(0.9, 0.999, 1e-8, 0.1, 1)
	w.Step(p, []float32{0.5}, 0.1) // p·(1 - 0.01) - 0.1
	near(t, "adamw", p[0], 0.89)
	if w.Name() != "adamw" || o.Name() != "adam" {
		t.Error("names")
	}
}

// TestStateRoundTrip hands an optimizer's state to a fresh one mid-run and
// expects both to continue bit-identically.
func TestStateRoundTrip(t *testing.T) {
	const n = 33
	for _, mk := range []func() Optimizer{
		func() Optimizer { return NewSGD(0.9, 1e-3, n) },
		func() Optimizer { return NewNesterov(0.9, 0, n) },
		func() Optimizer { return NewSGD(0, 1e-3, n) },
		func() Optimizer { return NewAdam(0.9, 0.99, 1e-6, 0.01, n) },
	} {
		a := mk()
		pa, g := testVec(n, 1), make([]float32, n)
		for s := range 5 {
			fillGrad(g, s)
			a.Step(pa, g, 0.01)
		}
		b := mk()
		if err := b.LoadState(a.State()); err != nil {
			t.Fatalf("%s: %v", a.Name(), err)
		}
		pb := append([]float32(nil), pa...)
		for s := 5; s < 10; s++ {
			fillGrad(g, s)
			a.Step(pa, g, 0.01)
			b.Step(pb, g, 0.01)
		}
		for i := range pa {
			if math.Float32bits(pa[i]) != math.Float32bits(pb[i]) {
				t.Fatalf("%s: param %d diverged after state transfer", a.Name(), i)
			}
		}
	}
}

func TestAdamStepCountBeyond2to24(t *testing.T) {
	a := NewAdam(0.9, 0.999, 1e-8, 0, 2).(*adam)
	a.t = 1<<30 + 12345
	s := a.State()
	b := NewAdam(0.9, 0.999, 1e-8, 0, 2).(*adam)
	if err := b.LoadState(s); err != nil {
		t.Fatal(err)
	}
	if b.t != a.t {
		t.Fatalf("step count %d came back as %d", a.t, b.t)
	}
}

func TestLoadStateRejects(t *testing.T) {
	const n = 3
	adamState := func(edit func(s []float32)) []float32 {
		s := make([]float32, 2*n+2)
		s[2*n] = 4
		edit(s)
		return s
	}
	for _, tc := range []struct {
		opt  Optimizer
		s    []float32
		want string
	}{
		{NewSGD(0.9, 0, n), make([]float32, n+1), "want 3"},
		{NewSGD(0, 0, n), make([]float32, n), "want 0"},
		{NewSGD(0.9, 0, n), []float32{0, float32(math.NaN()), 0}, "NaN"},
		{NewAdam(0.9, 0.999, 1e-8, 0, n), make([]float32, 2*n), "want 8"},
		{NewAdam(0.9, 0.999, 1e-8, 0, n), adamState(func(s []float32) { s[1] = float32(math.Inf(1)) }), "+Inf"},
		{NewAdam(0.9, 0.999, 1e-8, 0, n), adamState(func(s []float32) { s[n] = -1 }), "negative"},
		{NewAdam(0.9, 0.999, 1e-8, 0, n), adamState(func(s []float32) { s[2*n] = 1.5 }), "step count"},
		{NewAdam(0.9, 0.999, 1e-8, 0, n), adamState(func(s []float32) { s[2*n+1] = 1 << 24 }), "step count"},
	} {
		before := tc.opt.State()
		err := tc.opt.LoadState(tc.s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: LoadState = %v, want error containing %q", tc.opt.Name(), err, tc.want)
		}
		after := tc.opt.State()
		for i := range before {
			if math.Float32bits(before[i]) != math.Float32bits(after[i]) {
				t.Errorf("%s: rejected LoadState changed the state", tc.opt.Name())
			}
		}
	}
}

// TestGoldenBits pins the exact bits of everything that must match across
// peers and architectures: initial weights, optimizer updates and learning
// rates. It is pure Go (no BLAS), so an arm64 build must reproduce it:
//
//	GOARCH=arm64 go test -c -o /tmp/t.arm64 ./trainer/ && qemu-aarch64 /tmp/t.arm64 -test.run Golden
func TestGoldenBits(t *testing.T) {
	h := sha256.New()
	put := func(v []float32) {
		for _, f := range v {
			binary.Write(h, binary.LittleEndian, math.Float32bits(f))
		}
	}
	put(initSpecs(denseSpecs([]int{7, 5, 3}, "layers", 0), 99, 7*5+5+5*3+3))
	const n = 64
	g := make([]float32, n)
	for _, o := range []Optimizer{NewSGD(0.9, 1e-3, n), NewNesterov(0.8, 0, n), NewAdam(0.9, 0.999, 1e-8, 0.01, n)} {
		p := testVec(n, 2)
		for s := range 25 {
			fillGrad(g, s)
			o.Step(p, g, 0.003)
		}
		put(p)
		put(o.State())
	}
	sched := Schedule{Base: 3e-3, Min: 1e-5, Warmup: 7, Total: 100, Decay: DecayCosine}
	for s := range 110 {
		put([]float32{sched.LR(s)})
	}
	const want = "d1f558f25a48e94cb51ba5201f699282d7facd9684f00b52ee2ddb6b4fde398e"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("golden hash %s, want %s: the shared numerics changed bits", got, want)
	}
}

// testVec and fillGrad give deterministic, irregular values built from
// integer hashing only (math.Sin could differ between architectures and
// would spoil TestGoldenBits).
func testVec(n int, seed int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = hashFloat(uint64(seed)<<32|uint64(i)) * 0.5
	}
	return v
}

func fillGrad(g []float32, step int) {
	for i := range g {
		g[i] = hashFloat(uint64(step)<<40|uint64(i)|1<<63) * 0.1
	}
}

// hashFloat maps x to an exactly representable float32 in [-1, 1).
func hashFloat(x uint64) float32 {
	return float32(int32(splitmix64(x)>>32)) * 0x1p-31
}

// NewOptimizer builds, for every name it accepts, exactly the optimizer a
// node built by hand before it existed: same rule, same constants, so the
// same bits after a few steps.
func TestNewOptimizer(t *testing.T) {
	const n, mu, wd = 16, 0.8, 0.01
	for _, c := range []struct {
		name     string
		momentum float32
		want     Optimizer
		wantName string
	}{
		{"adam", mu, NewAdam(0.9, 0.999, 1e-8, 0, n), "adam"}, // weight decay ignored
		{"adamw", mu, NewAdam(0.9, 0.999, 1e-8, wd, n), "adamw"},
		{"sgd", mu, NewSGD(0, wd, n), "sgd"}, // momentum ignored
		{"momentum", mu, NewSGD(mu, wd, n), "momentum"},
		{"momentum", 0, NewSGD(0, wd, n), "sgd"},
		{"nesterov", mu, NewNesterov(mu, wd, n), "nesterov"},
	} {
		o, err := NewOptimizer(c.name, c.momentum, wd, n)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if o.Name() != c.wantName {
			t.Errorf("%s (momentum %v): Name %q, want %q", c.name, c.momentum, o.Name(), c.wantName)
		}
		p, q, g := testVec(n, 3), testVec(n, 3), make([]float32, n)
		for s := range 5 {
			fillGrad(g, s)
			o.Step(p, g, 0.01)
			c.want.Step(q, g, 0.01)
		}
		for i := range p {
			if math.Float32bits(p[i]) != math.Float32bits(q[i]) {
				t.Fatalf("%s: parameter %d is %v, the hand-built optimizer's %v", c.name, i, p[i], q[i])
			}
		}
		got, want := o.State(), c.want.State()
		if len(got) != len(want) {
			t.Fatalf("%s: state of %d values, want %d", c.name, len(got), len(want))
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: state value %d is %v, want %v", c.name, i, got[i], want[i])
			}
		}
	}
	for _, name := range OptimizerNames {
		if _, err := NewOptimizer(name, 0.9, 0, 1); err != nil {
			t.Errorf("listed name %q: %v", name, err)
		}
	}
	_, err := NewOptimizer("lamb", 0.9, 0, n)
	if err == nil || !strings.Contains(err.Error(), `"lamb"`) {
		t.Fatalf("unknown optimizer: %v", err)
	}
	for _, name := range OptimizerNames {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("the error %q does not list %q", err, name)
		}
	}
	if _, err := NewOptimizer("adam", 0, 0, -1); err == nil {
		t.Error("n = -1 accepted")
	}
}

// FirstNonFinite finds an overflowed state in place, at its index in
// State's layout, for every optimizer.
func TestOptimizerFirstNonFinite(t *testing.T) {
	for _, name := range OptimizerNames {
		o, err := NewOptimizer(name, 0.9, 0, 4)
		if err != nil {
			t.Fatal(err)
		}
		p := make([]float32, 4)
		o.Step(p, []float32{1, 2, 3, 4}, 1e-3)
		if i := o.FirstNonFinite(); i != -1 {
			t.Fatalf("%s: a finite step reports index %d", name, i)
		}
		o.Step(p, []float32{0, 0, 1e30, 0}, 1e-3) // g² overflows Adam's v
		s := o.State()
		want := -1
		for i, x := range s {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				want = i
				break
			}
		}
		if got := o.FirstNonFinite(); got != want {
			t.Errorf("%s: FirstNonFinite() = %d, want %d (state %v)", name, got, want, s)
		}
		if name == "adam" && want < 0 {
			t.Error("adam: a 1e30 gradient left v finite: the test checks nothing")
		}
	}
}
