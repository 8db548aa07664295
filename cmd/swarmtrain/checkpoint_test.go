package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nlpodyssey/safetensors"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// A node killed mid-run resumes from its last checkpoint, ends at the
// run's last step, and its weights export to a plain safetensors file;
// a node of another run refuses to start over that checkpoint.
func TestCheckpointResumeAndExport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := filepath.Join(t.TempDir(), "n")
	run := []string{"--hidden", "32", "--batch", "32", "--target-batch", "32", "--steps", "400", "--warmup", "5", "--lr", "0.003", "--checkpoint-every", "20"}
	ckpt := filepath.Join(dir, node.CheckpointFile)
	p := startNode(t, dir, run...)
	var before *trainer.Checkpoint
	checkFor(t, time.Minute, 20*time.Millisecond, func() error {
		c, err := trainer.ReadCheckpoint(ckpt)
		if err != nil {
			return err
		}
		if c.Step < 40 {
			return fmt.Errorf("checkpoint at step %d", c.Step)
		}
		before = c
		return nil
	})
	p.cmd.Process.Kill()
	p.wait(10 * time.Second)
	if _, err := os.Stat(filepath.Join(dir, "result.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the node finished before it was killed (%v): make the run longer", err)
	}

	// No run flags: the node resumes the run its directory holds.
	p = startNode(t, dir, "--checkpoint-every", "20")
	if err := p.wait(2 * time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, p.stderr)
	}
	if r := p.result(); r.Step != 400 {
		t.Fatalf("resumed node ended at step %d, want 400", r.Step)
	}
	if l := p.log(); !strings.Contains(l, "resumed from checkpoint") {
		t.Fatalf("the restarted node does not say it resumed:\n%s", l)
	}
	final, err := trainer.ReadCheckpoint(ckpt)
	if err != nil || final.Step != 400 || final.Step <= before.Step {
		t.Fatalf("final checkpoint: %v, step %d", err, final.Step)
	}

	out := filepath.Join(t.TempDir(), "model.safetensors")
	export := exportCmd()
	export.SetArgs([]string{"--from", dir, "--out", out})
	var said strings.Builder
	export.SetOut(&said)
	if err := export.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(said.String(), "step 400, 4 tensors") {
		t.Errorf("export says %q", said.String())
	}
	w, err := trainer.ReadCheckpoint(out)
	if err != nil || w.Optimizer != "" || len(w.OptState) != 0 || len(w.Tensors) != 4 || w.Step != 400 || len(w.Params) != len(final.Params) {
		t.Fatalf("export: %v; %d tensors, optimizer %q", err, len(w.Tensors), w.Optimizer)
	}

	// Pruned and int8: the accuracies are measured and printed, and the
	// file holds int8 matrices with their per-column scales.
	q := filepath.Join(t.TempDir(), "q.safetensors")
	export = exportCmd()
	export.SetArgs([]string{"--from", dir, "--out", q, "--prune", "0.5", "--int8"})
	said.Reset()
	export.SetOut(&said)
	if err := export.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"trained model (step 400): test accuracy", "pruned", "int8 weights (per-channel scales): test accuracy"} {
		if !strings.Contains(said.String(), want) {
			t.Fatalf("export output lacks %q:\n%s", want, said.String())
		}
	}
	b, err := os.ReadFile(q)
	if err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.Deserialize(b)
	if err != nil {
		t.Fatal(err)
	}
	if w, ok := st.Tensor("layers.0.weight"); !ok || w.DType() != safetensors.I8 || len(w.Data()) != 784*32 {
		t.Fatalf("layers.0.weight in the int8 export: %v %v", ok, w.DType())
	}
	if sc, ok := st.Tensor("layers.0.weight.scale"); !ok || sc.DType() != safetensors.F32 || len(sc.Data()) != 4*32 {
		t.Fatal("the int8 export lacks per-column scales")
	}

	other := startNode(t, dir, "--hidden", "16", "--steps", "100", "--checkpoint-every", "5")
	if err := other.wait(time.Minute); err == nil || !strings.Contains(other.stderr.String(), "hidden: checkpoint [32], flags [16]; steps: checkpoint 400, flags 100") {
		t.Fatalf("a node of another run started over the checkpoint: %v\n%s", err, other.stderr)
	}
}

// The same seed and run config on the same node identity give the same
// bits: a second run ends on the first run's state hash; another seed
// does not.
func TestSameSeedSameBits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := filepath.Join(t.TempDir(), "n")
	run := func(seed string) string {
		p := startNode(t, dir, append([]string{"--seed", seed}, smallRun...)...)
		if err := p.wait(time.Minute); err != nil {
			t.Fatalf("%v\n%s", err, p.stderr)
		}
		r := p.result()
		os.Remove(filepath.Join(dir, "result.json"))
		os.Remove(filepath.Join(dir, node.CheckpointFile)) // a new run each time, not a resumed one
		os.Remove(filepath.Join(dir, node.RunFile))
		return r.Hash
	}
	a, b, c := run("7"), run("7"), run("8")
	if a != b {
		t.Fatalf("two runs with seed 7 ended on %s and %s", a, b)
	}
	if a == c {
		t.Fatal("seeds 7 and 8 ended on the same state: the seed is not used")
	}
}

// Transfer learning: a run that starts --init-from another run's
// checkpoint begins at that model's loss, and with --freeze the frozen
// layer ends exactly as it came while the rest trains on.
func TestInitFromAndFreeze(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	base := t.TempDir()
	a := startNode(t, filepath.Join(base, "a"), "--hidden", "32", "--batch", "32", "--target-batch", "64", "--steps", "150", "--warmup", "5", "--lr", "0.003", "--checkpoint-every", "150")
	if err := a.wait(time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, a.stderr)
	}
	pre := filepath.Join(base, "a", node.CheckpointFile)
	from, err := trainer.ReadCheckpoint(pre)
	if err != nil {
		t.Fatal(err)
	}

	bDir := filepath.Join(base, "b")
	b := startNode(t, bDir, "--hidden", "32", "--batch", "32", "--target-batch", "64", "--steps", "40", "--warmup", "5", "--lr", "0.001",
		"--init-from", pre, "--freeze", "layers.0.", "--checkpoint-every", "40",
		// AdamW's decay moves every weight, zero gradient or not: only the
		// restore after each step keeps the frozen layer as it came.
		"--optimizer", "adamw", "--weight-decay", "0.1")
	if err := b.wait(time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, b.stderr)
	}
	r := b.result()
	if ra := a.result(); math.Abs(r.InitialTestLoss-ra.TestLoss) > 1e-6 {
		t.Fatalf("fine-tuning started at test loss %.4f, the checkpoint's model has %.4f", r.InitialTestLoss, ra.TestLoss)
	}
	after, err := trainer.ReadCheckpoint(filepath.Join(bDir, node.CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	n0 := 784*32 + 32 // layers.0.weight and layers.0.bias
	if !slices.Equal(after.Params[:n0], from.Params[:n0]) {
		t.Fatal("the frozen first layer changed")
	}
	if slices.Equal(after.Params[n0:], from.Params[n0:]) {
		t.Fatal("the unfrozen head did not train")
	}

	bad := startNode(t, filepath.Join(base, "c"), "--hidden", "32", "--steps", "40", "--init-from", pre, "--freeze", "layers.7")
	if err := bad.wait(time.Minute); err == nil || !strings.Contains(bad.stderr.String(), `--freeze "layers.7" matches no tensor`) {
		t.Fatalf("a --freeze typo was not refused: %v\n%s", err, bad.stderr)
	}
}
