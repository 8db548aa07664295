package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// bare runs a node as on a machine without Go: GOMODCACHE and GOROOT
// point at empty folders, so neither the build info nor `go list` finds
// the GoMNIST module.
func bare(t *testing.T, extraEnv ...string) func(string, ...string) *exec.Cmd {
	empty := t.TempDir()
	env := append([]string{"GOMODCACHE=" + filepath.Join(empty, "modcache"), "GOROOT=" + filepath.Join(empty, "goroot"), "GOPATH=" + filepath.Join(empty, "gopath")}, extraEnv...)
	for _, d := range []string{"modcache", "goroot", "gopath"} {
		if err := os.MkdirAll(filepath.Join(empty, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return func(exe string, args ...string) *exec.Cmd {
		return exec.Command("env", append(append(env, exe), args...)...)
	}
}

// dataRun is a short MNIST run.
var dataRun = []string{"--hidden", "32", "--batch", "32", "--target-batch", "64", "--steps", "150", "--warmup", "5", "--lr", "0.003", "--linger", "3s"}

// startTrainingPair starts two nodes with the GoMNIST module at hand and
// waits until they are training; extra[i] are node i's own flags. They
// linger until newcomerFinishes ends them.
func startTrainingPair(t *testing.T, dir string, command [2]func(string, ...string) *exec.Cmd, extra [2][]string) [2]*proc {
	t.Helper()
	pairRun := append(slices.Clone(dataRun), "--linger", "5m")
	a := startNodeWith(t, filepath.Join(dir, "a"), "/ip4/127.0.0.1/tcp/0", command[0], append(append([]string{"--min-peers", "2", "--http", "127.0.0.1:0"}, pairRun...), extra[0]...)...)
	info := a.info()
	b := startNodeWith(t, filepath.Join(dir, "b"), "/ip4/127.0.0.1/tcp/0", command[1], append(append([]string{"--min-peers", "2", "--join", info.Addrs[0]}, pairRun...), extra[1]...)...)
	checkFor(t, 2*time.Minute, 50*time.Millisecond, func() error {
		st, err := fetchStatus(info.HTTP)
		if err != nil {
			return err
		}
		if st.Step < 5 {
			return fmt.Errorf("still at step %d", st.Step)
		}
		return nil
	})
	return [2]*proc{a, b}
}

// newcomerFinishes waits for the newcomer, then ends the lingering pair
// (SIGINT: leave, exit) and checks all three end on one hash. The pair
// lingers so that a newcomer still fetching its data when the pair's
// short run ends finds them there: at a load of 130 the fetch and the
// data's load once took longer than the pair's whole run, and the
// newcomer dialled peers that had left.
func newcomerFinishes(t *testing.T, newcomer *proc, pair [2]*proc) {
	t.Helper()
	if err := newcomer.wait(3 * time.Minute); err != nil {
		t.Fatalf("%s: %v\n%s\n%s", newcomer.dir, err, newcomer.stderr, logs(pair[0], pair[1], newcomer))
	}
	for _, p := range pair {
		p.cmd.Process.Signal(os.Interrupt)
	}
	finishTogether(t, pair[0], pair[1], newcomer)
}

// finishTogether waits for the nodes and checks they end on one hash.
func finishTogether(t *testing.T, ps ...*proc) {
	t.Helper()
	// The first node to fail ends the test: the others would only wait
	// out their peer timeouts.
	errs := make(chan error, len(ps))
	for _, p := range ps {
		go func() {
			err := p.wait(3 * time.Minute)
			if err != nil {
				err = fmt.Errorf("%s: %v\n%s", p.dir, err, p.stderr)
			}
			errs <- err
		}()
	}
	for range ps {
		if err := <-errs; err != nil {
			t.Fatalf("%v\n%s", err, logs(ps...))
		}
	}
	want := ps[0].result()
	for _, p := range ps[1:] {
		if r := p.result(); r.Hash != want.Hash || r.Step != want.Step {
			t.Fatalf("%s ended at step %d hash %s, %s at step %d hash %s", p.dir, r.Step, r.Hash, ps[0].dir, want.Step, want.Hash)
		}
	}
}

// The acceptance case of "the data comes with the swarm": a node on a
// machine without Go or its module cache, given no --data, joins a
// running MNIST swarm with the join line alone, fetches MNIST from its
// peers (not from the one that refuses to serve it), keeps it in its
// --dir, and ends on the swarm's hash.
func TestBareMachineFetchesMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	pair := startTrainingPair(t, dir, [2]func(string, ...string) *exec.Cmd{exec.Command, exec.Command}, [2][]string{nil, {"--no-serve-data"}})
	a, quiet := pair[0], pair[1]
	b := startNodeWith(t, filepath.Join(dir, "bare"), "/ip4/127.0.0.1/tcp/0", bare(t), append([]string{"--join", quiet.info().Addrs[0], "--join", a.info().Addrs[0]}, dataRun...)...)
	newcomerFinishes(t, b, pair)
	log := b.log()
	if !strings.Contains(log, "fetched data") {
		t.Fatalf("the bare node did not fetch its data:\n%s", log)
	}
	if !strings.Contains(quiet.log(), "not serving data") {
		t.Fatalf("the --no-serve-data node did not say it serves no data:\n%s", quiet.log())
	}
	for _, name := range []string{"train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		if _, err := os.Stat(filepath.Join(b.dir, "data", "mnist", name)); err != nil {
			t.Fatalf("the download is not kept in --dir: %v", err)
		}
	}
}

// A text run's joiner on a machine without Go, given the run's file
// (which names the text's hashes) and none of the text, fetches the
// corpus and vocabulary from the node it joins and trains with it to
// one hash.
func TestBareMachineFetchesText(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	var texts []string
	for f := range 2 {
		p := filepath.Join(dir, fmt.Sprintf("book%d.txt", f))
		if err := os.WriteFile(p, []byte(testutil.TinyText(f)), 0o600); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, "--text", p)
	}
	model := []string{"--model", "bert", "--dataset", "mlm", "--vocab-size", "40", "--width", "8", "--heads", "2", "--layers", "1", "--seq", "16",
		"--batch", "8", "--target-batch", "16", "--steps", "5", "--warmup", "1", "--min-peers", "2", "--linger", "2s"}
	a := startNode(t, filepath.Join(dir, "a"), append(model, texts...)...)
	info := a.info()
	runFile := filepath.Join(dir, "a", "run.json")
	b := startNodeWith(t, filepath.Join(dir, "bare"), "/ip4/127.0.0.1/tcp/0", bare(t), "--run-config", runFile, "--join", info.Addrs[0], "--min-peers", "2", "--linger", "2s")
	finishTogether(t, a, b)
	if log := b.log(); !strings.Contains(log, "fetched data") {
		t.Fatalf("the bare node did not fetch its data:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(b.dir, "data", "text", "vocab.txt")); err != nil {
		t.Fatalf("the download is not kept in --dir: %v", err)
	}
}
