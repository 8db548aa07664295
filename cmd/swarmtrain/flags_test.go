package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/node"
)

// The demo starts its nodes with runArgs(rc): parsed back by runFlags they
// must give the same run (and so the same run ID), for every field a
// demo flag can set.
func TestRunArgsRoundTrip(t *testing.T) {
	cnn := node.DefaultRunConfig()
	cnn.Model, cnn.Channels, cnn.Hidden = "cnn", []int{8, 16}, []int{64, 32}
	cnn.Freeze, cnn.Schedule, cnn.ClipNorm, cnn.Codec = []string{"conv.0."}, "step", 0.5, "int8"
	bert := node.DefaultRunConfig()
	bert.Model, bert.Dataset, bert.VocabSize, bert.Seq = "bert", "nsp", 500, 32
	bert.Width, bert.Heads, bert.Layers, bert.Dropout = 32, 2, 3, 0.1
	bert.TrainRows, bert.MaxGroup, bert.Codec = 48, 3, "fp32"
	cnn.Optimizer, cnn.Momentum, cnn.WeightDecay = "momentum", 0.9, 0.01
	cnn.Batch, cnn.TargetBatch, cnn.LR, cnn.Warmup, cnn.Steps = 32, 96, 0.05, 7, 70
	cnn.Seed, cnn.Lossless, cnn.MinGroup = 9, "zstd", 2
	// Every field a flag sets differs from its default in one of them
	// (else a flag dropped on the way to the nodes would come back as the
	// default unnoticed); the rest come from files (hashes).
	fromFiles := map[string]bool{"Data": true, "Vocab": true, "InitFrom": true}
	def := reflect.ValueOf(node.DefaultRunConfig())
	for i := range def.NumField() {
		name := def.Type().Field(i).Name
		if fromFiles[name] {
			continue
		}
		if reflect.DeepEqual(reflect.ValueOf(cnn).Field(i).Interface(), def.Field(i).Interface()) &&
			reflect.DeepEqual(reflect.ValueOf(bert).Field(i).Interface(), def.Field(i).Interface()) {
			t.Errorf("RunConfig.%s has its default in both test runs: change it in one, and pass it in runArgs", name)
		}
	}
	for _, rc := range []node.RunConfig{cnn, bert} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		var got node.RunConfig
		runFlags(fs, &got)
		if err := fs.Parse(runArgs(rc)); err != nil {
			t.Fatal(err)
		}
		if got.ID() != rc.ID() {
			t.Errorf("round trip changed the run:\n got %s\nwant %s", got.JSON(), rc.JSON())
		}
	}
}

// --model mlp is the run the flag's absence gives (same run ID), and a
// typo is refused with the choices.
func TestModelFlag(t *testing.T) {
	parse := func(args ...string) (node.RunConfig, error) {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		var rc node.RunConfig
		runFlags(fs, &rc)
		return rc, fs.Parse(args)
	}
	plain, _ := parse()
	mlp, err := parse("--model", "mlp")
	if err != nil || mlp.ID() != plain.ID() {
		t.Errorf("--model mlp: %v, run %s, want the default run %s", err, mlp.ID(), plain.ID())
	}
	if cnn, err := parse("--model", "cnn"); err != nil || cnn.Model != "cnn" || cnn.ID() == plain.ID() {
		t.Errorf("--model cnn: %v, model %q", err, cnn.Model)
	}
	if _, err := parse("--model", "resnet"); err == nil || !strings.Contains(err.Error(), "mlp, cnn or bert") {
		t.Errorf("--model resnet: %v, want the choices named", err)
	}
}
