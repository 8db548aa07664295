//go:build netns

package main

import (
	"flag"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/netlab"
	"github.com/swarmtrain/swarmtrain/node"
)

// The slow-link suite: real node processes in network namespaces whose
// links are shaped to a volunteer's uplink (tc tbf) with 30 ms of one-way
// delay (netlab's NFQUEUE delayer), over TCP only, QUIC only, or both.
// It needs root:
//
//	sudo go test -tags netns -run TestSlowLinks -v -timeout 4h ./cmd/swarmtrain/ -args -slow.reps=10
//	sudo go test -tags netns -run 'TestSlowMember|TestLinkCut' -v -timeout 30m ./cmd/swarmtrain/

var (
	slowReps  = flag.Int("slow.reps", 1, "runs of each slow-link case, each also with one core kept busy by another process (the acceptance run uses 10)")
	slowSteps = flag.Int("slow.steps", 30, "optimizer steps of each slow-link run")
	slowCases = flag.String("slow.cases", "", "comma-separated case names to run (empty: all)")
)

// labSwarm describes one run in the lab.
type labSwarm struct {
	n      int
	listen string             // "tcp", "quic" or "both"
	rate   func(i int) string // tc rate of host i's uplink
	delay  time.Duration      // one-way, on every host
	args   []string           // run flags beyond the defaults
	steps  int
	setup  func(*netlab.Lab, *netlab.Host) error // run in each host's namespace before its node starts (nil: nothing)
}

// listenAddrs are host h's listen multiaddrs for mode.
func listenAddrs(h *netlab.Host, mode string) string {
	tcp, quic := "/ip4/"+h.IP+"/tcp/4001", "/ip4/"+h.IP+"/udp/4001/quic-v1"
	switch mode {
	case "tcp":
		return tcp
	case "quic":
		return quic
	}
	return tcp + "," + quic
}

// start builds the lab and starts every node; the first one is the
// others' join address.
func (s labSwarm) start(t *testing.T) (*netlab.Lab, []*labNode) {
	t.Helper()
	lab := s.lab(t)
	dir := t.TempDir()
	nodes := make([]*labNode, s.n)
	var join string
	for i, h := range lab.Hosts {
		ln := &labNode{host: h, http: h.IP + ":8080"}
		// --open: QUIC cannot carry a swarm key, and TCP against QUIC
		// compares the transports, not the key's cipher.
		args := append([]string{"--http", ln.http, "--shard", fmt.Sprintf("%d/%d", i, s.n), "--steps", strconv.Itoa(s.steps),
			"--min-peers", strconv.Itoa(s.n), "--linger", "10s", "--open"}, s.args...)
		if join != "" {
			args = append(args, "--join", join)
		}
		inNS := func(name string, args ...string) *exec.Cmd { return lab.Command(h, name, args...) }
		ln.proc = startNodeWith(t, filepath.Join(dir, fmt.Sprintf("n%d", i)), listenAddrs(h, s.listen), inNS, args...)
		if join == "" {
			join = ln.info().Addrs[0]
		}
		nodes[i] = ln
	}
	return lab, nodes
}

