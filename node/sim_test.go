//go:build sim

package node

// The swarm simulator: whole nodes in one process over memSwarm's
// streams, with home-internet links and churn, on the virtual clock of
// testing/synctest. Inside a synctest bubble every time.Now, timer and
// ticker (the nodes' clock is the wall clock, which the bubble fakes)
// reads a clock that stands still while any goroutine of the bubble can
// run and jumps to the next timer when all of them are blocked: an hour
// of swarm time costs only the CPU the nodes spend. CPU work (forward,
// backward, encoding) takes no virtual time, so each node's minibatch is
// given a compute time drawn from a spread (simCompute).
//
//	go test -tags sim -run TestSim -v -timeout 60m ./node/ -args -sim.sizes 16,64
//
// What it models and what not: docs/ARCHITECTURE.md ("The simulator").

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/trainer"
)

var (
	simSizes   = flag.String("sim.sizes", "16,64", "swarm sizes simulated with whole nodes, comma-separated")
	simModes   = flag.String("sim.modes", "exact,moshpit", "averaging modes: exact (one group), moshpit (groups of -sim.group)")
	simGroup   = flag.Int("sim.group", 8, "Moshpit's maximum group")
	simSteps   = flag.Int("sim.steps", 12, "optimizer steps per run")
	simSession = flag.Duration("sim.session", 2*time.Minute, "a peer's mean session: one peer leaves and one joins every session/N of virtual time; 0: no churn")
	simOut     = flag.String("sim.out", "", "append the results as markdown rows to this file")
)

// gossipD is gossipsub's mesh degree (go-libp2p-pubsub's default D).
// The simulated bus hands every message to every peer directly; what a
// peer would send on gossipsub is counted as the mesh would carry it:
// D copies of what it publishes, D−1 of every message it receives.
const gossipD = 6

// simLinks draws each peer's home link: an uplink of 10–100 Mbit/s
// (log-uniform) and an access latency of 5–75 ms, so that a link
// between two peers has a one-way latency of 10–150 ms.
type simLinks struct {
	mu     sync.Mutex
	rng    *rand.Rand
	uplink map[peer.ID]float64       // bytes per second
	access map[peer.ID]time.Duration // half a link's one-way latency
}

func newSimLinks(seed uint64) *simLinks {
	return &simLinks{rng: rand.New(rand.NewPCG(seed, 1)), uplink: map[peer.ID]float64{}, access: map[peer.ID]time.Duration{}}
}

func (l *simLinks) add(p peer.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	mbit := 10 * math.Pow(10, l.rng.Float64()) // 10–100 Mbit/s
	l.uplink[p] = mbit * 1e6 / 8
	l.access[p] = 5*time.Millisecond + time.Duration(l.rng.Int64N(int64(70*time.Millisecond)))
}

func (l *simLinks) between(from, to peer.ID) gossip.Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	return gossip.Link{Latency: l.access[from] + l.access[to], Uplink: l.uplink[from]}
}

// simTraffic counts what each peer sends, by kind.
type simTraffic struct {
	mu      sync.Mutex
	gossip  map[peer.ID]int64                 // on gossipsub's mesh (gossipD copies)
	publish map[peer.ID]int64                 // what the peer itself published, once
	streams map[peer.ID]map[protocol.ID]int64 // stream frames, by protocol
}

func newSimTraffic() *simTraffic {
	return &simTraffic{gossip: map[peer.ID]int64{}, publish: map[peer.ID]int64{}, streams: map[peer.ID]map[protocol.ID]int64{}}
}

func (c *simTraffic) frame(ev gossip.FrameEvent, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.streams[ev.From]
	if m == nil {
		m = map[protocol.ID]int64{}
		c.streams[ev.From] = m
	}
	m[ev.Proto] += int64(size)
}

// control is p's control traffic: gossip on the mesh, matchmaking, hellos
// and the digests members cross-check; data is the all-reduce, repairs
// and state downloads.
func (c *simTraffic) control(p peer.ID) (control, published, data int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	control, published = c.gossip[p], c.publish[p]
	for proto, b := range c.streams[p] {
		switch proto {
		case gossip.ProtoMatch, gossip.ProtoHello, gossip.ProtoDigest:
			control += b
		default:
			data += b
		}
	}
	return control, published, data
}

