package node

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip/statesync"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// A node started on a directory that holds its run's checkpoint resumes
// with exactly that state: step, parameters, optimizer state, the model's
// weights and the hash peers compare (the process test only checks that
// the run ends at its last step).
func TestResumeRestoresTheState(t *testing.T) {
	cfg := testConfig(t)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	self := []peer.ID{n.ID()}
	grad := make([]float32, len(n.rep.params))
	for i := range grad {
		grad[i] = float32(i%7) * 1e-3
	}
	for step := range uint64(3) { // a state no fresh node has
		if err := n.apply(step, grad, self); err != nil {
			t.Fatal(err)
		}
	}
	n.cfg.CheckpointEvery = 1
	n.checkpoint(true)
	wantParams, wantOpt, wantHash := slices.Clone(n.rep.params), slices.Clone(n.rep.optState), n.rep.hash
	n.net.Close()
	n.unlock()

	c, err := trainer.ReadCheckpoint(filepath.Join(cfg.Dir, CheckpointFile))
	if err != nil || c.Step != 3 {
		t.Fatalf("checkpoint: %v, step %v", err, c)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.net.Close()
	defer m.unlock()
	if m.currentStep() != 3 || !slices.Equal(m.rep.params, wantParams) || !slices.Equal(m.rep.optState, wantOpt) {
		t.Fatalf("resumed at step %d; parameters equal %v, optimizer state equal %v", m.currentStep(),
			slices.Equal(m.rep.params, wantParams), slices.Equal(m.rep.optState, wantOpt))
	}
	if m.rep.hash != wantHash || m.rep.hash != statesync.HashState(3, wantParams, wantOpt) {
		t.Errorf("resumed hash %s, want %s", m.rep.hash, wantHash)
	}
	weights := make([]float32, len(wantParams))
	m.local.model.ReadParams(weights)
	if !slices.Equal(weights, wantParams) {
		t.Error("the model's weights are not the resumed parameters")
	}
}