// lab builds the lab: s.n hosts, each uplink shaped to s.rate and
// delayed by s.delay; it is deleted when the test ends.
func (s labSwarm) lab(t *testing.T) *netlab.Lab {
	t.Helper()
	if err := netlab.DelayAvailable(); err != nil {
		t.Skip(err)
	}
	lab, err := netlab.New(s.n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	for i, h := range lab.Hosts {
		if err := lab.Limit(h, s.rate(i)); err != nil {
			t.Fatal(err)
		}
		if s.delay > 0 {
			if err := lab.Delay(h, s.delay); err != nil {
				t.Fatal(err)
			}
		}
		if s.setup != nil {
			if err := s.setup(lab, h); err != nil {
				t.Fatal(err)
			}
		}
	}
	return lab
}

// finish waits for every node and checks the run's promises: each ends
// at the last step on one state, and no run of failed rounds lasted
// longer than the deadline of the round that ended it.
func (s labSwarm) finish(t *testing.T, nodes []*labNode) []node.Result {
	t.Helper()
	res := make([]node.Result, len(nodes))
	for i, ln := range nodes {
		if err := ln.wait(20 * time.Minute); err != nil {
			t.Fatalf("node %d: %v\n%s\n%s", i, err, ln.stderr, story(ln.log()))
		}
		res[i] = ln.result()
		if res[i].Step != uint64(s.steps) {
			t.Errorf("node %d finished at step %d, want %d", i, res[i].Step, s.steps)
		}
		if res[i].Hash != res[0].Hash {
			t.Errorf("node %d ended with state %s, node 0 with %s", i, res[i].Hash, res[0].Hash)
		}
		for _, r := range recoveries(ln.log()) {
			if r.failing > r.deadline {
				t.Errorf("node %d: rounds failed for %v in a row (%d rounds), longer than the deadline %v", i, r.failing, r.rounds, r.deadline)
			}
		}
	}
	if t.Failed() {
		for i, ln := range nodes {
			t.Logf("node %d (%s):\n%s", i, ln.host.IP, story(ln.log()))
		}
	}
	return res
}

type recovery struct {
	rounds            int
	failing, deadline time.Duration
}

var recoveredRe = regexp.MustCompile(`msg="averaging recovered".* failed_rounds=(\d+) failing_for=(\S+) deadline=(\S+)`)

// recoveries reads a node log's "averaging recovered" lines.
func recoveries(log string) []recovery {
	var out []recovery
	for _, m := range recoveredRe.FindAllStringSubmatch(log, -1) {
		k, _ := strconv.Atoi(m[1])
		f, err1 := time.ParseDuration(m[2])
		d, err2 := time.ParseDuration(m[3])
		if err1 == nil && err2 == nil {
			out = append(out, recovery{k, f, d})
		}
	}
	return out
}

// stepTime is the swarm's step time: the median of its nodes'.
func stepTime(res []node.Result) float64 {
	var xs []float64
	for _, r := range res {
		xs = append(xs, r.SecondsPerStep)
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// busyCore keeps one core spinning in another process until the test ends.
func busyCore(t *testing.T) {
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// TestSlowLinks is the slow-link acceptance: 4 and 6 nodes on 10 Mbit/s
// uplinks with 30 ms of delay, TCP only against QUIC only, fp32 (and
// int8 at 4 nodes), each run repeated -slow.reps times idle and as many
// with one core kept busy. Every run must end on one hash with no run of
// failed rounds longer than a deadline, and TCP's step time must be
// within 1.2x of QUIC's.
func TestSlowLinks(t *testing.T) {
	tenMbit := func(int) string { return "10mbit" }
	times := map[string][]float64{}
	type slowCase struct {
		name string
		n    int
		busy bool
		spec labSwarm
	}
	var cases []slowCase
	var names []string
	for _, n := range []int{4, 6} {
		for _, codec := range []string{"fp32", "int8"} {
			if codec == "int8" && n != 4 {
				continue
			}
			for _, busy := range []bool{false, true} {
				for _, listen := range []string{"tcp", "quic"} {
					name := fmt.Sprintf("%dnodes/%s/%s", n, codec, listen)
					if busy {
						name += "/busy"
					}
					if *slowCases != "" && !slices.Contains(strings.Split(*slowCases, ","), name) {
						continue
					}
					names = append(names, name)
					cases = append(cases, slowCase{name, n, busy, labSwarm{n: n, listen: listen, rate: tenMbit, delay: 30 * time.Millisecond, steps: *slowSteps, args: []string{"--codec", codec}}})
				}
			}
		}
	}
	// Repetitions outermost, so TCP and QUIC runs alternate: the
	// machine's speed drifts over minutes.
	for rep := range *slowReps {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%d", c.name, rep), func(t *testing.T) {
				if c.busy {
					busyCore(t)
				}
				_, nodes := c.spec.start(t)
				res := c.spec.finish(t, nodes)
				st := stepTime(res)
				times[c.name] = append(times[c.name], st)
				var failed int
				for _, r := range res {
					failed += r.Failed
				}
				t.Logf("%s rep %d: %.2f s/step, %d failed rounds over %d nodes, own part %.3f of the vector", c.name, rep, st, failed, c.n, res[0].PartShare)
			})
		}
	}
	mean := func(xs []float64) float64 {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	for _, name := range names {
		t.Logf("%-24s %d runs: mean %.2f s/step (min %.2f, max %.2f)", name, len(times[name]), mean(times[name]), slices.Min(append([]float64{math.Inf(1)}, times[name]...)), slices.Max(append([]float64{0}, times[name]...)))
	}
	for _, name := range names {
		if !strings.Contains(name, "/tcp") {
			continue
		}
		quic := strings.Replace(name, "/tcp", "/quic", 1)
		if len(times[name]) == 0 || len(times[quic]) == 0 {
			continue
		}
		ratio := mean(times[name]) / mean(times[quic])
		t.Logf("%s against QUIC: %.2fx", name, ratio)
		if ratio > 1.2 {
			t.Errorf("%s: TCP's step time is %.2fx QUIC's, want at most 1.2x", name, ratio)
		}
	}
}

// TestSlowMember: one member on a 2 Mbit/s uplink among 100 Mbit/s
// peers. Rounds complete, its part shrinks to (nearly) nothing, and the
// step time is within 1.3x of what its link needs for its share: its
// copies of the others' parts plus its average to each of them.
func TestSlowMember(t *testing.T) {
	const n, slow = 4, 3
	spec := labSwarm{n: n, listen: "tcp", delay: 30 * time.Millisecond, steps: *slowSteps,
		rate: func(i int) string {
			if i == slow {
				return "2mbit"
			}
			return "100mbit"
		}}
	_, nodes := spec.start(t)
	res := spec.finish(t, nodes)
	share := res[slow].PartShare
	if share > 0.5/n {
		t.Errorf("the 2 Mbit/s member owns %.3f of the vector, want well under an even %.3f", share, 1.0/n)
	}
	vector := 4 * float64(res[slow].Params) // fp32 bytes
	bound := vector * (1 + (n-2)*share) / (2e6 / 8)
	st := stepTime(res)
	t.Logf("2 Mbit/s member: part %.3f of the vector, %.2f s/step; its link needs %.2f s for its share: %.2fx", share, st, bound, st/bound)
	if st > 1.3*bound {
		t.Errorf("step time %.2f s is %.2fx the %.2f s the slow link needs, want at most 1.3x", st, st/bound, bound)
	}
}

// TestLinkCut: a member's link is cut for 30 s mid-run and restored.
// The others go on without it; once the link is back, all four average
// together again within two round deadlines, and the run ends on one
// state.
func TestLinkCut(t *testing.T) {
	const n, victim = 4, 3
	// With --min-group 2 the cut-off member waits instead of racing
	// through the run alone (its rounds fail, then it waits for a group).
	spec := labSwarm{n: n, listen: "tcp", delay: 30 * time.Millisecond, steps: max(*slowSteps, 250),
		rate: func(int) string { return "10mbit" }, args: []string{"--min-group", "2"}}
	lab, nodes := spec.start(t)
	// together reports whether every node's last round had all n members,
	// and the longest deadline among them.
	together := func() (bool, []int, time.Duration) {
		all := true
		groups := make([]int, n)
		var deadline time.Duration
		for i, ln := range nodes {
			st, err := ln.status(lab)
			if err != nil {
				select {
				case <-ln.done: // finished: nothing left to average
				default:
					all = false
				}
				continue
			}
			groups[i] = st.GroupSize
			all = all && (st.GroupSize == n || st.Step >= uint64(spec.steps))
			deadline = max(deadline, time.Duration(st.RoundDeadline*float64(time.Second)))
		}
		return all, groups, deadline
	}
	checkFor(t, 5*time.Minute, 500*time.Millisecond, func() error {
		if ok, groups, _ := together(); !ok {
			return fmt.Errorf("groups %v: not all averaging together yet", groups)
		}
		if st, err := nodes[0].status(lab); err != nil || st.Step < 10 {
			return fmt.Errorf("not at step 10 yet")
		}
		return nil
	})
	if err := lab.Cut(lab.Hosts[victim]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Second)
	_, during, _ := together()
	if err := lab.Restore(lab.Hosts[victim]); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	t.Logf("link of node %d restored after 30 s; last groups then %v", victim, during)
	for {
		ok, groups, deadline := together()
		if ok {
			took := time.Since(restored)
			t.Logf("all %d averaging together %v after the restore (longest deadline %v)", n, took.Round(100*time.Millisecond), deadline)
			if took > 2*deadline {
				t.Errorf("all %d together only %v after the restore, over two deadlines (%v)", n, took, 2*deadline)
			}
			break
		}
		if time.Since(restored) > 5*time.Minute {
			for i, ln := range nodes {
				lines := strings.Split(ln.log(), "\n")
				t.Logf("node %d, the end of its log:\n%s", i, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
			t.Fatalf("groups %v 5 minutes after the restore", groups)
		}
		time.Sleep(250 * time.Millisecond)
	}
	spec.finish(t, nodes)
	t.Logf("node %d around the cut:\n%s", victim, story(nodes[victim].log()))
}
