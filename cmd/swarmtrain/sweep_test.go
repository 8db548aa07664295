package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/node"
)

// The space parses into lists and ranges; the grid is the full product;
// random search is reproducible from its seed and stays in its ranges;
// typos are refused before any training.
func TestSweepSpace(t *testing.T) {
	lr, err := parseSweepParam("lr=log:1e-4:1e-2")
	if err != nil || lr.dist != "log" {
		t.Fatal(lr, err)
	}
	hidden, _ := parseSweepParam("hidden=64,256x128")
	opt, _ := parseSweepParam("optimizer=adam,momentum")
	grid, err := gridTrials([]sweepParam{hidden, opt})
	if err != nil || len(grid) != 4 || grid[3].String() != "hidden=256x128 optimizer=momentum" {
		t.Fatalf("grid %v, %v", grid, err)
	}
	if _, err := gridTrials([]sweepParam{lr}); err == nil {
		t.Fatal("a range ran as a grid")
	}
	a, b := randomTrials([]sweepParam{lr, hidden}, 20, 3), randomTrials([]sweepParam{lr, hidden}, 20, 3)
	if !slices.EqualFunc(a, b, func(x, y trial) bool { return x.String() == y.String() }) {
		t.Fatal("random search with one seed drew two different spaces")
	}
	for _, tr := range a {
		rc := node.DefaultRunConfig()
		if err := applyTrial(&rc, tr); err != nil {
			t.Fatal(err)
		}
		if rc.Optimizer.LR < 1e-4 || rc.Optimizer.LR > 1e-2 {
			t.Fatalf("lr %v outside log:1e-4:1e-2", rc.Optimizer.LR)
		}
	}
	rc := node.DefaultRunConfig()
	applyTrial(&rc, grid[3])
	if !slices.Equal(rc.Model.Hidden, []int{256, 128}) || rc.Optimizer.Name != "momentum" {
		t.Fatalf("trial applied as hidden %v, optimizer %s", rc.Model.Hidden, rc.Optimizer.Name)
	}
	for _, bad := range []string{"lr", "learning=1", "lr=log:0:1", "lr=lin:2:1", "lr=1,,2"} {
		if _, err := parseSweepParam(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := applyTrial(&rc, trial{{"lr", "fast"}}); err == nil {
		t.Error("lr=fast accepted")
	}
	rc = node.DefaultRunConfig()
	if err := applyTrial(&rc, trial{{"optimizer", "lion"}}); err == nil || !strings.Contains(err.Error(), "optimizer") {
		t.Errorf("an unknown optimizer passed: %v", err)
	}
	// Every name a sweep may vary is a run flag.
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	bindRunFlags(fs, new(node.RunConfig))
	for _, name := range sweepNames {
		if fs.Lookup(name) == nil {
			t.Errorf("sweep parameter %q is not a run flag", name)
		}
	}
	// Values go through the run's own flags: the base run's other fields
	// stay, and the base's slices are not written through.
	base := node.DefaultRunConfig()
	base.Optimizer.Steps, base.Averaging.Codec = 77, "int8"
	rc = base
	if err := applyTrial(&rc, trial{{"train-rows", "50"}, {"hidden", "32x16"}, {"weight-decay", "0.01"}}); err != nil {
		t.Fatal(err)
	}
	if rc.Data.TrainRows != 50 || !slices.Equal(rc.Model.Hidden, []int{32, 16}) || rc.Optimizer.WeightDecay != 0.01 || rc.Optimizer.Steps != 77 || rc.Averaging.Codec != "int8" {
		t.Errorf("trial applied as %s", rc.JSON())
	}
	if !slices.Equal(base.Model.Hidden, []int{256}) {
		t.Errorf("the base run's hidden became %v", base.Model.Hidden)
	}
}

// A small grid runs end to end and the table comes back best first.
func TestSweepRunsAndSorts(t *testing.T) {
	if testing.Short() {
		t.Skip("trains")
	}
	cmd := sweepCmd()
	cmd.SetArgs([]string{"--steps", "15", "--warmup", "2", "--hidden", "16", "--param", "lr=1e-4,3e-3", "--json"})
	var out strings.Builder
	cmd.SetOut(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var res []trialResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("%v in %q", err, out.String())
	}
	if len(res) != 2 || res[0].Accuracy < res[1].Accuracy || res[0].Error != "" || res[0].Trial != "lr=3e-3" {
		t.Fatalf("results %+v: want both trials, lr=3e-3 first", res)
	}
}

// A served sweep is keyed like a swarm: the coordinator prints its key
// in the worker's line, a worker with another key cannot connect, and
// one with the printed key trains the trial.
func TestServedSweepNeedsTheKey(t *testing.T) {
	if testing.Short() {
		t.Skip("trains")
	}
	if err := runWorker(t, "--join", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"); err == nil || !strings.Contains(err.Error(), "needs the swarm's key") {
		t.Fatalf("a worker without a key: %v, want the missing key named", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	serve := sweepCmd()
	serve.SetArgs([]string{"--serve", "--steps", "5", "--warmup", "1", "--hidden", "8", "--param", "lr=3e-3", "--json"})
	logs := &lockedBuffer{}
	var out strings.Builder
	serve.SetOut(&out)
	serve.SetErr(logs)
	served := make(chan error, 1)
	go func() { served <- serve.ExecuteContext(ctx) }()
	var line []string
	checkFor(t, time.Minute, 20*time.Millisecond, func() error {
		for _, l := range strings.Split(logs.String(), "\n") {
			if _, rest, ok := strings.Cut(l, "swarmtrain sweep-worker "); ok {
				line = strings.Fields(rest)
				return nil
			}
		}
		return errors.New("no worker line yet")
	})
	if len(line) != 4 || line[0] != "--join" || line[2] != "--key" {
		t.Fatalf("the worker line is %q, want --join ADDR --key KEY", line)
	}
	other := strings.Repeat("ab", 32)
	t0 := time.Now()
	werr := runWorker(t, line[0], line[1], "--key", other)
	t.Logf("wrong key after %v: %v", time.Since(t0), werr)
	if err := werr; err == nil {
		t.Fatal("a worker with another key connected to the coordinator")
	}
	if err := runWorker(t, line...); err != nil {
		t.Fatalf("the worker with the printed key: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("sweep --serve: %v\n%s", err, logs)
	}
	var res []trialResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil || len(res) != 1 || res[0].Error != "" {
		t.Fatalf("results %q (%v): want the one trial trained", out.String(), err)
	}
}

func runWorker(t *testing.T, args ...string) error {
	t.Helper()
	w := sweepWorkerCmd()
	w.SetArgs(append([]string{"--dir", t.TempDir()}, args...))
	w.SetOut(io.Discard)
	w.SetErr(io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return w.ExecuteContext(ctx)
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
