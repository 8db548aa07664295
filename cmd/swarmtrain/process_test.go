package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
	"github.com/swarmtrain/swarmtrain/node"
)

// The test binary doubles as the swarmtrain binary: with this variable
// set it runs main, so tests start real node processes without a
// separate build step.
const runMainEnv = "SWARMTRAIN_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type proc struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	err    error
}

// testSwarmKey is the swarm key the process tests' nodes share unless a
// test gives its own (--key, --key-file) or runs open (--open).
const testSwarmKey = "5eb0ffe1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f708192a3b4c5d6e7"

// startNode starts `swarmtrain node` as its own process on loopback.
func startNode(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	return startNodeWith(t, dir, "/ip4/127.0.0.1/tcp/0", exec.Command, args...)
}

// startNodeWith starts `swarmtrain node` listening on listen, its command
// built by command (which may wrap it, e.g. to run in a namespace).
func startNodeWith(t *testing.T, dir, listen string, command func(string, ...string) *exec.Cmd, args ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"node", "--dir", dir, "--quiet", "--log-file", filepath.Join(dir, "node.log"),
		"--listen", listen}
	if !slices.ContainsFunc(args, func(a string) bool { return a == "--key" || a == "--key-file" || a == "--open" }) {
		base = append(base, "--key", testSwarmKey) // one swarm unless the test says otherwise
	}
	if !slices.Contains(args, "--no-mdns=false") {
		// Tests' swarms share a key and runs, and other tests (ours or
		// another checkout's) run beside them on this machine: mDNS
		// would merge them. A test of mDNS turns it back on.
		base = append(base, "--no-mdns")
	}
	return startProcess(t, dir, command(exe, append(base, args...)...))
}

// startProcess starts cmd, a `swarmtrain node` of the test binary in dir,
// and kills it when the test ends.
func startProcess(t *testing.T, dir string, cmd *exec.Cmd) *proc {
	t.Helper()
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	p := &proc{t: t, dir: dir, cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// checkFor waits for a condition; see testutil.CheckFor.
var checkFor = testutil.CheckFor

func (p *proc) info() node.Info {
	p.t.Helper()
	var info node.Info
	checkFor(p.t, 60*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("node exited early: %v\n%s", p.err, p.stderr)
		default:
		}
		b, err := os.ReadFile(filepath.Join(p.dir, "node.json"))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &info)
	})
	return info
}

func (p *proc) wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.cmd.Process.Kill()
		return fmt.Errorf("node in %s did not finish within %v", p.dir, d)
	}
}

func (p *proc) result() node.Result {
	p.t.Helper()
	var r node.Result
	b, err := os.ReadFile(filepath.Join(p.dir, "result.json"))
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		p.t.Fatalf("%s: %v", p.dir, err)
	}
	return r
}

func (p *proc) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "node.log"))
	return string(b)
}

var smallRun = []string{"--hidden", "32", "--batch", "32", "--target-batch", "96", "--steps", "40", "--warmup", "5", "--lr", "0.003"}

