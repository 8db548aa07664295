package node

import (
	"flag"
	"strconv"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/trainer"
)

var dilocoSim = flag.String("diloco.sim", "", "TestDiLoCoSimulated: comma-separated variants to run, e.g. sync,delayed,eager (empty: skip)")

// TestDiLoCoSimulated runs DiLoCo's arithmetic on the demo's MNIST MLP
// with 4 replicas in one process, exact averages and equal phases, so
// the outer update rules can be compared without the swarm's timing:
// sync (the round before the next phase), delayed (overlap, the next
// phase continuing from the state minus our raw progress in flight) and
// eager (overlap, from the state stepped by a copy of the outer
// optimizer with our progress in flight). It is a study, not a check:
//
//	go test -run TestDiLoCoSimulated -v -timeout 60m ./node/ -args -diloco.sim sync,delayed,eager
func TestDiLoCoSimulated(t *testing.T) {
	if *dilocoSim == "" {
		t.Skip("a study: -args -diloco.sim sync,delayed,eager")
	}
	cfg := DefaultConfig()
	train, test, err := LoadData(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range strings.Split(*dilocoSim, ",") {
		acc := simulateDiLoCo(t, cfg, train, test, v, 4, 60, 20, 64)
		t.Logf("%s: test accuracy %.2f%%", v, 100*acc)
	}
}

func simulateDiLoCo(t *testing.T, cfg Config, train, test *trainer.Dataset, variant string, k, outer, h, batch int) float64 {
	model, err := trainer.NewModel(cfg.Run.ModelConfig(), train)
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	np := model.NumParams()
	o, a := cfg.Run.Optimizer, cfg.Run.Averaging
	mu := a.OuterMomentum
	// variant: sync, delayed, eager (own progress as the proxy), mix (Kale
	// et al.: the last average with our part of it swapped for our new
	// progress) or avg (the last average), each optionally -muX (outer
	// momentum X).
	var overlap bool
	proxy := ""
	name := variant
	if i := strings.Index(variant, "-mu"); i >= 0 {
		m, err := strconv.ParseFloat(variant[i+3:], 32)
		if err != nil {
			t.Fatalf("variant %q: %v", variant, err)
		}
		name, mu = variant[:i], float32(m)
	}
	switch name {
	case "sync":
	case "delayed":
		overlap = true
	case "eager", "mix", "avg":
		overlap, proxy = true, name
	default:
		t.Fatalf("variant %q: want sync, delayed, eager, mix or avg, optionally -muX", variant)
	}
	sched := trainer.Schedule{Base: o.LR, Min: o.LR / trainer.MinLRDivisor, Warmup: o.Warmup, Total: outer * h, Decay: trainer.DecayCosine}
	state := make([]float32, np)
	model.ReadParams(state)
	opt := trainer.NewNesterov(mu, 0, np)
	copyOpt := trainer.NewNesterov(mu, 0, np)
	type replica struct {
		local, start, carry, send, prev []float32
		inner                           trainer.Optimizer
		b                               *trainer.Batcher
	}
	rs := make([]*replica, k)
	for i := range rs {
		rs[i] = &replica{local: append([]float32(nil), state...), start: append([]float32(nil), state...),
			carry: make([]float32, np), send: make([]float32, np), prev: make([]float32, np),
			inner: trainer.NewAdam(trainer.AdamBeta1, trainer.AdamBeta2, trainer.AdamEps, 0, np),
			b:     trainer.NewBatcher(train, batch, cfg.Run.Seed+uint64(i)*7919)}
	}
	x, y := make([]float32, batch*train.Dim), make([]uint8, batch)
	g, avg, pend, landed, px := make([]float32, np), make([]float32, np), make([]float32, np), make([]float32, np), make([]float32, np)
	inFlight, haveLanded := false, false
	for step := range outer {
		for _, r := range rs {
			for s := range h {
				r.b.Next(x, y)
				if err := model.WriteParams(r.local); err != nil {
					t.Fatal(err)
				}
				if _, err := model.ComputeGradients(x, y); err != nil {
					t.Fatal(err)
				}
				clear(g)
				model.AddGrads(g, 1)
				trainer.ClipGlobalNorm(g, o.ClipNorm)
				r.inner.Step(r.local, g, sched.LR(step*h+s))
			}
			for i := range r.send {
				r.send[i] = r.carry[i] + r.start[i] - r.local[i]
			}
		}
		if overlap && inFlight { // the round before lands: send only what came after
			copy(landed, pend)
			haveLanded = true
			opt.Step(state, pend, a.OuterLR)
			for _, r := range rs {
				for i := range r.send {
					r.send[i] -= r.carry[i]
				}
			}
		}
		clear(avg)
		for _, r := range rs {
			for i, v := range r.send {
				avg[i] += v / float32(k)
			}
		}
		if !overlap {
			opt.Step(state, avg, a.OuterLR)
			for _, r := range rs {
				copy(r.local, state)
				copy(r.start, state)
			}
			continue
		}
		copy(pend, avg)
		inFlight = true
		st := opt.State()
		for _, r := range rs {
			copy(r.prev, r.carry) // our part of the average that just landed
			copy(r.carry, r.send)
			copy(r.local, state)
			switch proxy {
			case "":
				for i, c := range r.carry {
					r.local[i] -= c
				}
			default:
				switch {
				case proxy == "eager" || !haveLanded:
					copy(px, r.carry)
				case proxy == "mix":
					for i := range px {
						px[i] = landed[i] + (r.carry[i]-r.prev[i])/float32(k)
					}
				case proxy == "avg":
					copy(px, landed)
				}
				if err := copyOpt.LoadState(st); err != nil {
					t.Fatal(err)
				}
				copyOpt.Step(r.local, px, a.OuterLR)
			}
			copy(r.start, r.local)
		}
	}
	if inFlight {
		opt.Step(state, pend, a.OuterLR)
	}
	if err := model.WriteParams(state); err != nil {
		t.Fatal(err)
	}
	acc, _, err := model.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}
