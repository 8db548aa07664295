package trainer

import (
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// refLoss is a float64 forward pass over the flat parameters, independent
// of gorgonia, used for the finite-difference check.
func refLoss(sizes []int, p []float64, x []float32, y []uint8) float64 {
	B := len(y)
	h := make([]float64, len(x))
	for i, v := range x {
		h[i] = float64(v)
	}
	off := 0
	for l := 0; l+1 < len(sizes); l++ {
		in, out := sizes[l], sizes[l+1]
		w, b := p[off:off+in*out], p[off+in*out:off+in*out+out]
		off += in*out + out
		z := make([]float64, B*out)
		for r := range B {
			for j := range out {
				s := b[j]
				for k := range in {
					s += h[r*in+k] * w[k*out+j]
				}
				if l+2 < len(sizes) && s < 0 {
					s = 0
				}
				z[r*out+j] = s
			}
		}
		h = z
	}
	classes := sizes[len(sizes)-1]
	total := 0.0
	for r := range B {
		zr := h[r*classes : (r+1)*classes]
		mx := zr[0]
		for _, v := range zr {
			mx = math.Max(mx, v)
		}
		s := 0.0
		for _, v := range zr {
			s += math.Exp(v - mx)
		}
		total += mx + math.Log(s) - zr[y[r]]
	}
	return total / float64(B)
}

func TestGradientFiniteDifference(t *testing.T) {
	const in, classes, batch = 6, 3, 5
	cfg := ModelConfig{Hidden: []int{5, 4}, Batch: batch, Seed: 7}
	m, err := NewMLP(cfg, in, classes)
	if err != nil {
		t.Fatal(err)
	}
	ds := synthDataset(batch, in, classes, 3)
	loss, err := m.ComputeGradients(ds.X, ds.Y)
	if err != nil {
		t.Fatal(err)
	}
	n := m.NumParams()
	if want := 6*5 + 5 + 5*4 + 4 + 4*3 + 3; n != want {
		t.Fatalf("NumParams=%d, want %d", n, want)
	}
	grad := make([]float32, n)
	m.AddGrads(grad, 1)
	p32 := make([]float32, n)
	m.ReadParams(p32)
	p := make([]float64, n)
	for i, v := range p32 {
		p[i] = float64(v)
	}
	if ref := refLoss(m.Sizes(), p, ds.X, ds.Y); math.Abs(ref-float64(loss)) > 1e-5*math.Max(1, ref) {
		t.Fatalf("loss %v, float64 reference %v", loss, ref)
	}
	// Central differences in float64 on every coordinate (the model is tiny).
	const h = 1e-6
	worst := 0.0
	for i := range p {
		orig := p[i]
		p[i] = orig + h
		up := refLoss(m.Sizes(), p, ds.X, ds.Y)
		p[i] = orig - h
		down := refLoss(m.Sizes(), p, ds.X, ds.Y)
		p[i] = orig
		fd := (up - down) / (2 * h)
		diff := math.Abs(fd - float64(grad[i]))
		if diff > 1e-4+1e-3*math.Abs(fd) {
			t.Errorf("param %d: gradient %v, finite difference %v", i, grad[i], fd)
		}
		worst = math.Max(worst, diff)
	}
	t.Logf("max |grad - fd| = %.2g over %d params", worst, n)

	// The gradient is replaced, not accumulated, by a second call.
	if _, err := m.ComputeGradients(ds.X, ds.Y); err != nil {
		t.Fatal(err)
	}
	again := make([]float32, n)
	m.AddGrads(again, 1)
	for i := range grad {
		if math.Float32bits(grad[i]) != math.Float32bits(again[i]) {
			t.Fatalf("param %d: second gradient %v differs from first %v", i, again[i], grad[i])
		}
	}
	// AddGrads scales and adds.
	m.AddGrads(again, -2)
	for i := range grad {
		if want := grad[i] - 2*grad[i]; math.Abs(float64(again[i]-want)) > 1e-7 {
			t.Fatalf("AddGrads(-2): %v, want %v", again[i], want)
		}
	}
	// Evaluate (the gonum forward) agrees with the graph's loss.
	_, evLoss, err := m.Evaluate(ds)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(evLoss-float64(loss)) > 1e-5 {
		t.Fatalf("Evaluate loss %v, ComputeGradients loss %v", evLoss, loss)
	}
}

func TestReplicasBitIdentical(t *testing.T) {
	const in, classes, batch, steps = 32, 5, 16, 20
	ds := synthDataset(200, in, classes, 11)
	cfg := ModelConfig{Hidden: []int{24, 12}, Batch: batch, Seed: 42}
	for _, tc := range []struct {
		name string
		opt  func(n int) Optimizer
	}{
		{"momentum", func(n int) Optimizer { return NewSGD(0.9, 1e-4, n) }},
		{"adamw", func(n int) Optimizer { return NewAdam(0.9, 0.999, 1e-8, 1e-2, n) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var final [2][]float32
			var errs [2]error
			var wg sync.WaitGroup
			for r := range final { // replicas run concurrently, one graph each
				wg.Add(1)
				go func() {
					defer wg.Done()
					final[r], errs[r] = trainReplica(cfg, ds, tc.opt, steps)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			for i := range final[0] {
				if math.Float32bits(final[0][i]) != math.Float32bits(final[1][i]) {
					t.Fatalf("param %d differs after %d steps: %v vs %v", i, steps, final[0][i], final[1][i])
				}
			}
			init, _ := NewMLP(cfg, in, classes)
			p0 := make([]float32, init.NumParams())
			init.ReadParams(p0)
			if math.Float32bits(p0[0]) == math.Float32bits(final[0][0]) {
				t.Fatal("parameters did not move")
			}
		})
	}
}

func trainReplica(cfg ModelConfig, ds *Dataset, newOpt func(int) Optimizer, steps int) ([]float32, error) {
	m, err := NewMLP(cfg, ds.Dim, ds.Classes)
	if err != nil {
		return nil, err
	}
	n := m.NumParams()
	params, grads := make([]float32, n), make([]float32, n)
	m.ReadParams(params)
	opt := newOpt(n)
	b := NewBatcher(ds, cfg.Batch, 5)
	x, y := make([]float32, cfg.Batch*ds.Dim), make([]uint8, cfg.Batch)
	sched := Schedule{Base: 0.05, Min: 0.001, Warmup: 3, Total: steps, Decay: DecayCosine}
	for s := range steps {
		b.Next(x, y)
		if _, err := m.ComputeGradients(x, y); err != nil {
			return nil, err
		}
		clear(grads)
		m.AddGrads(grads, 1)
		opt.Step(params, grads, sched.LR(s))
		if err := m.WriteParams(params); err != nil {
			return nil, err
		}
	}
	return params, nil
}

func TestInitDeterministic(t *testing.T) {
	cfg := ModelConfig{Hidden: []int{8}, Batch: 2, Seed: 9}
	a, _ := NewMLP(cfg, 10, 3)
	b, _ := NewMLP(cfg, 10, 3)
	cfg.Seed = 10
	c, _ := NewMLP(cfg, 10, 3)
	pa, pb, pc := make([]float32, a.NumParams()), make([]float32, a.NumParams()), make([]float32, a.NumParams())
	a.ReadParams(pa)
	b.ReadParams(pb)
	c.ReadParams(pc)
	same := 0
	for i := range pa {
		if math.Float32bits(pa[i]) != math.Float32bits(pb[i]) {
			t.Fatalf("same seed, param %d differs", i)
		}
		if pa[i] == pc[i] {
			same++
		}
	}
	if same > 8+3 { // the biases are zero in both
		t.Fatalf("seeds 9 and 10 share %d parameters", same)
	}
	// He-uniform bound on the first layer: sqrt(6/10).
	for _, v := range pa[:10*8] {
		if math.Abs(float64(v)) > math.Sqrt(0.6) {
			t.Fatalf("init %v outside He-uniform bound", v)
		}
	}
}

// Tensors names the flat vector's pieces in its own order: the sizes add
// up, and exactly the bias tensors hold the zeros the init gives biases.
func TestTensorsMatchTheFlatVector(t *testing.T) {
	m, err := NewMLP(ModelConfig{Hidden: []int{8, 4}, Batch: 2, Seed: 3}, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]float32, m.NumParams())
	m.ReadParams(p)
	off := 0
	var names []string
	for _, tn := range m.Tensors() {
		vals := p[off : off+tn.Size()]
		zeros := 0
		for _, v := range vals {
			if v == 0 {
				zeros++
			}
		}
		if isBias := len(tn.Shape) == 1; isBias != (zeros == len(vals)) {
			t.Errorf("%s %v at %d: %d of %d values are zero", tn.Name, tn.Shape, off, zeros, len(vals))
		}
		off += tn.Size()
		names = append(names, tn.Name)
	}
	if off != m.NumParams() || len(names) != 6 || names[0] != "layers.0.weight" || names[5] != "layers.2.bias" {
		t.Fatalf("tensors %v cover %d of %d values", names, off, m.NumParams())
	}
}

func TestModelErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg         ModelConfig
		in, classes int
		want        string
	}{
		{ModelConfig{Batch: 0}, 4, 2, "Batch"},
		{ModelConfig{Batch: 1 << 20}, 4, 2, "Batch"},
		{ModelConfig{Batch: 1, Hidden: []int{4, 0}}, 4, 2, "Hidden[1]"},
		{ModelConfig{Batch: 1}, 0, 2, "inputDim"},
		{ModelConfig{Batch: 1}, 4, 1, "classes"},
		{ModelConfig{Batch: 1, Hidden: []int{65536, 65536}}, 65536, 2, "parameters"},
	} {
		if _, err := NewMLP(tc.cfg, tc.in, tc.classes); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewMLP(%+v, %d, %d) = %v, want error naming %q", tc.cfg, tc.in, tc.classes, err, tc.want)
		}
	}
	m, err := NewMLP(ModelConfig{Batch: 2}, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.ComputeGradients(make([]float32, 5), make([]uint8, 2)); err == nil {
		t.Error("short x accepted")
	}
	if _, err := m.ComputeGradients(make([]float32, 6), []uint8{0, 2}); err == nil {
		t.Error("label out of range accepted")
	}
	if err := m.WriteParams(make([]float32, m.NumParams()+1)); err == nil {
		t.Error("long params accepted")
	}
	bad := make([]float32, m.NumParams())
	bad[3] = float32(math.Inf(-1))
	if err := m.WriteParams(bad); err == nil {
		t.Error("Inf param accepted")
	}
	if _, _, err := m.Evaluate(synthDataset(4, 5, 2, 1)); err == nil {
		t.Error("Evaluate accepted a dataset of the wrong width")
	}
}

// TestLearnsMNIST trains on a 5000-row shard of real MNIST and expects a
// clearly learned model on the full test set.
func TestLearnsMNIST(t *testing.T) {
	train, test := realMNIST(t)
	sub, err := train.Shard(1, 0, 12) // 60000/12 = 5000 rows
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cfg := ModelConfig{Hidden: []int{128}, Batch: 64, Seed: 1}
	m, err := NewMLP(cfg, sub.Dim, sub.Classes)
	if err != nil {
		t.Fatal(err)
	}
	const steps = 300
	loss := trainModel(t, m, sub, cfg.Batch, steps, 2e-3)
	trainTime := time.Since(start)
	acc, testLoss, err := m.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d steps in %v (%.1f ms/step), last batch loss %.3f; test acc %.4f loss %.3f (eval %v)",
		steps, trainTime.Round(time.Millisecond), float64(trainTime.Microseconds())/1e3/float64(steps),
		loss, acc, testLoss, time.Since(start)-trainTime)
	if acc < 0.85 {
		t.Fatalf("test accuracy %.4f after %d steps, want >= 0.85", acc, steps)
	}
}
