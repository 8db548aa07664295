package node

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/trainer"
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
	if err := n.apply(0, grad, self, self); err != nil || n.currentStep() != 1 {
		t.Fatalf("a small step: %v, step %d", err, n.currentStep())
	}
	grad[1] = 1e38 // 9 × 1e38 is past float32's range
	err = n.apply(1, grad, self, self)
	if err == nil || !strings.Contains(err.Error(), "diverged at step 1") || !strings.Contains(err.Error(), "--lr") {
		t.Fatalf("got %v, want a divergence error naming the step and the fix", err)
	}
	if n.currentStep() != 1 {
		t.Fatalf("the diverged step was committed: step %d", n.currentStep())
	}
	// A gradient so large that Adam's second moment overflows to +Inf
	// while the parameters stay finite (m/√v = 0): refused too.
	n.local.opt = trainer.NewAdam(0.9, 0.999, 1e-8, 0, len(n.rep.params))
	n.rep.optState = n.local.opt.AppendState(n.rep.optState[:0])
	huge := make([]float32, len(n.rep.params))
	huge[2] = 1e30
	before := n.rep.params[2]
	err = n.apply(1, huge, self, self)
	if err == nil || !strings.Contains(err.Error(), "optimizer state") || n.currentStep() != 1 || n.rep.params[2] != before {
		t.Fatalf("an overflowing optimizer state: %v, step %d, param %v (was %v)", err, n.currentStep(), n.rep.params[2], before)
	}
	if i := compression.FirstNonFinite(n.local.opt.AppendState(nil)); i >= 0 {
		t.Fatalf("the refused step left the optimizer state non-finite at %d", i)
	}
	snap, err := n.snapshot()
	if err != nil || snap.Params[1] != n.rep.params[1] || snap.Params[1] < -1 || snap.Params[1] > 1 {
		t.Fatalf("after the refused step the state holds %v (err %v), want the last committed value", snap.Params[1], err)
	}
}

// A streak of failures logs its first one, then at most one warning per
// failLogEvery with the count it left out; every failure still counts.
func TestFailuresLoggedSparingly(t *testing.T) {
	var buf strings.Builder
	clk := clock.NewMock()
	n := &Node{log: slog.New(slog.NewTextHandler(&buf, nil)), clock: clk}
	for range 100 {
		n.noteFailure(5, "matchmaking", errors.New("refused"))
	}
	if got := strings.Count(buf.String(), "matchmaking failed"); got != 1 {
		t.Errorf("100 failures in a moment logged %d warnings, want 1:\n%s", got, buf.String())
	}
	if n.stats.failedRounds != 100 || n.stats.failing.count != 100 {
		t.Errorf("counted %d failed rounds (streak %d), want 100", n.stats.failedRounds, n.stats.failing.count)
	}
	clk.Add(failLogEvery)
	n.noteFailure(5, "matchmaking", errors.New("refused"))
	if !strings.Contains(buf.String(), "unlogged_failures=99") {
		t.Errorf("the next warning does not say how many were left out:\n%s", buf.String())
	}
}
