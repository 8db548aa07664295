package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/node"
)

// Every run field is set by exactly one flag, whose default is the
// field's default and whose help names the field's path; the rest come
// from files (their hashes) or are the version.
func TestRunFlagTable(t *testing.T) {
	fromFiles := map[string]bool{"version": true, "model.init_from": true, "data.files": true, "data.vocab": true}
	var rc node.RunConfig
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	bindRunFlags(fs, &rc)
	if rc.JSON() == nil || rc.Model.Kind != "mlp" || rc.Optimizer.LR != node.DefaultRunConfig().Optimizer.LR {
		t.Errorf("the flags' defaults make %s", rc.JSON())
	}
	bound := map[any]string{}
	for _, f := range runFlagTable {
		p := f.field(&rc)
		if other, ok := bound[p]; ok {
			t.Errorf("--%s and --%s set the same field", f.name, other)
		}
		bound[p] = f.name
	}
	for _, f := range rc.Fields() {
		name, ok := bound[f.Ptr]
		switch {
		case fromFiles[f.Path] && ok:
			t.Errorf("%s comes from a file, yet --%s sets it", f.Path, name)
		case !fromFiles[f.Path] && !ok:
			t.Errorf("no flag sets %s: add it to runFlagTable", f.Path)
		case ok && !strings.Contains(fs.Lookup(name).Usage, "(run config: "+f.Path+")"):
			t.Errorf("--%s's help does not name %s: %q", name, f.Path, fs.Lookup(name).Usage)
		}
	}
	// The defaults are DefaultRunConfig's, field for field.
	d := node.DefaultRunConfig()
	if string(rc.JSON()) != string(d.JSON()) {
		t.Errorf("the flags' defaults:\n%s\nDefaultRunConfig:\n%s", rc.JSON(), d.JSON())
	}
}

// A run config file gives the run; run flags given with it override its
// values, wherever they stand, and a list flag replaces the file's list.
// A file that names a version this build cannot read is refused.
func TestRunConfigFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "run.json")
	want := node.DefaultRunConfig()
	want.Model.Kind, want.Model.Channels, want.Model.Hidden = "cnn", []int{8, 16}, []int{64, 32}
	want.Optimizer.Name, want.Optimizer.Momentum, want.Optimizer.LR = "momentum", 0.9, 0.05
	want.Averaging.Codec, want.Seed = "int8", 9
	if err := node.WriteRunConfig(file, want); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (node.RunConfig, error) {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		var rc node.RunConfig
		runs := addRunFlags(fs, &rc)
		if err := fs.Parse(args); err != nil {
			return rc, err
		}
		return runs.run()
	}
	got, err := parse("--run-config", file)
	if err != nil || got.ID() != want.ID() {
		t.Fatalf("--run-config alone: %v, run\n%s\nwant\n%s", err, got.JSON(), want.JSON())
	}
	got, err = parse("--lr", "0.01", "--run-config", file, "--hidden", "32", "--steps", "50")
	over := want
	over.Optimizer.LR, over.Model.Hidden, over.Optimizer.Steps = 0.01, []int{32}, 50
	if err != nil || got.ID() != over.ID() {
		t.Errorf("flags over the file: %v, run\n%s\nwant\n%s", err, got.JSON(), over.JSON())
	}
	// Without a file the flags are the run, as they always were.
	if got, err := parse("--model", "cnn", "--lr", "0.01"); err != nil || got.Model.Kind != "cnn" || got.Optimizer.LR != 0.01 || got.Seed != 1 {
		t.Errorf("flags alone: %v, %s", err, got.JSON())
	}
	os.WriteFile(file, []byte(`{"version": 3}`), 0o600)
	if _, err := parse("--run-config", file); err == nil || !strings.Contains(err.Error(), "version 3 is newer than this build, which reads versions 1 to 2") {
		t.Errorf("a newer file: %v", err)
	}
	os.WriteFile(file, []byte(`{"version": 2, "optimizer": {"learning_rate": 0.1}}`), 0o600)
	if _, err := parse("--run-config", file); err == nil || !strings.Contains(err.Error(), "unknown field optimizer.learning_rate") {
		t.Errorf("a misspelt field: %v", err)
	}
}

// --model mlp is the default run; a typo is refused by the run's checks,
// with the choices.
func TestModelFlag(t *testing.T) {
	parse := func(args ...string) node.RunConfig {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		var rc node.RunConfig
		bindRunFlags(fs, &rc)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return rc
	}
	if mlp := parse("--model", "mlp"); mlp.ID() != node.DefaultRunConfig().ID() {
		t.Errorf("--model mlp: run %s, want the default run %s", mlp.ID(), node.DefaultRunConfig().ID())
	}
	if cnn := parse("--model", "cnn"); cnn.Model.Kind != "cnn" || cnn.Validate() != nil {
		t.Errorf("--model cnn: %s, %v", cnn.JSON(), cnn.Validate())
	}
	if err := parse("--model", "resnet").Validate(); err == nil || !strings.Contains(err.Error(), "mlp, cnn or bert") {
		t.Errorf("--model resnet: %v, want the choices named", err)
	}
	if l := parse("--hidden", "64,32", "--freeze", "a.,b.").Model; !slices.Equal(l.Hidden, []int{64, 32}) || !slices.Equal(l.Freeze, []string{"a.", "b."}) {
		t.Errorf("lists read as %v and %q", l.Hidden, l.Freeze)
	}
}

