package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
)

// One `demo --deterministic` command, run twice: three processes each
// time, with new peer IDs, ports and start order, end on the same model
// (the state hash also covers the peer IDs, so the runs compare model
// hashes), and say the run stayed deterministic.
func TestDemoDeterministicTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	demo := func() demoResult {
		t.Helper()
		cmd := exec.Command(exe, "demo", "--json", "--nodes", "3", "--deterministic", "--hidden", "16", "--batch", "32",
			"--target-batch", "128", "--steps", "30", "--warmup", "3")
		cmd.Env = append(os.Environ(), runMainEnv+"=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("demo: %v\n%s", err, errb.String())
		}
		var r demoResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("demo output: %v\n%s", err, out.String())
		}
		return r
	}
	a, b := demo(), demo()
	if a.Run != b.Run || len(a.Nodes) != 3 || len(b.Nodes) != 3 {
		t.Fatalf("runs %s and %s with %d and %d nodes", a.Run, b.Run, len(a.Nodes), len(b.Nodes))
	}
	for _, r := range append(a.Nodes, b.Nodes...) {
		if r.Step != 30 || r.ModelHash == "" || r.ModelHash != a.Nodes[0].ModelHash || r.Deterministic != "on" {
			for _, r := range append(a.Nodes, b.Nodes...) {
				t.Logf("%s: step %d model hash %s state hash %s deterministic %q", r.Peer, r.Step, r.ModelHash, r.Hash, r.Deterministic)
			}
			t.Fatal("two runs of one deterministic demo did not end on one model")
		}
	}
	if a.Nodes[0].Peer == b.Nodes[0].Peer {
		t.Fatal("both runs had the same peer IDs: the test shows nothing")
	}
}