// simSwarm is a memSwarm whose streams run over simLinks and whose
// gossip arrives after the link's latency.
type simSwarm struct {
	*memSwarm
	links   *simLinks
	traffic *simTraffic
	busMu   sync.Mutex
	buses   map[peer.ID]*simBus
}

func newSimSwarm(seed uint64) *simSwarm {
	s := &simSwarm{memSwarm: newMemSwarm(), links: newSimLinks(seed), traffic: newSimTraffic(), buses: map[peer.ID]*simBus{}}
	s.streams.Timeout = DefaultConfig().FrameTimeout
	s.streams.Links = s.links.between
	s.streams.Sent = s.traffic.frame
	return s
}

// simNode is a memNode with the simulated bus.
type simNode struct {
	*memNode
	sim *simSwarm
}

func (s *simSwarm) add() *simNode {
	n := &simNode{memNode: s.memSwarm.add(), sim: s}
	s.links.add(n.Self())
	return n
}

type simBus struct {
	node    *simNode
	run     string
	gate    gossip.Gate
	deliver func(peer.ID, gossip.Message)
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex // one delivery at a time, as from one subscription
}

func (n *simNode) Bus(ctx context.Context, run string, gate gossip.Gate, deliver func(peer.ID, gossip.Message)) (Publisher, error) {
	b := &simBus{node: n, run: run, gate: gate, deliver: deliver}
	b.ctx, b.cancel = context.WithCancel(ctx)
	n.sim.busMu.Lock()
	n.sim.buses[n.Self()] = b
	n.sim.busMu.Unlock()
	return b, nil
}

func (b *simBus) Close() { b.cancel() }

// Publish hands m to every other live peer of the run after the link's
// latency, through the decoding and gate a gossipsub validator applies.
func (b *simBus) Publish(ctx context.Context, m gossip.Message) error {
	data, err := gossip.Encode(m)
	if err != nil {
		return err
	}
	s, self := b.node.sim, b.node.Self()
	if b.node.isClosed() {
		return errors.New("simswarm: closed")
	}
	s.busMu.Lock()
	var to []*simBus
	for p, o := range s.buses {
		if p != self && o.run == b.run && o.ctx.Err() == nil && !o.node.isClosed() {
			to = append(to, o)
		}
	}
	s.busMu.Unlock()
	size := int64(len(data))
	s.traffic.mu.Lock()
	s.traffic.publish[self] += size
	s.traffic.gossip[self] += size * gossipD
	for _, o := range to {
		s.traffic.gossip[o.node.Self()] += size * (gossipD - 1)
	}
	s.traffic.mu.Unlock()
	for _, o := range to {
		got, err := gossip.Decode(data)
		if err != nil || !o.gate.Pass(self, got) {
			continue
		}
		time.AfterFunc(s.links.between(self, o.node.Self()).Latency, func() {
			o.mu.Lock()
			defer o.mu.Unlock()
			if o.ctx.Err() == nil && !o.node.isClosed() {
				o.deliver(self, got)
			}
		})
	}
	return nil
}

func (n *memNode) isClosed() bool {
	n.sw.mu.Lock()
	defer n.sw.mu.Unlock()
	return n.closed
}

// simCompute gives each minibatch a compute time: the virtual clock does
// not see the CPU.
type simCompute struct {
	trainer.Model
	d time.Duration
}

func (m simCompute) ComputeGradients(x []float32, y []uint8) (float32, error) {
	time.Sleep(m.d)
	return m.Model.ComputeGradients(x, y)
}

// simRun is one simulated swarm.
type simRun struct {
	t       *testing.T
	sw      *simSwarm
	data    string
	n       int
	mode    string
	steps   int
	rng     *rand.Rand
	mu      sync.Mutex
	nodes   []*simPeer // every peer ever started
	left    int
	started time.Time
}

type simPeer struct {
	*running
	id      peer.ID
	net     *simNode
	compute time.Duration
	leaving bool
}