// Three real processes on loopback train together: afterwards every
// replica holds bit-identical state (equal SHA-256 over parameters and
// optimizer state) and the test loss has dropped. One node has the run
// from flags, one from a run config file, one from the file and a flag
// over it: all three are the same run.
func TestThreeProcessesStayIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	// smallRun as run config files: exactly, and with other steps.
	run := node.DefaultRunConfig()
	var args []flagArg
	for i := 0; i < len(smallRun); i += 2 {
		args = append(args, flagArg{strings.TrimPrefix(smallRun[i], "--"), smallRun[i+1]})
	}
	if err := setRunFlags(&run, args); err != nil {
		t.Fatal(err)
	}
	exact, other := filepath.Join(dir, "run.json"), filepath.Join(dir, "run-99.json")
	if err := node.WriteRunConfig(exact, run); err != nil {
		t.Fatal(err)
	}
	run.Optimizer.Steps = 99
	if err := node.WriteRunConfig(other, run); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, filepath.Join(dir, "a"), append([]string{"--min-peers", "3", "--shard", "0/3", "--linger", "2s"}, smallRun...)...)
	join := a.info().Addrs[0]
	b := startNode(t, filepath.Join(dir, "b"), "--min-peers", "3", "--shard", "1/3", "--linger", "2s", "--join", join, "--run-config", exact)
	c := startNode(t, filepath.Join(dir, "c"), "--min-peers", "3", "--shard", "2/3", "--linger", "2s", "--join", join, "--steps", "40", "--run-config", other)
	for _, p := range []*proc{a, b, c} {
		if err := p.wait(3 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, p.log())
		}
	}
	ra, rb, rc := a.result(), b.result(), c.result()
	for _, r := range []node.Result{ra, rb, rc} {
		if r.Step != 40 {
			t.Fatalf("peer %s stopped at step %d, want 40", r.Peer, r.Step)
		}
		if r.Hash != ra.Hash {
			t.Fatalf("replicas diverged: %s has %s, %s has %s", ra.Peer, ra.Hash, r.Peer, r.Hash)
		}
		if !(r.TestLoss < 0.7*r.InitialTestLoss) {
			t.Fatalf("test loss went from %.3f to %.3f: it should drop", r.InitialTestLoss, r.TestLoss)
		}
		if r.Rounds < 20 {
			t.Fatalf("peer %s took part in only %d of 40 rounds", r.Peer, r.Rounds)
		}
	}
}

// Four processes with --max-group 2 average in Moshpit pairs that rotate
// every step: no round has more than two members, every node averages
// with more than one partner over the run, the loss drops like in one
// group, and the run still ends on one state everywhere.
func TestMaxGroupAveragesInRotatingGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	args := append([]string{"--min-peers", "4", "--linger", "3s", "--max-group", "2"}, smallRun...)
	first := startNode(t, filepath.Join(dir, "n0"), args...)
	procs := []*proc{first}
	for i := 1; i < 4; i++ {
		procs = append(procs, startNode(t, filepath.Join(dir, fmt.Sprintf("n%d", i)), append([]string{"--join", first.info().Addrs[0]}, args...)...))
	}
	for _, p := range procs {
		if err := p.wait(3 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, p.log())
		}
	}
	r0 := procs[0].result()
	for _, p := range procs {
		r := p.result()
		if r.Step != 40 || r.Hash != r0.Hash {
			t.Fatalf("%s ended at step %d with %s; %s with %s: want step 40, one state\n%s", r.Peer, r.Step, r.Hash, r0.Peer, r0.Hash, p.log())
		}
		if r.LargestGroup != 2 {
			t.Errorf("%s: largest group %d, want 2 (the cap)", r.Peer, r.LargestGroup)
		}
		if r.Partners < 2 {
			t.Errorf("%s averaged with %d distinct peers: the groups did not rotate", r.Peer, r.Partners)
		}
		if r.Rounds < 20 {
			t.Errorf("%s averaged in only %d of 40 steps", r.Peer, r.Rounds)
		}
		if !(r.TestLoss < 0.7*r.InitialTestLoss) {
			t.Errorf("%s: test loss went from %.3f to %.3f: it should drop", r.Peer, r.InitialTestLoss, r.TestLoss)
		}
	}
	if !strings.Contains(procs[0].log(), "Moshpit groups") {
		t.Errorf("the log does not say the swarm switched to Moshpit groups:\n%s", procs[0].log())
	}
}

