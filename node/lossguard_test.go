package node

import (
	"math"
	"strings"
	"testing"
)

// The losses of a real blow-up (the MLP, SGD at learning rate 9.9: four
// minibatches a step) end the run at the third minibatch over 100× the
// first loss, with an error that names the cause and the fix.
func TestLossGuardStopsABlowUp(t *testing.T) {
	var g lossGuard
	losses := []float32{3.17, 3.16, 2.83, 3.23, 370.5, 365.5, 345.7, 272.2, 25003}
	for i, l := range losses {
		err := g.observe(l)
		if i < 6 {
			if err != nil {
				t.Fatalf("minibatch %d (loss %g): stopped early: %v", i, l, err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("minibatch %d (loss %g): a third blow-up in a row did not stop the run", i, l)
		}
		for _, want := range []string{"training diverged", "345.7", "3.17", "lower --lr"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		return
	}
}

// Spikes that subside, however large, do not stop a run; nor does a run
// resumed at a tiny loss that bumps up to ordinary values (the floor).
func TestLossGuardToleratesSpikes(t *testing.T) {
	var g lossGuard
	for i, l := range []float32{2.3, 500, 400, 2.0, 900, 1.5, 200, 300, 1} {
		if err := g.observe(l); err != nil {
			t.Fatalf("minibatch %d (loss %g): %v", i, l, err)
		}
	}
	var resumed lossGuard
	for i, l := range []float32{0.01, 0.02, 5, 40, 90, 0.05} {
		if err := resumed.observe(l); err != nil {
			t.Fatalf("resumed run, minibatch %d (loss %g): %v", i, l, err)
		}
	}
}

// NaN and infinite losses count as blow-ups once there is a reference,
// and do not become the reference.
func TestLossGuardNonFinite(t *testing.T) {
	var g lossGuard
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	if err := g.observe(nan); err != nil || g.ref != 0 {
		t.Fatalf("a NaN first loss: err %v, reference %g", err, g.ref)
	}
	g.observe(2)
	g.observe(nan)
	g.observe(inf)
	if err := g.observe(nan); err == nil {
		t.Fatal("three non-finite losses in a row did not stop the run")
	}
}