func (r *simRun) config(join string) Config {
	cfg := DefaultConfig()
	cfg.Dir = r.t.TempDir()
	cfg.DataDir = r.data
	cfg.Listen = nil
	cfg.Run.Model.Hidden = []int{8}
	cfg.Run.Optimizer.Steps = r.steps
	cfg.Run.Optimizer.Warmup = 1
	cfg.Run.Compute.Batch = 16
	// Two minibatches per peer and step at any size: a step's compute
	// stays the same, what grows is the swarm's coordination.
	cfg.Run.Optimizer.TargetBatch = 32 * r.n
	cfg.Linger = 5 * time.Second
	if r.mode == "moshpit" {
		cfg.Run.Averaging.MaxGroup = *simGroup
		cfg.Run.Averaging.Codec = "fp32"
	}
	if join != "" {
		cfg.Join = []string{join}
	}
	if os.Getenv("SWARMTRAIN_TEST_LOG") != "" {
		cfg.Log = os.Stderr
	}
	return cfg
}

// start starts a node; join is a peer's address ("" starts the swarm).
func (r *simRun) start(join string, minPeers int) *simPeer {
	net := r.sw.add()
	cfg := r.config(join)
	cfg.Network = net
	cfg.MinPeers = minPeers
	n, err := New(cfg)
	if err != nil {
		r.t.Error(err) // maybe on the churn goroutine: no Fatal
		return nil
	}
	// 50–200 ms a minibatch of 16: a CPU or a small GPU on a toy model
	// with its framework's overhead.
	r.mu.Lock()
	d := 50*time.Millisecond + time.Duration(r.rng.Int64N(int64(150*time.Millisecond)))
	r.mu.Unlock()
	n.local.model = simCompute{n.local.model, d}
	p := &simPeer{running: run(r.t, n), id: n.ID(), net: net, compute: d}
	r.mu.Lock()
	r.nodes = append(r.nodes, p)
	r.mu.Unlock()
	return p
}

// live returns the peers started and not sent away.
func (r *simRun) live() []*simPeer {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*simPeer
	for _, p := range r.nodes {
		if !p.leaving {
			out = append(out, p)
		}
	}
	return out
}

// churn sends a random peer away (a clean leave or a crash, in turns)
// and starts a newcomer through another, every `every`, until stop.
func (r *simRun) churn(every time.Duration, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
		live := r.live()
		if len(live) < 3 {
			continue
		}
		r.mu.Lock()
		gone := live[r.rng.IntN(len(live))]
		gone.leaving = true
		r.left++
		via := live[r.rng.IntN(len(live))]
		for via == gone {
			via = live[r.rng.IntN(len(live))]
		}
		r.mu.Unlock()
		if i%2 == 1 {
			gone.net.Close() // a crash: its streams break, nothing is announced
		}
		gone.cancel()
		if r.start(via.net.Addr(), 1) == nil {
			return
		}
	}
}

// simResult is one row of the table.
type simResult struct {
	n, joined, left, steps    int
	virtual                   time.Duration // from start to the last finisher's last step
	stepsPerMin               float64
	controlPerStep, published float64 // bytes per peer per step
	dataPerStep               float64
	rounds                    float64 // mean rounds per finisher
	states                    int     // distinct final hashes among finishers
	spread                    float64 // max over parameters of (max − min) across finishers
	finishers                 int
	wall, cpu                 time.Duration
}

