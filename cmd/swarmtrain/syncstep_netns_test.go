//go:build netns

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/netlab"
)

var (
	syncSteps = flag.Int("sync.steps", 20, "optimizer steps of each TestSyncStepTime run")
	syncReps  = flag.Int("sync.reps", 1, "runs of TestSyncStepTime, each followed by gloo in the same lab")
	syncGloo  = flag.Bool("sync.gloo", true, "also time gloo's all-reduce of the same vector in the same lab")
	syncIdle  = flag.Bool("sync.idle-restart", true, "leave the kernel's TCP slow start after idle on in the lab (false: net.ipv4.tcp_slow_start_after_idle=0 in every namespace)")
	syncRatio = flag.Float64("sync.ratio", 0, "fail when the median step exceeds this many times the bound plus compute (0: report only)")
)

// TestSyncStepTime is issue #17's slow-link figure: 4 nodes on 100
// Mbit/s uplinks with 20 ms of one-way delay train a 16 MiB model (MLP
// 784-2048-1280-10, batch 8, so compute is small) in sync mode, fp32.
// It reports the median step time against the bandwidth bound
// 2(N−1)/N·S/B and the compute per step, then times PyTorch's gloo
// all-reduce of the same vector in the same namespaces (one process per
// host) as the baseline.
//
//	flock /tmp/netns.lock go test -tags netns -run TestSyncStepTime -v -timeout 30m ./cmd/swarmtrain/ -args -sync.reps 3
func TestSyncStepTime(t *testing.T) {
	const n = 4
	const rate = 100e6 / 8 // bytes/s: tc's 100mbit
	var steps, glooTimes []float64
	for rep := range *syncReps {
		t.Run(strconv.Itoa(rep), func(t *testing.T) {
			spec := labSwarm{n: n, listen: "tcp", delay: 20 * time.Millisecond, steps: *syncSteps,
				rate: func(int) string { return "100mbit" },
				args: []string{"--hidden", "2048,1280", "--batch", "8", "--target-batch", "32", "--warmup", "10",
					"--mode", "sync", "--codec", "fp32", "--log-level", "debug",
					// All four in every round: under a loaded CPU a first
					// round can close on two, and the pairs then step apart.
					"--min-group", strconv.Itoa(n)}}
			if !*syncIdle {
				spec.setup = func(lab *netlab.Lab, h *netlab.Host) error {
					return lab.Command(h, "sysctl", "-q", "-w", "net.ipv4.tcp_slow_start_after_idle=0").Run()
				}
			}
			lab, nodes := spec.start(t)
			res := spec.finish(t, nodes)
			var times []float64
			phases := map[string][]float64{}
			for _, ln := range nodes {
				times = append(times, stepDurations(ln.log(), 3)...)
				for k, v := range stepPhases(ln.log(), 3) {
					phases[k] = append(phases[k], v...)
				}
			}
			if len(times) == 0 {
				t.Fatal("no step lines in the nodes' logs")
			}
			slices.Sort(times)
			med := times[len(times)/2]
			vector := 4 * float64(res[0].Params)
			bound := 2 * float64(n-1) / n * vector / rate
			var compute, samples []float64
			for _, r := range res {
				compute = append(compute, r.ComputeUtilisation*r.SecondsPerStep)
				samples = append(samples, float64(r.Samples)/float64(r.Step))
			}
			slices.Sort(compute)
			c := compute[len(compute)/2]
			steps = append(steps, med)
			t.Logf("sync fp32, %d nodes, %.1f MiB: median step %.3f s (p10 %.3f, p90 %.3f, %d steps), bound %.3f s, %.2fx the bound; compute %.3f s/step (nodes %.3f), %.2fx bound+compute; samples per node-step %.1f",
				n, vector/(1<<20), med, times[len(times)/10], times[len(times)*9/10], len(times), bound, med/bound, c, compute, med/(bound+c), samples)
			var split []string
			for _, k := range []string{"compute", "wait", "match", "transfer", "verify", "apply", "log"} {
				xs := phases[k]
				if len(xs) == 0 {
					continue
				}
				slices.Sort(xs)
				split = append(split, fmt.Sprintf("%s %.3f", k, xs[len(xs)/2]))
			}
			t.Logf("median seconds per phase of a step: %s", strings.Join(split, ", "))
			if *syncRatio > 0 && med > *syncRatio*(bound+c) {
				t.Errorf("median step %.3f s is %.2fx the bound plus compute (%.3f s), want at most %.2fx", med, med/(bound+c), bound+c, *syncRatio)
			}
			if *syncGloo {
				g, err := glooInLab(lab, vector)
				if err != nil {
					t.Logf("gloo: %v", err)
					return
				}
				glooTimes = append(glooTimes, g)
				t.Logf("gloo in the same lab: %.3f s per all-reduce, %.2fx the bound", g, g/bound)
			}
		})
	}
	t.Logf("sync step medians %.3f s; gloo %.3f s", steps, glooTimes)
}

