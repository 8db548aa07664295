//go:build netns

package main

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

var dilocoSteps = flag.Int("diloco.steps", 6, "outer steps of each TestDiLoCoUtilisation run")

// TestDiLoCoUtilisation: 4 nodes on 100 Mbit/s uplinks with 20 ms of
// one-way delay train a 16 MiB model (MLP 784-2048-1280-10, batch 8, so
// a phase's compute is small) in DiLoCo with H = 50 and int8
// pseudo-gradients, plain and overlapped. Both end on one hash; with
// overlap the peers compute at least 90% of the wall time (the plain
// mode's figure is logged beside it).
//
//	sudo go test -tags netns -run TestDiLoCoUtilisation -v -timeout 30m ./cmd/swarmtrain/
func TestDiLoCoUtilisation(t *testing.T) {
	util := map[string]float64{}
	for _, mode := range []string{"diloco", "diloco-overlap"} {
		t.Run(mode, func(t *testing.T) {
			spec := labSwarm{n: 4, listen: "tcp", delay: 20 * time.Millisecond, steps: *dilocoSteps,
				rate: func(int) string { return "100mbit" },
				args: []string{"--hidden", "2048,1280", "--batch", "8", "--target-batch", "32", "--warmup", "10",
					"--mode", mode, "--inner-steps", "50", "--codec", "int8", "--log-level", "debug"}}
			_, nodes := spec.start(t)
			res := spec.finish(t, nodes)
			var us []float64
			for i, r := range res {
				us = append(us, r.ComputeUtilisation)
				if r.ComputeUtilisation < 0.9 {
					// Where its time went: phases, rounds, downloads.
					t.Logf("node %d computed %.3f of the time:\n%s", i, r.ComputeUtilisation, phaseStory(nodes[i].log()))
				}
			}
			slices.Sort(us)
			util[mode] = us[len(us)/2]
			t.Logf("%s: compute utilisation %.3f (nodes %.3f), %.2f s/outer step", mode, util[mode], us, stepTime(res))
		})
	}
	if u, ok := util["diloco-overlap"]; ok && u < 0.9 {
		t.Errorf("overlapped DiLoCo computes %.1f%% of the time, want at least 90%% (plain: %.1f%%)", 100*u, 100*util["diloco"])
	}
}

// phaseStory is a DiLoCo node log's phases and its other events.
func phaseStory(log string) string {
	var keep []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg=phase `) || strings.Contains(line, "level=INFO") || strings.Contains(line, "level=WARN") {
			keep = append(keep, "  "+line)
		}
	}
	return strings.Join(keep, "\n")
}
