package node

import (
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// An optimizer step that leaves a parameter Inf or NaN stops the run with
// the cause, instead of training on (and serving) a broken state; a
// finite step goes through.
func TestDivergedStepStopsTheRun(t *testing.T) {
	cfg := testConfig(t)
	cfg.Run.Optimizer.Name, cfg.Run.Optimizer.LR, cfg.Run.Optimizer.Warmup = "sgd", 9, 0
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.net.Close()
	defer n.unlock()
	self := []peer.ID{n.ID()}
	grad := make([]float32, len(n.rep.params))
	grad[0] = 1e-3
	if err := n.apply(0, grad, self); err != nil || n.currentStep() != 1 {
		t.Fatalf("a small step: %v, step %d", err, n.currentStep())
	}
	grad[1] = 1e38 // 9 × 1e38 is past float32's range
	err = n.apply(1, grad, self)
	if err == nil || !strings.Contains(err.Error(), "diverged at step 1") || !strings.Contains(err.Error(), "--lr") {
		t.Fatalf("got %v, want a divergence error naming the step and the fix", err)
	}
	if n.currentStep() != 1 {
		t.Fatalf("the diverged step was committed: step %d", n.currentStep())
	}
	snap, err := n.snapshot()
	if err != nil || snap.Params[1] != n.rep.params[1] || snap.Params[1] < -1 || snap.Params[1] > 1 {
		t.Fatalf("after the refused step the state holds %v (err %v), want the last committed value", snap.Params[1], err)
	}
}