// TestSlowAllReduce times the all-reduce alone on the same lab as
// TestSyncStepTime: `bench allreduce`, one process per namespace, of the
// MLP's 16 MiB gradient, rounds back to back, alternating with gloo's
// all-reduce of the same vector in the same namespaces. Both are held
// against the bandwidth bound 2(N−1)/N·S/B.
//
//	flock /tmp/netns.lock go test -tags netns -run TestSlowAllReduce -v -timeout 30m ./cmd/swarmtrain/ -args -sync.reps 3
func TestSlowAllReduce(t *testing.T) {
	const n = 4
	const rate = 100e6 / 8
	const floats = 4245210 // MLP 784-2048-1280-10
	vector := 4.0 * floats
	bound := 2 * float64(n-1) / n * vector / rate
	spec := labSwarm{n: n, delay: 20 * time.Millisecond, rate: func(int) string { return "100mbit" }}
	lab := spec.lab(t)
	var ours, gloo []float64
	for rep := range *syncReps {
		s, err := benchInLab(t, lab, vector, 5)
		if err != nil {
			t.Fatalf("rep %d: %v", rep, err)
		}
		ours = append(ours, s)
		t.Logf("rep %d: swarmtrain %.3f s per all-reduce, %.2fx the bound %.3f s", rep, s, s/bound, bound)
		if *syncGloo {
			g, err := glooInLab(lab, vector)
			if err != nil {
				t.Logf("gloo: %v", err)
				continue
			}
			gloo = append(gloo, g)
			t.Logf("rep %d: gloo %.3f s per all-reduce, %.2fx the bound", rep, g, g/bound)
		}
	}
	t.Logf("16 MiB fp32, 4 namespaces at 100 Mbit/s + 20 ms: bound %.3f s; swarmtrain %.3f s; gloo %.3f s", bound, ours, gloo)
}

// benchInLab runs `bench allreduce` with one process per host of the lab
// and returns the slowest member's mean seconds per round.
func benchInLab(t *testing.T, lab *netlab.Lab, vector float64, rounds int) (float64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	mib := strconv.FormatFloat(vector/(1<<20), 'f', 6, 64)
	listen := func(h *netlab.Host) string { return "/ip4/" + h.IP + "/tcp/4001" }
	lead := lab.Command(lab.Hosts[0], "timeout", "600", exe, "bench", "allreduce", "--procs", strconv.Itoa(len(lab.Hosts)),
		"--mib", mib, "--rounds", strconv.Itoa(rounds), "--json", "--listen", listen(lab.Hosts[0]))
	lead.Env = append(os.Environ(), runMainEnv+"=1")
	stderr, err := lead.StderrPipe()
	if err != nil {
		return 0, err
	}
	var out strings.Builder
	lead.Stdout = &out
	if err := lead.Start(); err != nil {
		return 0, err
	}
	defer lead.Process.Kill()
	addr := ""
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 5 && f[3] == "--join" {
			addr = f[4]
			break
		}
	}
	go io.Copy(io.Discard, stderr)
	if addr == "" {
		return 0, fmt.Errorf("the leader printed no join address")
	}
	var joins []*exec.Cmd
	for _, h := range lab.Hosts[1:] {
		c := lab.Command(h, "timeout", "600", exe, "bench", "allreduce", "--join", addr, "--json", "--listen", listen(h))
		c.Env = append(os.Environ(), runMainEnv+"=1")
		if err := c.Start(); err != nil {
			return 0, err
		}
		joins = append(joins, c)
	}
	for _, c := range joins {
		c.Wait()
	}
	if err := lead.Wait(); err != nil {
		return 0, fmt.Errorf("leader: %v: %s", err, out.String())
	}
	var ms []struct {
		Seconds float64 `json:"seconds_per_round"`
		Error   string  `json:"error"`
	}
	if err := json.Unmarshal([]byte(out.String()), &ms); err != nil {
		return 0, fmt.Errorf("leader said %q: %v", out.String(), err)
	}
	worst := 0.0
	for _, m := range ms {
		if m.Error != "" {
			return 0, errors.New(m.Error)
		}
		worst = max(worst, m.Seconds)
	}
	return worst, nil
}