func (r *simRun) run() simResult {
	t := r.t
	r.started = time.Now()
	first := r.start("", r.n)
	for range r.n - 1 {
		r.start(first.net.Addr(), r.n)
	}
	stop := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		if *simSession > 0 {
			r.churn(*simSession/time.Duration(r.n), stop)
		}
	}()
	// Churn until four steps before the end: a newcomer needs peers to
	// download the state from, and the end needs a swarm that stays.
	for {
		if first.n.currentStep()+4 >= uint64(r.steps) || isDone(first.done) {
			break
		}
		time.Sleep(time.Second)
	}
	close(stop)
	<-churned
	var fin []*simPeer
	for _, p := range r.live() {
		select {
		case <-p.done:
		case <-time.After(time.Hour):
			t.Fatalf("%s still running after an hour of virtual time (phase %s, step %d)", p.id, p.n.Status().Phase, p.n.Status().Step)
		}
		if p.err != nil {
			t.Fatalf("%s: %v", p.id, p.err)
		}
		fin = append(fin, p)
	}
	res := simResult{n: r.n, joined: len(r.nodes) - r.n, left: r.left, steps: r.steps, finishers: len(fin)}
	var end time.Time
	hashes := map[string]bool{}
	var ctrl, pub, data float64
	for _, p := range fin {
		p.n.mu.Lock()
		if e := p.n.stats.trainEnd; e.After(end) {
			end = e
		}
		p.n.mu.Unlock()
		hashes[p.res.Hash] = true
		res.rounds += float64(p.res.Rounds)
		c, pb, d := r.sw.traffic.control(p.id)
		ctrl, pub, data = ctrl+float64(c), pub+float64(pb), data+float64(d)
	}
	k := float64(len(fin) * r.steps)
	res.controlPerStep, res.published, res.dataPerStep = ctrl/k, pub/k, data/k
	res.rounds /= float64(len(fin))
	res.states = len(hashes)
	res.virtual = end.Sub(r.started)
	res.stepsPerMin = float64(r.steps) / res.virtual.Minutes()
	res.spread = spread(fin)
	for _, p := range fin {
		if p.res.Step != uint64(r.steps) {
			t.Errorf("%s ended at step %d of %d", p.id, p.res.Step, r.steps)
		}
	}
	return res
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// spread is the largest difference of one parameter between two
// finishers: zero when they hold one state.
func spread(ps []*simPeer) float64 {
	var lo, hi []float32
	for _, p := range ps {
		p.n.mu.Lock()
		v := p.n.rep.params
		if lo == nil {
			lo, hi = slices.Clone(v), slices.Clone(v)
		}
		for i, x := range v {
			lo[i], hi[i] = min(lo[i], x), max(hi[i], x)
		}
		p.n.mu.Unlock()
	}
	var s float64
	for i := range lo {
		s = max(s, float64(hi[i]-lo[i]))
	}
	return s
}

func TestSim(t *testing.T) {
	data := tinyData(t)
	var rows []string
	for _, f := range strings.Split(*simSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			t.Fatalf("-sim.sizes: %q is not a swarm size", f)
		}
		for _, mode := range strings.Split(*simModes, ",") {
			t.Run(fmt.Sprintf("%s-%d", mode, n), func(t *testing.T) {
				began, cpu := time.Now(), processCPU()
				var res simResult
				synctest.Test(t, func(t *testing.T) {
					r := &simRun{t: t, sw: newSimSwarm(uint64(n)), data: data, n: n, mode: mode, steps: *simSteps, rng: rand.New(rand.NewPCG(uint64(n), 2))}
					res = r.run()
				})
				res.wall, res.cpu = time.Since(began), processCPU()-cpu
				row := fmt.Sprintf("| %s | %d | %d/%d | %d | %.1f | %.0f | %.1f | %.0f | %.2f | %d | %.2g | %.0f s |",
					mode, n, res.joined, res.left, res.finishers, res.stepsPerMin, res.controlPerStep/1e3, res.published/1e3, res.dataPerStep/1e3,
					res.rounds/float64(res.steps), res.states, res.spread, res.cpu.Seconds())
				t.Log(row)
				rows = append(rows, row)
				if mode == "exact" && res.states != 1 {
					t.Errorf("exact groups ended on %d states", res.states)
				}
			})
		}
	}
	sort.Strings(rows)
	head := "| mode | peers | joined/left | finishers | steps per virtual min | control KB per peer per step (gossipsub D=6) | published KB per peer per step | all-reduce+state KB per peer per step | rounds per step | final states | parameter spread | CPU |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
	t.Log("\n" + head + "\n" + strings.Join(rows, "\n"))
	if *simOut != "" {
		f, err := os.OpenFile(*simOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintln(f, strings.Join(rows, "\n"))
	}
}