// A run whose learning rate blows the model up stops with an error that
// says so and what to change, on either engine: on gorgonia the loss
// overflows to NaN; the native MLP's log-softmax is stable, so there the
// loss soars, every ReLU dies and the gradients stay finite, which only
// the loss guard sees.
func TestDivergedRunStopsWithTheCause(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, engine := range []string{"native", "gorgonia"} {
		t.Run(engine, func(t *testing.T) {
			p := startNode(t, filepath.Join(t.TempDir(), "n"), "--engine", engine, "--hidden", "32", "--optimizer", "sgd", "--lr", "9.9", "--warmup", "0", "--steps", "1000")
			err := p.wait(time.Minute)
			if err == nil {
				t.Fatal("a run at learning rate 9.9 finished without complaint")
			}
			if msg := p.stderr.String(); !strings.Contains(msg, "training diverged") || !strings.Contains(msg, "lower --lr") {
				t.Fatalf("the error does not name the cause and the fix:\n%s", msg)
			}
		})
	}
}

// A node whose run differs (another hidden width) is refused, and both
// sides say why.
func TestJoinRefusedOnDifferentRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	a := startNode(t, filepath.Join(dir, "a"), "--hidden", "32", "--steps", "100000")
	join := a.info().Addrs[0]
	b := startNode(t, filepath.Join(dir, "b"), "--hidden", "16", "--steps", "100000", "--join", join)
	err := b.wait(time.Minute)
	if err == nil {
		t.Fatal("a node with another hidden width joined without complaint")
	}
	msg := b.stderr.String()
	if !strings.Contains(msg, "refused") || !strings.Contains(msg, "hidden: ours [32], theirs [16]") {
		t.Fatalf("joiner's error should name the differing field from the host's side, got:\n%s", msg)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if l := a.log(); !strings.Contains(l, "refused peer") || !strings.Contains(l, "hidden: ours [32], theirs [16]") {
			return fmt.Errorf("host log does not explain the refusal:\n%s", l)
		}
		return nil
	})
}

// A node that joins a swarm already training downloads the state, then
// trains along and ends identical to the others.
func TestLateJoinerDownloadsState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	run := []string{"--hidden", "32", "--batch", "32", "--target-batch", "64", "--steps", "600", "--warmup", "5", "--lr", "0.003", "--linger", "3s"}
	a := startNode(t, filepath.Join(dir, "a"), append([]string{"--min-peers", "2", "--http", "127.0.0.1:0"}, run...)...)
	info := a.info()
	b := startNode(t, filepath.Join(dir, "b"), append([]string{"--min-peers", "2", "--join", info.Addrs[0]}, run...)...)
	// Wait until the pair is well into training, then join.
	checkFor(t, 2*time.Minute, 50*time.Millisecond, func() error {
		st, err := fetchStatus(info.HTTP)
		if err != nil {
			return err
		}
		if st.Step < 20 {
			return fmt.Errorf("still at step %d", st.Step)
		}
		return nil
	})
	c := startNode(t, filepath.Join(dir, "c"), append([]string{"--join", info.Addrs[0]}, run...)...)
	for _, p := range []*proc{a, b, c} {
		if err := p.wait(3 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, p.log())
		}
	}
	ra, rc := a.result(), c.result()
	if rc.Syncs < 1 {
		t.Fatalf("late joiner never downloaded state:\n%s", c.log())
	}
	if rc.Hash != ra.Hash || rc.Step != ra.Step {
		t.Fatalf("late joiner ended at step %d hash %s, swarm at step %d hash %s", rc.Step, rc.Hash, ra.Step, ra.Hash)
	}
	if rc.Rounds < 1 || rc.Rounds >= int(ra.Step) {
		t.Fatalf("late joiner took part in %d rounds (first node %d): it should contribute, from its join on", rc.Rounds, ra.Rounds)
	}
}