var stepLineRe = regexp.MustCompile(`^time=(\S+) level=DEBUG msg=step step=(\d+) `)

// stepDurations are the times between a node's consecutive applied
// steps, from its debug log, skipping the first skip steps (first
// rounds measure the links and set their deadlines).
func stepDurations(log string, skip int) []float64 {
	var out []float64
	var last time.Time
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := stepLineRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		step, _ := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		if step > skip+1 && !last.IsZero() {
			out = append(out, at.Sub(last).Seconds())
		}
		last = at
	}
	return out
}

var phaseLineRe = regexp.MustCompile(`(?m)msg="step times" step=(\d+) (.*)$`)

// stepPhases reads the node's "step times" debug lines (past the first
// skip steps): seconds per phase (compute, wait, match, transfer,
// verify, apply, log), one value per step.
func stepPhases(log string, skip int) map[string][]float64 {
	out := map[string][]float64{}
	for _, m := range phaseLineRe.FindAllStringSubmatch(log, -1) {
		if step, _ := strconv.Atoi(m[1]); step <= skip+1 {
			continue
		}
		for _, kv := range strings.Fields(m[2]) {
			k, v, ok := strings.Cut(kv, "=")
			d, err := time.ParseDuration(v)
			if ok && err == nil {
				out[k] = append(out[k], d.Seconds())
			}
		}
	}
	return out
}

// glooInLab runs scripts/bench/gloo_allreduce.py on every host of the
// lab, one process each, all-reducing a vector of the given bytes, and
// returns rank 0's median seconds per all-reduce.
func glooInLab(lab *netlab.Lab, vector float64) (float64, error) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		return 0, err
	}
	script, err := filepath.Abs("../../scripts/bench/gloo_allreduce.py")
	if err != nil {
		return 0, err
	}
	if err := exec.Command(py, "-c", "import torch.distributed").Run(); err != nil {
		return 0, fmt.Errorf("no torch.distributed: %v", err)
	}
	master := lab.Hosts[0].IP + ":29500"
	mib := strconv.FormatFloat(vector/(1<<20), 'f', 4, 64)
	var wg sync.WaitGroup
	outs := make([][]byte, len(lab.Hosts))
	errs := make([]error, len(lab.Hosts))
	for i, h := range lab.Hosts {
		cmd := lab.Command(h, "timeout", "300", py, script, "--world", strconv.Itoa(len(lab.Hosts)), "--rank", strconv.Itoa(i),
			"--master", master, "--iface", "eth0", "--mib", mib, "--rounds", "10", "--json")
		cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp", "OMP_NUM_THREADS=1")
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("rank %d: %v: %s", i, err, outs[i])
		}
	}
	var r struct {
		Seconds float64 `json:"seconds_per_round"`
	}
	lines := strings.Split(strings.TrimSpace(string(outs[0])), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return 0, fmt.Errorf("rank 0 said %q: %v", outs[0], err)
	}
	return r.Seconds, nil
}
