package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/trainer/text"
)

// The BERT path end to end in a swarm: two processes pre-train a small
// encoder with masked-language modelling on the default corpus (each learns the
// vocabulary itself, bit for bit the same, or they would be on different
// runs), then two processes fine-tune it on the source task (which book?)
// from the pre-training checkpoint, with its vocabulary, a new head and
// only 32 labelled rows, 16 each.
func TestBERTPretrainThenFineTune(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	model := []string{"--model", "bert", "--width", "16", "--heads", "2", "--layers", "1", "--seq", "32",
		"--batch", "16", "--target-batch", "32", "--steps", "15", "--warmup", "2", "--lr", "0.003", "--min-peers", "2", "--linger", "2s"}
	pair := func(name string, mustLearn bool, args ...string) (node.Result, node.Result, *proc) {
		t.Helper()
		a := startNode(t, filepath.Join(dir, name+"-a"), append(append([]string{"--shard", "0/2"}, model...), args...)...)
		b := startNode(t, filepath.Join(dir, name+"-b"), append(append([]string{"--shard", "1/2", "--join", a.info().Addrs[0]}, model...), args...)...)
		for _, p := range []*proc{a, b} {
			if err := p.wait(3 * time.Minute); err != nil {
				t.Fatalf("%s: %v\n%s\n%s", name, err, p.stderr, p.log())
			}
		}
		ra, rb := a.result(), b.result()
		if ra.Step != 15 || ra.Hash != rb.Hash {
			t.Fatalf("%s: steps %d/%d, hashes %s/%s: want both at 15 with one state", name, ra.Step, rb.Step, ra.Hash, rb.Hash)
		}
		if mustLearn && !(ra.TestLoss < ra.InitialTestLoss) {
			t.Errorf("%s: held-out loss went from %.3f to %.3f", name, ra.InitialTestLoss, ra.TestLoss)
		}
		return ra, rb, a
	}
	pre, _, a := pair("mlm", true, "--dataset", "mlm", "--vocab-size", "300", "--checkpoint-every", "15")
	t.Logf("pre-training: held-out masked-token loss %.3f → %.3f, accuracy %.3f", pre.InitialTestLoss, pre.TestLoss, pre.Accuracy)

	ckpt, vocab := filepath.Join(a.dir, node.CheckpointFile), filepath.Join(a.dir, "vocab.txt")
	fine, _, f := pair("source", false, "--dataset", "source", "--train-rows", "32", "--init-from", ckpt, "--vocab", vocab)
	if !strings.Contains(f.log(), "train_rows=32 our_rows=16 ") {
		t.Errorf("fine-tuning did not train on 32 rows, 16 per node:\n%s", f.log())
	}
	// The log line lists the tensors the checkpoint did not provide.
	_, fresh, _ := strings.Cut(f.log(), "freshly_initialised=\"[")
	fresh, _, _ = strings.Cut(fresh, "]")
	names := strings.Fields(fresh)
	if len(names) != 4 {
		t.Errorf("fine-tuning initialised %q afresh, want the 4 tensors of the classification head", names)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "head.") {
			t.Errorf("fine-tuning initialised %s afresh: the encoder should come from the checkpoint", n)
		}
	}
	t.Logf("fine-tuning: source accuracy %.3f, loss %.3f → %.3f", fine.Accuracy, fine.InitialTestLoss, fine.TestLoss)
}

// A node that cannot start (here: a CSV row with three fields) ends the
// demo with the node's own error, naming the line, instead of a hang.
func TestDemoReportsNodeStartFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("text,label\n\"the light\",a\n\"the prism\",b,c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vocab := filepath.Join(dir, "vocab.txt")
	if err := os.WriteFile(vocab, []byte(strings.Join(append(slices.Clone(text.Specials), "the", "light", "prism"), "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "demo", "--nodes", "1", "--model", "bert", "--dataset", "csv", "--train-csv", bad, "--test-csv", bad,
		"--vocab", vocab, "--steps", "5", "--warmup", "0", "--dir", filepath.Join(dir, "demo"))
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the demo hung on a node that could not start:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "line 3") {
		t.Errorf("demo: %v, want the node's error naming line 3:\n%s", err, out)
	}
}