// TestSimMoshpitCore runs Moshpit's protocol core alone at every size
// (the grid the nodes use, allreduce.NewMoshpitGrid, and the group
// mean), without nodes: how many rounds until a change made at one peer
// reaches every peer, and until every peer is within 1% of the swarm's
// mean, with churn (a share of the peers replaced every round by
// newcomers that download a random peer's state).
func TestSimMoshpitCore(t *testing.T) {
	var rows []string
	for _, n := range []int{16, 64, 256, 1000} {
		for _, g := range []int{4, 8, 16} {
			for _, churn := range []float64{0, 0.01} {
				reach, mix, grid := moshpitCore(n, g, churn, 20)
				bound := int(math.Ceil(math.Log(float64(n))/math.Log(float64(g)))) + 1
				rows = append(rows, fmt.Sprintf("| %d | %d | %.0f%% | %s | %d | %d | %d |", n, g, churn*100, sidesString(grid.Sides), bound, reach, mix))
				switch {
				case reach < 0:
					t.Errorf("N=%d, groups of %d, churn %g: the change never reached every peer", n, g, churn)
				case churn == 0 && n == product(grid.Sides) && reach != grid.Dims:
					// A full grid averages out one dimension a round.
					t.Errorf("N=%d, groups of %d: a change reached every peer of a full %d-dimensional grid after %d rounds", n, g, grid.Dims, reach)
				}
			}
		}
	}
	t.Log("\n| peers | max group | churn per round | grid (side×dims) | ⌈log_g N⌉+1 | rounds to reach every peer (worst of 20 sources) | rounds to within 1% of the mean |\n|---|---|---|---|---|---|---|\n" + strings.Join(rows, "\n"))
	if *simOut != "" {
		f, err := os.OpenFile(*simOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintln(f, strings.Join(rows, "\n"))
	}
}

// moshpitCore returns, worst over `sources` peers that make the change
// (each starting at a different round), the rounds until every peer
// holds part of it and until every peer is within 1% of the mean.
func moshpitCore(n, g int, churn float64, sources int) (reach, mix int, grid allreduce.MoshpitGrid) {
	const run = "sim"
	rng := rand.New(rand.NewPCG(uint64(n), uint64(g)))
	id := func() peer.ID { return peer.ID(fmt.Sprintf("peer-%016x", rng.Uint64())) }
	for s := range sources {
		peers := make([]peer.ID, n)
		x := map[peer.ID]float64{}
		for i := range peers {
			peers[i] = id()
			x[peers[i]] = 0
		}
		x[peers[rng.IntN(n)]] = float64(n) // the mean is 1
		reached := 0
		grid = allreduce.NewMoshpitGrid(run, peers, g)
		for r := uint64(s); ; r++ {
			for _, grp := range grid.Groups(r) {
				var sum float64
				for _, p := range grp {
					sum += x[p]
				}
				for _, p := range grp {
					x[p] = sum / float64(len(grp))
				}
			}
			// Churn: leavers take their share with them; newcomers copy a
			// random peer's state.
			for range int(math.Round(churn * float64(n))) {
				i := rng.IntN(len(peers))
				delete(x, peers[i])
				p := id()
				x[p] = x[peers[rng.IntN(len(peers))]]
				if _, ok := x[p]; !ok {
					x[p] = 0 // copied the leaver: it had left
				}
				peers[i] = p
			}
			if churn > 0 {
				grid = allreduce.NewMoshpitGrid(run, peers, g)
			}
			rounds := int(r-uint64(s)) + 1
			var mean float64
			all := true
			for _, p := range peers {
				mean += x[p]
				all = all && x[p] > 0
			}
			mean /= float64(len(peers))
			if all && reached == 0 {
				reached = rounds
				reach = max(reach, rounds)
			}
			within := true
			for _, p := range peers {
				within = within && math.Abs(x[p]-mean) <= 0.01*mean
			}
			if within && reached > 0 {
				mix = max(mix, rounds)
				break
			}
			if rounds > 200 {
				return -1, -1, grid // never mixes: say so rather than loop
			}
		}
	}
	return reach, mix, grid
}

// sidesString writes a grid's shape as 10×10×10.
func sidesString(sides []int) string {
	parts := make([]string, len(sides))
	for i, s := range sides {
		parts[i] = strconv.Itoa(s)
	}
	return strings.Join(parts, "×")
}

// product multiplies a grid's sides: its peer count when full.
func product(sides []int) int {
	p := 1
	for _, s := range sides {
		p *= s
	}
	return p
}
