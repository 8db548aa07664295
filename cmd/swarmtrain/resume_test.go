package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// parseRunFlags is a node command line's run part, parsed.
func parseRunFlags(t *testing.T, args ...string) *runFlags {
	t.Helper()
	fs := pflag.NewFlagSet("node", pflag.ContinueOnError)
	var rc node.RunConfig
	f := addRunFlags(fs, &rc)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

// A node directory that holds a run resumes it with no run flags; flags
// that agree are fine, flags or a run file that contradict it are
// refused naming every field that differs, with both values.
func TestResumeFromDir(t *testing.T) {
	dir := t.TempDir()
	stored := node.DefaultRunConfig()
	stored.Optimizer.Steps, stored.Model.Hidden = 100000, []int{32}
	if err := node.WriteRunConfig(filepath.Join(dir, node.RunFile), stored); err != nil {
		t.Fatal(err)
	}
	rc, resumed, err := parseRunFlags(t).resumeIn(dir)
	if err != nil || rc.ID() != stored.ID() || !strings.Contains(resumed, stored.ID()) {
		t.Fatalf("no flags: run %s (%q, %v), want the stored %s", rc.ID(), resumed, err, stored.ID())
	}
	if rc, _, err := parseRunFlags(t, "--steps", "100000", "--hidden", "32").resumeIn(dir); err != nil || rc.ID() != stored.ID() {
		t.Fatalf("agreeing flags: %v", err)
	}
	_, _, err = parseRunFlags(t, "--steps", "4000", "--hidden", "16", "--lr", "0.002").resumeIn(dir)
	if err == nil || !strings.Contains(err.Error(), "steps: run.json 100000, flags 4000") || !strings.Contains(err.Error(), "hidden: run.json [32], flags [16]") ||
		strings.Contains(err.Error(), "lr:") {
		t.Fatalf("contradicting flags: %v", err)
	}
	other := stored
	other.Model.Hidden = []int{64}
	file := filepath.Join(t.TempDir(), "other.json")
	if err := node.WriteRunConfig(file, other); err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseRunFlags(t, "--run-config", file).resumeIn(dir); err == nil || !strings.Contains(err.Error(), "model.hidden: run.json [32], --run-config [64]") {
		t.Fatalf("contradicting run file: %v", err)
	}

	// A checkpoint wins over run.json, and says its step.
	m, err := trainer.NewModel(trainer.ModelConfig{Hidden: []int{32}, Batch: 1}, &trainer.Dataset{Dim: 784, Classes: 10, Shape: []int{1, 28, 28}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	params := make([]float32, m.NumParams())
	m.ReadParams(params)
	c := trainer.Checkpoint{Step: 777, Run: stored.JSON(), RunID: stored.ID(), Tensors: m.Tensors(), Params: params}
	if err := trainer.WriteCheckpoint(filepath.Join(dir, node.CheckpointFile), c); err != nil {
		t.Fatal(err)
	}
	if _, resumed, err := parseRunFlags(t).resumeIn(dir); err != nil || !strings.Contains(resumed, "at step 777") {
		t.Fatalf("resume from a checkpoint: %q, %v", resumed, err)
	}
	if _, _, err := parseRunFlags(t, "--steps", "4000").resumeIn(dir); err == nil || !strings.Contains(err.Error(), "steps: checkpoint 100000, flags 4000") {
		t.Fatalf("contradicting a checkpoint: %v", err)
	}

	// An empty directory takes the flags' run.
	if rc, resumed, err := parseRunFlags(t, "--steps", "77").resumeIn(t.TempDir()); err != nil || resumed != "" || rc.Optimizer.Steps != 77 {
		t.Fatalf("new dir: %d steps (%q, %v)", rc.Optimizer.Steps, resumed, err)
	}
}

// A short run warms up for a tenth of its steps instead of failing on
// the default warm-up; a warm-up the user gives is kept and checked.
func TestShortRunWarmup(t *testing.T) {
	rc, err := parseRunFlags(t, "--steps", "20").run()
	if err != nil || rc.Optimizer.Warmup != 2 || rc.Validate() != nil {
		t.Fatalf("--steps 20: warmup %d, %v, %v", rc.Optimizer.Warmup, err, rc.Validate())
	}
	rc, _ = parseRunFlags(t, "--steps", "20", "--warmup", "25").run()
	if err := rc.Validate(); err == nil || !strings.Contains(err.Error(), "warmup = 25") {
		t.Fatalf("--warmup 25 --steps 20: %v", err)
	}
}

// Overlapped DiLoCo takes a lower outer momentum unless one is given:
// its outer steps land a phase late, and 0.9 amplifies the stale
// direction. Plain DiLoCo keeps the paper's 0.9.
func TestOverlapOuterMomentum(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want float32
	}{
		{[]string{"--mode", "diloco-overlap"}, node.DefaultOverlapOuterMomentum},
		{[]string{"--mode", "diloco-overlap", "--outer-momentum", "0.9"}, 0.9},
		{[]string{"--mode", "diloco"}, node.DefaultOuterMomentum},
	} {
		rc, err := parseRunFlags(t, append([]string{"--inner-steps", "20"}, tc.args...)...).run()
		if err != nil || rc.Averaging.OuterMomentum != tc.want || rc.Validate() != nil {
			t.Errorf("%q: outer momentum %v (%v, %v), want %v", tc.args, rc.Averaging.OuterMomentum, err, rc.Validate(), tc.want)
		}
	}
}

// The first SIGINT cancels the context (a clean leave); a second one
// exits at once, with 130.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	exited := make(chan int, 1)
	exitNow = func(code int) { exited <- code }
	defer func() { exitNow = osExit }()
	var log bytes.Buffer
	ctx, stop := leaveOnSignal(context.Background(), &log, "leaving")
	defer stop()
	syscall.Kill(syscall.Getpid(), syscall.SIGINT)
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGINT did not cancel the context")
	}
	select {
	case code := <-exited:
		t.Fatalf("one signal exited (%d)", code)
	default:
	}
	syscall.Kill(syscall.Getpid(), syscall.SIGINT)
	select {
	case code := <-exited:
		if code != 130 {
			t.Fatalf("exit code %d, want 130", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second SIGINT did not exit")
	}
}