// SIGTERM makes a node leave cleanly (exit status 0), and the swarm it
// leaves keeps training without it.
func TestCleanLeaveKeepsSwarmTraining(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	run := []string{"--hidden", "16", "--batch", "32", "--target-batch", "64", "--steps", "100000"}
	a := startNode(t, filepath.Join(dir, "a"), append([]string{"--min-peers", "2", "--http", "127.0.0.1:0"}, run...)...)
	info := a.info()
	b := startNode(t, filepath.Join(dir, "b"), append([]string{"--min-peers", "2", "--join", info.Addrs[0]}, run...)...)
	checkFor(t, 2*time.Minute, 50*time.Millisecond, stepAtLeast(info.HTTP, 10))
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.wait(30 * time.Second); err != nil {
		t.Fatalf("node did not leave cleanly: %v\n%s", err, b.stderr)
	}
	st, err := fetchStatus(info.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		st, err := fetchStatus(info.HTTP)
		if err != nil {
			return err
		}
		if st.LivePeers != 1 {
			return fmt.Errorf("survivor still counts %d live peers", st.LivePeers)
		}
		return nil
	})
	checkFor(t, time.Minute, 50*time.Millisecond, stepAtLeast(info.HTTP, st.Step+20))
}

// A node killed with SIGKILL mid-training stalls the others for moments,
// not minutes; restarted from its directory (same identity) it downloads
// the state and rejoins, and the run ends with identical replicas.
func TestKilledNodeRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	run := []string{"--hidden", "16", "--batch", "32", "--target-batch", "96", "--steps", "1000", "--linger", "15s"}
	a := startNode(t, filepath.Join(dir, "a"), append([]string{"--min-peers", "3", "--http", "127.0.0.1:0"}, run...)...)
	info := a.info()
	join := []string{"--min-peers", "3", "--join", info.Addrs[0]}
	b := startNode(t, filepath.Join(dir, "b"), append(join, run...)...)
	c := startNode(t, filepath.Join(dir, "c"), append(join, run...)...)
	status := func() node.Status {
		st, _ := fetchStatus(info.HTTP)
		return st
	}
	checkFor(t, 2*time.Minute, 50*time.Millisecond, func() error {
		if st := status(); st.Step < 50 {
			return fmt.Errorf("at step %d", st.Step)
		}
		return nil
	})
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c.wait(10 * time.Second)
	killed := time.Now()
	atKill := status().Step
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if st := status(); st.Step < atKill+1 {
			return fmt.Errorf("no step since the kill (step %d)", st.Step)
		}
		return nil
	})
	t.Logf("first step after SIGKILL: %v", time.Since(killed))
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if st := status(); st.LivePeers != 2 || st.Step < atKill+20 {
			return fmt.Errorf("live peers %d, step %d", st.LivePeers, st.Step)
		}
		return nil
	})
	c2 := startNode(t, filepath.Join(dir, "c"), append([]string{"--join", info.Addrs[0]}, run...)...)
	for _, p := range []*proc{a, b, c2} {
		if err := p.wait(3 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, p.log())
		}
	}
	ra, rb, rc := a.result(), b.result(), c2.result()
	if rc.Syncs < 1 {
		t.Fatal("restarted node did not download the state")
	}
	for _, r := range []node.Result{rb, rc} {
		if r.Step != ra.Step || r.Hash != ra.Hash {
			t.Fatalf("replicas differ at the end: %s step %d hash %s, %s step %d hash %s\n%s", ra.Peer, ra.Step, ra.Hash, r.Peer, r.Step, r.Hash, logs(a, b, c, c2))
		}
	}
}

// logs returns the nodes' logs without the chatty lines, for failures.
func logs(ps ...*proc) string {
	var out strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&out, "--- %s\n", p.dir)
		for _, line := range strings.Split(p.log(), "\n") {
			if !strings.Contains(line, "peer up") {
				out.WriteString(line + "\n")
			}
		}
	}
	return out.String()
}

// stepAtLeast is a checkFor condition: the node serving /status at addr
// has reached step n.
func stepAtLeast(addr string, n uint64) func() error {
	return func() error {
		st, err := fetchStatus(addr)
		if err != nil {
			return err
		}
		if st.Step < n {
			return fmt.Errorf("at step %d, want %d (%d live peers)", st.Step, n, st.LivePeers)
		}
		return nil
	}
}