// A bad flag value is refused naming the flag, the value as given and
// what the flag accepts: never a bare strconv error, never only the run
// field's name.
func TestBadFlagValues(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want []string // besides the flag's name
	}{
		{[]string{"node", "--hidden", "abc"}, []string{`"abc"`, "whole numbers, comma-separated"}},
		{[]string{"node", "--hidden", "0"}, []string{"--hidden 0", "want 1..8192"}},
		{[]string{"node", "--steps", "x"}, []string{`"x"`, "want a whole number"}},
		{[]string{"node", "--seed", "-1"}, []string{`"-1"`, "0 or more"}},
		{[]string{"node", "--lr", "fast"}, []string{`"fast"`, "want a number"}},
		{[]string{"node", "--lr", "20"}, []string{"--lr 20", "want in (0, 10)"}},
		{[]string{"node", "--codec", "foo"}, []string{`"foo"`, "fp32, fp16, bf16, int8, int4", "topk:FRACTION", "powersgd:RANK"}},
		{[]string{"node", "--codec", "int8:3"}, []string{"block size", "16..65536"}},
		{[]string{"node", "--model", "resnet"}, []string{`"resnet"`, "mlp, cnn or bert"}},
		{[]string{"node", "--optimizer", "lion"}, []string{`"lion"`, "adam, adamw, sgd, momentum or nesterov"}},
		{[]string{"node", "--schedule", "exp"}, []string{`"exp"`, "cosine, linear, step or constant"}},
		{[]string{"node", "--aggregate", "median"}, []string{`"median"`, "mean, clip or trimmed"}},
		{[]string{"node", "--lossless", "gzip"}, []string{`"gzip"`, "none, zstd or s2"}},
		{[]string{"node", "--dataset", "cifar"}, []string{`"cifar"`, "mnist, images, mlm"}},
		{[]string{"node", "--batch", "0"}, []string{"--batch 0", "want 1..4096"}},
		{[]string{"node", "--target-batch", "3"}, []string{"--target-batch 3", "want --batch (64)"}},
		{[]string{"node", "--dropout", "2"}, []string{"--dropout 2", "[0, 1)"}},
		{[]string{"node", "--max-group", "-1"}, []string{"--max-group -1", "2..1024"}},
		{[]string{"node", "--min-peers", "0"}, []string{"--min-peers 0", "want 1..1024"}},
		{[]string{"node", "--checkpoint-every", "-1"}, []string{"--checkpoint-every -1", "want >= 0"}},
		{[]string{"node", "--port", "99999"}, []string{"--port 99999", "want 0..65535"}},
		{[]string{"node", "--shard", "5/4"}, []string{`"5/4"`, "K/N"}},
		{[]string{"node", "--join-timeout", "soon"}, []string{`"soon"`, "a duration such as 90s"}},
		{[]string{"node", "--open=maybe"}, []string{`"maybe"`, "true or false"}},
		{[]string{"node", "--log-level", "loud"}, []string{`"loud"`, "debug, info, warn or error"}},
		{[]string{"node", "--log-format", "xml"}, []string{`"xml"`, "text or json"}},
		{[]string{"node", "--precision", "fp8"}, []string{`"fp8"`, "fp32 or bf16"}},
		{[]string{"bench", "allreduce", "--codec", "foo"}, []string{`"foo"`, "fp32, fp16"}},
		{[]string{"bench", "allreduce", "--lossless", "gzip"}, []string{`"gzip"`, "none, zstd or s2"}},
		{[]string{"bench", "allreduce", "--aggregate", "median"}, []string{`"median"`, "mean, clip or trimmed"}},
		{[]string{"bench", "allreduce", "--hosts", "1"}, []string{"--hosts 1", "want 2..64"}},
		{[]string{"bench", "allreduce", "--mib", "0"}, []string{"--mib 0", "(0, 256]"}},
		{[]string{"bench", "allreduce", "--procs", "1"}, []string{"--procs 1", "want 2..64"}},
		{[]string{"bench", "allreduce", "--procs", "3", "--join", "/ip4/127.0.0.1/tcp/1"}, []string{"--join", "--procs 3", "first process only"}},
		{[]string{"bench", "compress", "--lossless", "gzip"}, []string{`"gzip"`, "none, zstd or s2"}},
		{[]string{"bench", "compress", "--rank", "5000"}, []string{"--rank 5000", "1..1023"}},
		{[]string{"bench", "compress", "--millions", "0.001", "--rank", "4"}, []string{"--rank 4", "raise --millions"}},
		{[]string{"bench", "train", "--steps", "0"}, []string{"--steps 0", "1..100000"}},
	} {
		flag := ""
		for _, a := range tc.args {
			if strings.HasPrefix(a, "--") {
				flag, _, _ = strings.Cut(a, "=")
			}
		}
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := tc.args
			if args[0] == "node" {
				args = append(args, "--dir", dir, "--quiet")
			}
			err := execute(args, nil, io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, flag+" ") {
				t.Errorf("%q does not start with the flag %s", msg, flag)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "strconv.") || strings.Contains(msg, "run config: "+flag) {
				t.Errorf("%q: a bare parser error", msg)
			}
		})
	}
}
