package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

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
