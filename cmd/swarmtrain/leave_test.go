package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// Ctrl-C on one of three nodes: it announces its leave before it
// evaluates and writes its checkpoint, exits cleanly with a loadable
// checkpoint, and the two survivors log no failed round for it while
// they train on.
func TestInterruptLeavesFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	run := []string{"--hidden", "16", "--batch", "32", "--target-batch", "96", "--steps", "100000"}
	a := startNode(t, filepath.Join(dir, "a"), append([]string{"--min-peers", "3", "--http", "127.0.0.1:0"}, run...)...)
	info := a.info()
	join := []string{"--min-peers", "3", "--join", info.Addrs[0]}
	b := startNode(t, filepath.Join(dir, "b"), append(join, run...)...)
	c := startNode(t, filepath.Join(dir, "c"), append(join, run...)...)
	checkFor(t, 2*time.Minute, 50*time.Millisecond, stepAtLeast(info.HTTP, 30))
	before := map[*proc]int{a: len(a.log()), b: len(b.log())}
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := c.wait(30 * time.Second); err != nil {
		t.Fatalf("the interrupted node did not leave cleanly: %v\n%s", err, c.stderr)
	}
	leave, saved := logLine(c.log(), "leave announced"), logLine(c.log(), "checkpoint written")
	if leave < 0 || saved < 0 || leave > saved {
		t.Fatalf("want the leave announced (line %d) before the checkpoint is written (line %d):\n%s", leave, saved, c.log())
	}
	ck, err := trainer.ReadCheckpoint(filepath.Join(c.dir, node.CheckpointFile))
	if err != nil || ck.Step < 30 {
		t.Fatalf("the interrupted node's checkpoint: %v (step %d)", err, ck.Step)
	}
	st, err := fetchStatus(info.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, time.Minute, 50*time.Millisecond, stepAtLeast(info.HTTP, st.Step+30))
	for p, from := range before {
		after := p.log()[from:]
		if strings.Contains(after, "failed; retrying") || strings.Contains(after, "left a contribution out") {
			t.Errorf("%s logged a failed round after the leave:\n%s", p.dir, after)
		}
	}
}

// logLine is the index of the first line of log containing s, or -1.
func logLine(log, s string) int {
	sc := bufio.NewScanner(strings.NewReader(log))
	for i := 0; sc.Scan(); i++ {
		if strings.Contains(sc.Text(), s) {
			return i
		}
	}
	return -1
}

// SIGTERM to a running demo (as timeout, systemd or a script send it)
// stops every node it started and prints what they had.
func TestDemoStopsItsNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p, out, infos := startDemo(t)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := p.wait(time.Minute)
	if err == nil || !strings.Contains(p.stderr.String(), "interrupted at step") {
		t.Fatalf("the demo should end with an error naming the step it was stopped at: %v\n%s", err, p.stderr)
	}
	nodesGone(t, infos)
	summary := out.String()
	for _, want := range []string{"interrupted after", "node 0", "node 1", "state hash", "accuracy"} {
		if !strings.Contains(summary, want) {
			t.Fatalf("the interrupted demo's summary lacks %q:\n%s", want, summary)
		}
	}
}

// A demo killed outright (SIGKILL: no chance to stop anything) still
// takes its nodes with it (Pdeathsig).
func TestDemoKilledTakesItsNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is linux's")
	}
	p, _, infos := startDemo(t)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(10 * time.Second)
	nodesGone(t, infos)
}

// startDemo starts a 2-node demo of a long run and returns once both
// nodes are training, with its stdout and the nodes' node.json.
func startDemo(t *testing.T) (*proc, *bytes.Buffer, []node.Info) {
	dir := filepath.Join(t.TempDir(), "demo")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "demo", "--nodes", "2", "--dir", dir, "--hidden", "16", "--batch", "32", "--target-batch", "64", "--steps", "100000")
	out := &bytes.Buffer{}
	cmd.Stdout = out
	p := startProcess(t, dir, cmd)
	infos := make([]node.Info, 2)
	checkFor(t, 2*time.Minute, 50*time.Millisecond, func() error {
		for i := range infos {
			b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node-%d", i), "node.json"))
			if err != nil {
				return err
			}
			if err := json.Unmarshal(b, &infos[i]); err != nil {
				return err
			}
			st, err := fetchStatus(infos[i].HTTP)
			if err != nil {
				return err
			}
			if st.Step < 5 {
				return fmt.Errorf("node %d at step %d", i, st.Step)
			}
		}
		return nil
	})
	return p, out, infos
}

// nodesGone waits until no process of infos is left.
func nodesGone(t *testing.T, infos []node.Info) {
	t.Helper()
	for i, info := range infos {
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			if err := syscall.Kill(info.PID, 0); !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("node %d (pid %d) outlived the demo: %v", i, info.PID, err)
			}
			return nil
		})
	}
}
