package node

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
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
		if err := n.apply(step, grad, self, self); err != nil {
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
	if m.rep.hash != wantHash || m.rep.hash != statesync.HashState(3, wantParams, wantOpt, self) {
		t.Errorf("resumed hash %s, want %s", m.rep.hash, wantHash)
	}
	weights := make([]float32, len(wantParams))
	m.local.model.ReadParams(weights)
	if !slices.Equal(weights, wantParams) {
		t.Error("the model's weights are not the resumed parameters")
	}
}

// A checkpoint written before run config version 2 (the flat run config
// and a run ID hashed from it) resumes its run; one of a version this
// build does not know, or of another run, is refused with the reason.
func TestResumeAcrossRunConfigVersions(t *testing.T) {
	cfg := testConfig(t)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.cfg.CheckpointEvery = 1
	n.checkpoint(true)
	n.net.Close()
	n.unlock()
	path := filepath.Join(cfg.Dir, CheckpointFile)
	c, err := trainer.ReadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Step = 5
	rewrite := func(run, id string) {
		t.Helper()
		c.Run, c.RunID = json.RawMessage(run), id
		if err := trainer.WriteCheckpoint(path, *c); err != nil {
			t.Fatal(err)
		}
	}
	// What the builds before sections wrote for this run.
	v1 := strings.Replace(defaultV1, `"hidden":[256]`, `"hidden":[8]`, 1)
	sum := sha256.Sum256([]byte(v1))
	rewrite(v1, hex.EncodeToString(sum[:16]))
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("a version 1 checkpoint of this run: %v", err)
	}
	if m.currentStep() != 5 {
		t.Errorf("resumed at step %d, want 5", m.currentStep())
	}
	m.net.Close()
	m.unlock()

	for run, want := range map[string]string{
		`{"version":3}`: "version 3 is newer than this build, which reads versions 1 to 2",
		strings.Replace(v1, `"lr":0.002`, `"lr":0.003`, 1): "optimizer.lr: ours 0.002, theirs 0.003",
	} {
		rewrite(run, "0123456789abcdef0123456789abcdef")
		if m, err := New(cfg); err == nil || !strings.Contains(err.Error(), want) {
			if err == nil {
				m.net.Close()
				m.unlock()
			}
			t.Errorf("checkpoint with run %s: %v, want an error saying %q", run, err, want)
		}
	}
}

// The end of a run and a leave always write the checkpoint: without
// --checkpoint-every there are none in between, never none at all.
func TestFinalCheckpointAlwaysWritten(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 0
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.net.Close()
	defer n.unlock()
	self := []peer.ID{n.ID()}
	if err := n.apply(0, make([]float32, len(n.rep.params)), self, self); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.Dir, CheckpointFile)
	n.checkpoint(false)
	if _, err := trainer.ReadCheckpoint(path); err == nil {
		t.Fatal("an intermediate checkpoint without --checkpoint-every")
	}
	n.checkpoint(true)
	if c, err := trainer.ReadCheckpoint(path); err != nil || c.Step != 1 {
		t.Fatalf("final checkpoint: %v (%v)", err, c)
	}
}
