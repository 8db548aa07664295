package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/gossip/averaging"
	"github.com/swarmtrain/swarmtrain/gossip/statesync"
	"github.com/swarmtrain/swarmtrain/gossip/swarm"
	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
	"github.com/swarmtrain/swarmtrain/node/device"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// Node is one running peer: a network, the run's gossip, the averaging
// protocols and a local trainer, composed into the sync-mode loop:
// accumulate → gossip progress → match → average (the strategy) →
// identical step. The swarm's decisions are package swarm's; how a step
// is averaged is package averaging's.
type Node struct {
	cfg Config
	run string
	log *slog.Logger
	dev device.Info
	net Network
	bus Publisher
	// outside is net's view of how others see us (nil: it has none).
	outside outsideNet
	// finder is net's peer discovery (nil: it has none).
	finder finder
	// clock is cfg.Clock, or the wall clock: all the time the node reads.
	clock clock.Clock

	view     *gossip.Membership
	mm       *allreduce.Matchmaker
	av       *allreduce.Averager
	strategy averaging.Strategy
	// matchedAt is when the latest matchmaking ended, for the step's
	// debug timing (the training loop's alone, as the strategy runs in it).
	matchedAt time.Time
	adm       *gossip.Admission
	admitted  *admitted // peers whose hello was accepted; the gate of streams and gossip
	greets    *greeter  // hellos to gossip authors not admitted yet
	states    *statesync.Server
	http      *httpServer
	dash      *dash // the dashboard's history (nil until Run)
	local     localTrainer
	// lossGuard stops a run whose loss blew up (training loop only).
	lossGuard lossGuard

	// mu guards rep, stats, part, bootstrap and ignored; the training
	// loop is the only writer of rep and part.
	mu    sync.Mutex
	rep   replica
	stats stats
	// part is how much each peer has recently averaged with us: the
	// weight of its word on which state the swarm holds.
	part swarm.Participation
	// bootstrap are the peers we joined through: whom we follow until we
	// have averaged with someone.
	bootstrap []peer.ID
	ignored   map[swarm.Claim]bool // claims already logged as ignored (peer and reason; Step zero)

	download  statesync.Download // verified chunks kept across attempts (training loop only)
	redials   *redialer
	peers     *peerBook // the run's peers heard of, for Dir/peers.json
	refusals  chan string
	resync    atomic.Bool   // set when the swarm's consensus is another state
	wasClient atomic.Bool   // the mode last logged (a node starts as an owner)
	leaving   atomic.Bool   // the leave is announced: we join no more groups
	aheadHint atomic.Uint64 // a step the swarm is known to have reached
	seq       atomic.Uint64
	started   time.Time
	unlock    func()       // releases the node directory
	adv       *adversary   // nil except in the security tests' build
	det       *determinism // nil unless the run is deterministic
}

// localTrainer is this peer's model, optimizer and data. The training
// loop is its only user, except that the model's tensors are read for
// checkpoints.
type localTrainer struct {
	model trainer.Model
	// opt is the replicated optimizer: the run's, or in DiLoCo the outer
	// Nesterov; inner is DiLoCo's local one (the run's optimizer), whose
	// state is this node's own and never served.
	opt, inner trainer.Optimizer
	sched      trainer.Schedule
	train      *trainer.Dataset
	test       *trainer.Dataset
	batcher    *trainer.Batcher
	prep       *trainer.Preprocess // recorded in checkpoints; nil: unknown
	// frozen are the parameter ranges the run leaves untouched.
	frozen     [][2]int
	frozenKeep []float32 // scratch: the frozen values across a step
}

// replica is the replicated state: every member of a round holds the
// same bytes at the same step.
type replica struct {
	step      uint64
	params    []float32
	optState  []float32 // the optimizer's state at step, reused for hashing every step
	hash      string
	lastGroup []peer.ID // the last round's part owners (Moshpit: the grid): next round's candidates
	// lastMembers are every member of the last round we applied, for the
	// log's "group changed" (not state: lastGroup is what is hashed).
	lastMembers []peer.ID
	syncing     bool
	syncTo      uint64 // the step being downloaded, while syncing
}

// stats are what /status and result.json report.
type stats struct {
	phase         string
	loss          float64 // moving average of the training loss
	initialLoss   float64
	samplesPerSec float64
	samples       int64 // computed since start
	rate          rateMeter
	rounds        int
	failedRounds  int
	syncs         int
	rounds0       roundMark // the first round applied
	roundsN       roundMark // the latest round applied
	// failing is the current run of failed rounds (zero: none); longest
	// the longest one that ended, from its first failure to its last.
	failing        failStreak
	longestFailing time.Duration
	partShare      float64 // fraction of the vector we owned in the last all-reduce
	groupSize      int     // members of the last round we averaged in
	largestGroup   int
	partners       map[peer.ID]struct{} // everyone we averaged with
	lastCheckpoint uint64               // step of the last checkpoint written
	// trainStart is when training began, trainEnd when it reached the
	// last step (zero: not yet), compute the time spent computing
	// meanwhile (forward, backward, local steps).
	trainStart, trainEnd time.Time
	compute              time.Duration
}

// Result is what a finished node reports (and writes to result.json).
type Result struct {
	Peer     string  `json:"peer"`
	Run      string  `json:"run"`
	Step     uint64  `json:"step"`
	Hash     string  `json:"hash"`
	Accuracy float64 `json:"accuracy"`
	TestLoss float64 `json:"test_loss"`
	// InitialTestLoss is the test loss of the seeded initial weights,
	// measured before the first step, to show the loss dropped.
	InitialTestLoss float64 `json:"initial_test_loss"`
	Rounds          int     `json:"rounds"`
	Failed          int     `json:"failed_rounds"`
	Syncs           int     `json:"state_syncs"`
	LargestGroup    int     `json:"largest_group"` // most members of any round we averaged in
	Partners        int     `json:"partners"`      // distinct peers we averaged with
	// SecondsPerStep is the mean time between rounds applied, from the
	// first to the last (waiting for peers and loading data excluded).
	SecondsPerStep float64 `json:"seconds_per_step"`
	// LongestFailing is the longest run of failed rounds, from the first
	// failure to the last before a round succeeded again.
	LongestFailing float64 `json:"longest_failing_seconds"`
	// PartShare is the fraction of the vector this node owned in its last
	// gradient all-reduce (0 under Moshpit): parts follow the members'
	// uplinks, so a slow one owns less.
	PartShare float64 `json:"part_share"`
	// ComputeUtilisation is the fraction of the time since training
	// began spent computing (forward, backward, local steps) rather than
	// waiting for rounds, peers or state.
	ComputeUtilisation float64 `json:"compute_utilisation"`
	Params             int     `json:"params"`  // the model's parameter count
	Samples            int64   `json:"samples"` // training samples this node computed

	// Deterministic is, in a deterministic run, "on", or "voided (why)"
	// when a death, a joiner or a state download made it one no other run
	// of the command repeats; ModelHash is then the hash of the step,
	// parameters and optimizer state alone, which two runs of the
	// command share (Hash also covers the last round's peer IDs, new
	// every run unless the node directories' keys are kept).
	Deterministic string `json:"deterministic,omitempty"`
	ModelHash     string `json:"model_hash,omitempty"`

	BytesSent int64   `json:"bytes_sent"`
	BytesRecv int64   `json:"bytes_received"`
	Seconds   float64 `json:"seconds"`
	// Control is the part of BytesSent that was not the model's bytes
	// (traffic.go); nil on a network that does not count it.
	Control *Traffic `json:"control,omitempty"`
	// ControlPerSec is Control's bytes over Seconds.
	ControlPerSec float64 `json:"control_bytes_per_sec,omitempty"`
}

// Info is written to Dir/node.json once the node listens, so a supervisor
// (the demo) can find its join address and HTTP endpoint.
type Info struct {
	Peer  string   `json:"peer"`
	Run   string   `json:"run"`
	Addrs []string `json:"addrs"`
	HTTP  string   `json:"http,omitempty"`
	PID   int      `json:"pid"`
}

// New loads the data, builds the model and starts the network. It does
// not contact any peer yet, unless this machine lacks the run's dataset:
// then it fetches it from the join peers first (NewContext).
func New(cfg Config) (*Node, error) { return NewContext(context.Background(), cfg) }

// NewContext is New; ctx bounds fetching the dataset from peers.
func NewContext(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("node dir: %w", err)
	}
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, clock: gossip.OrWall(cfg.Clock), unlock: unlock, run: cfg.Run.ID(), refusals: make(chan string, 4), ignored: map[swarm.Claim]bool{},
		part: swarm.Participation{Window: participationWindow, Cap: participationCap}}
	ownNet := false // a cfg.Network belongs to the caller
	defer func() {
		if err != nil {
			if ownNet {
				n.net.Close()
			}
			unlock()
		}
	}()
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	logOpts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogJSON {
		n.log = slog.New(slog.NewJSONHandler(logw, logOpts))
	} else {
		n.log = slog.New(slog.NewTextHandler(logw, logOpts))
	}
	n.stats = stats{phase: "starting", partners: map[peer.ID]struct{}{}}
	n.det = newDeterminism(cfg, n.log)
	n.redials = newRedialer(10 * time.Minute)
	n.admitted = newAdmitted(maxAdmitted)
	n.greets = newGreeter()
	n.dev = device.Detect()
	if n.adv, err = loadAdversary(); err != nil {
		return nil, err
	}
	codec, power, err := parseGradientCodec(cfg.Run.Averaging.Codec)
	if err != nil {
		return nil, err
	}
	if power != nil {
		codec = compression.FP32{} // PowerSGD's rounds say their own codecs
	}
	// The network comes before the data: a node without the dataset
	// fetches it from its peers (ensureData).
	if n.net = cfg.Network; n.net == nil {
		if n.net, err = newHostNetwork(cfg, n.admitted.has); err != nil {
			return nil, err
		}
		ownNet = true
	}
	// What the network can tell of how others see us, asked of the
	// network itself (the gate below hides its other methods).
	n.outside, _ = n.net.(outsideNet)
	n.finder, _ = n.net.(finder)
	// Every protocol but hello, now and later, serves admitted peers only.
	n.net = gatedNetwork{Network: n.net, admitted: n.admitted.has, contact: n.onContact}
	self := n.net.Self()
	n.peers = newPeerBook(n.run, self)
	n.view = gossip.NewMembership(self, cfg.PeerExpiry)
	// Only holders of the key reach a keyed node: insiders, who may be
	// told our values of the fields that differ. Without a key anyone
	// may ask, and learns the fields' names alone.
	n.adm = &gossip.Admission{Run: n.run, Config: cfg.Run.JSON(), Insiders: len(cfg.SwarmKey) > 0,
		Admit: n.admitted.add, OnResult: n.onHello, Peers: n.welcomePeers}
	n.adm.Serve(n.net)
	if err := n.ensureData(ctx); err != nil {
		return nil, err
	}
	if err := n.newLocalTrainer(); err != nil {
		return nil, err
	}
	n.serveData()
	np := n.local.model.NumParams()
	n.rep.params = make([]float32, np)
	n.local.model.ReadParams(n.rep.params)
	n.rep.optState = n.local.opt.AppendState(nil)
	n.rep.hash = statesync.HashState(0, n.rep.params, n.rep.optState, nil)

	if n.local.batcher, err = newBatcher(cfg, n.local.train, n.local.test, n.dataSeed()); err != nil {
		return nil, err
	}
	n.log.Info("data", "train", n.local.train.Name, "train_rows", n.local.train.N, "our_rows", n.local.batcher.Rows(), "test_rows", n.local.test.N)
	if d, ok := n.local.model.(interface{ SeedDropout(uint64) }); ok {
		d.SeedDropout(n.dataSeed()) // like the batch order: ours alone
	}

	if n.av, err = n.newAverager(codec); err != nil {
		return nil, err
	}
	sc := averaging.Config{Averager: n.av, NumParams: np, Codec: codec, MaxGroup: cfg.Run.Averaging.MaxGroup, Log: n.log,
		DiLoCo: cfg.Run.DiLoCo(), Overlap: cfg.Run.Averaging.Mode == ModeDiLoCoOverlap}
	if power != nil {
		pc := averaging.PowerSGDConfig{Rank: power.rank, MinMatrix: smallTensor, Seed: cfg.Run.Seed}
		for _, t := range n.local.model.Tensors() {
			pc.Shapes = append(pc.Shapes, t.Shape)
		}
		if power.half {
			pc.Wire = compression.FP16{}
		}
		sc.PowerSGD = &pc
	}
	if n.strategy, err = averaging.New(sc); err != nil {
		return nil, err
	}
	n.mm = allreduce.NewMatchmaker(n.net, allreduce.MatchConfig{Run: n.run, JoinWindow: n.joinWindow(), Clock: n.clock, EvenShares: n.det != nil,
		Uplink: func() (float64, bool) { return n.av.Uplink(), n.client() }, MinGroup: cfg.Run.Averaging.MinGroup, MaxGroup: cfg.Run.Averaging.MaxGroup,
		// A peer suspected of sending different results to different
		// members owns no part of our groups for a while.
		NoPart: func(p peer.ID) bool { return n.av.Penalised(p) }}, matchView{n})
	n.states = statesync.NewServer(n.net, n.run, n.servableStep, n.snapshot, n.clock)
	if cfg.Run.Model.InitFrom != "" {
		switch {
		case cfg.InitPath != "":
			if err := n.initFrom(cfg.InitPath); err != nil {
				return nil, err
			}
		case !fileExists(n.checkpointPath()):
			return nil, fmt.Errorf("the run starts from checkpoint %s: give this node that file with --init-from", cfg.Run.Model.InitFrom)
		}
		// Else a resumed node: its own checkpoint (below) is the state.
	}
	if err := n.resume(); err != nil { // a checkpoint of this run wins
		return nil, err
	}
	return n, nil
}

// newLocalTrainer loads the data and builds the model, the optimizer and
// the schedule.
func (n *Node) newLocalTrainer() (err error) {
	cfg, l := n.cfg, &n.local
	if l.train, l.test, err = LoadData(cfg); err != nil {
		return err
	}
	if l.model, err = trainer.NewModel(cfg.Run.ModelConfig(), l.train); err != nil {
		return err
	}
	l.prep = preprocessOf(cfg, l.train)
	np := l.model.NumParams()
	o := cfg.Run.Optimizer
	if l.opt, err = trainer.NewOptimizer(o.Name, o.Momentum, o.WeightDecay, np); err != nil {
		return err
	}
	if cfg.Run.DiLoCo() {
		// The run's optimizer takes the inner steps; the replicated one
		// is the outer Nesterov step on the averaged pseudo-gradient.
		l.inner = l.opt
		l.opt = trainer.NewNesterov(cfg.Run.Averaging.OuterMomentum, 0, np)
	}
	decay, _ := cfg.Run.decay() // validated
	l.sched = trainer.Schedule{Base: o.LR, Min: o.LR / trainer.MinLRDivisor, Warmup: o.Warmup, Total: cfg.Run.InnerSteps(), Decay: decay}
	l.frozen, err = frozenRanges(l.model.Tensors(), cfg.Run.Model.Freeze)
	return err
}

// newAverager sets up the all-reduce for codec: under a lossy codec,
// biases and other small tensors go dense in fp16 (they cost little, and
// quantising or sparsifying them costs accuracy).
func (n *Node) newAverager(codec compression.Codec) (*allreduce.Averager, error) {
	lossless, _ := compression.LosslessByName(n.cfg.Run.Averaging.Lossless)
	result := codec // the averages: the part codec, except for top-k
	if tk, ok := codec.(compression.TopK); ok {
		result = compression.Sparse{Half: tk.Half}
	}
	var partFor, resultFor func(lo, hi int) compression.Codec
	if codec.ID() != compression.IDFP32 {
		var sizes []int
		for _, t := range n.local.model.Tensors() {
			sizes = append(sizes, t.Size())
		}
		partFor = compression.Policy{Large: codec, Small: compression.FP16{}, Tensors: sizes, SmallTensor: smallTensor}.For
		resultFor = compression.Policy{Large: result, Small: compression.FP16{}, Tensors: sizes, SmallTensor: smallTensor}.For
	}
	agg, err := allreduce.ParseAggregate(n.cfg.Run.Averaging.Aggregate)
	if err != nil {
		return nil, err // Validate refuses it first
	}
	return allreduce.NewAverager(n.net, allreduce.AveragerConfig{Codec: codec, Result: result, PartCodec: partFor, ResultCodec: resultFor, Lossless: lossless,
		Aggregate: agg, ContentOrder: n.det != nil,
		RoundTimeout: n.cfg.RoundTimeout, MinLinkRate: n.cfg.MinLinkRate, Clock: n.clock,
		// A member's weight is its claimed samples: no honest step needs
		// more than the run's target batch (a DiLoCo phase: its inner
		// steps' minibatches), so no member weighs more.
		MaxSamples: max(n.cfg.Run.Optimizer.TargetBatch, n.cfg.Run.Averaging.InnerSteps*n.cfg.Run.Compute.Batch),
		OnDrop: func(round string, p peer.ID, err error) {
			n.log.Warn("left a contribution out of the average", "round", round, "peer", p, "err", err)
		},
		OnMisbehaving: func(round string, p peer.ID, reason string) {
			n.log.Warn("peer suspected of misbehaving: it owns no part for a while", "round", round, "peer", p, "reason", reason)
		}}), nil
}

// smallTensor is the size below which a tensor is sent dense in fp16
// under a lossy codec (the per-tensor policy): biases, norms and small
// heads. 4096 values = 16 KiB of fp32.
const smallTensor = 4096

// peerSeed folds a peer ID into the data-order seed so that peers sampling
// the whole set (no --shard) visit it in different orders.
func peerSeed(p peer.ID) uint64 {
	var s uint64 = 1469598103934665603
	for _, c := range []byte(p) {
		s = (s ^ uint64(c)) * 1099511628211
	}
	return s
}

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.net.Self() }

// RunID is the hash of the run config.
func (n *Node) RunID() string { return n.run }

// Addrs are the multiaddrs others can join with.
func (n *Node) Addrs() []string { return n.net.JoinAddrs() }

// Device is what this node detected.
func (n *Node) Device() device.Info { return n.dev }

func (n *Node) currentStep() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rep.step
}

// servableStep is the step a donor would serve; none while syncing.
func (n *Node) servableStep() (uint64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rep.syncing {
		return 0, errSyncing
	}
	return n.rep.step, nil
}

var errSyncing = errors.New("this peer is syncing itself")

func (n *Node) snapshot() (statesync.Snapshot, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rep.syncing {
		return statesync.Snapshot{}, errSyncing
	}
	// optState, not the optimizer: a Moshpit step moves the optimizer
	// before the averaged parameters are installed at the next step.
	s := statesync.Snapshot{Step: n.rep.step, Params: append([]float32(nil), n.rep.params...), Opt: append([]float32(nil), n.rep.optState...), Group: n.rep.lastGroup}
	n.adv.snapshot(&s)
	return s, nil
}

func (n *Node) onHello(p peer.ID, ok bool, reason string, inbound bool) {
	if ok {
		return
	}
	// Another run, or a peer we cannot admit: it is nobody to us.
	n.admitted.remove(p)
	n.view.Remove(p)
	n.redials.left(p)
	if inbound {
		n.log.Warn("refused peer", "peer", p, "reason", reason)
		fmt.Fprintf(os.Stderr, "swarmtrain: refused peer %s: %s\n", p, reason)
		// Let the refusal reach the peer before hanging up.
		n.clock.AfterFunc(time.Second, func() { n.net.ClosePeer(p) })
	}
	select {
	case n.refusals <- reason:
	default:
	}
}

// Run joins the swarm and trains until the run's last step, ctx is
// cancelled (a clean leave), or a fatal error. It returns the final
// evaluation.
func (n *Node) Run(ctx context.Context) (*Result, error) {
	n.started = n.clock.Now()
	defer n.unlock()
	defer n.net.Close()
	var err error
	// The bus outlives ctx: a cancelled node still announces its leave.
	busCtx, stopBus := context.WithCancel(context.Background())
	defer stopBus()
	if n.bus, err = n.net.Bus(busCtx, n.run, gossip.Gate{Admitted: n.admitted.has, Stranger: n.stranger, Penalty: n.gossipPenalty}, n.deliver); err != nil {
		return nil, err
	}
	defer n.bus.Close()
	// A peer whose last connection closed (crash, kill, cut) is dropped
	// from the view at once instead of after PeerExpiry: rounds stop
	// waiting for it within moments. If it is alive, its next heartbeat
	// gets it greeted, and once admitted again, counted.
	n.net.OnDisconnect(n.lost)
	n.dash = openDash(n.cfg.Dir, n.log)
	defer n.dash.close()
	if n.cfg.HTTP != "" {
		if n.http, err = startHTTP(n, n.cfg.HTTP); err != nil {
			return nil, err
		}
		defer n.http.Close()
	}
	if err := n.writeInfo(); err != nil {
		return nil, err
	}
	n.log.Info("node up", "peer", n.ID(), "run", n.run, "addrs", n.net.JoinAddrs(), "device", n.dev.Summary(), "compute", n.cfg.Run.ModelConfig().Compute())
	for _, c := range n.cfg.Run.Caveats() {
		n.log.Warn("run caveat", "note", c)
	}
	if d, err := n.startDiscovery(); err != nil {
		// Discovery only helps: without it --join and saved peers work.
		n.log.Warn("peer discovery off", "err", err)
	} else if d != nil {
		defer d.Close()
	}
	saved := n.loadPeers()
	n.peers.add(saved)
	if err := n.joinSwarm(ctx, n.learnSaved(saved)); err != nil {
		return nil, err
	}
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go n.heartbeats(hbCtx)
	go n.redial(hbCtx)
	go n.punchAgain(hbCtx)

	loop := n.trainLoop
	if n.cfg.Run.DiLoCo() {
		loop = n.dilocoLoop
	}
	res, err := loop(ctx)
	// Cancelled mid-run: a clean leave. The swarm hears it first, so no
	// round waits for us while we evaluate and write the checkpoint.
	left := ctx.Err() != nil && (err == nil || errors.Is(err, ctx.Err()))
	if err == nil && n.cfg.Linger > 0 && ctx.Err() == nil {
		res = n.linger(ctx, res)
	}
	stopHB()
	n.leaving.Store(true)
	n.leave()
	if left {
		res, err = n.finish(), nil
	}
	n.savePeers()
	n.drainAssemblies()
	return res, err
}

// drainAssemblies waits, at most two join windows and a second, for the
// groups we are assembling for others to be announced: peers that asked
// us before they heard our leave get their group instead of a closed
// stream and a failed round.
func (n *Node) drainAssemblies() {
	deadline := n.clock.Now().Add(2*n.cfg.JoinWindow + time.Second)
	for n.mm.Assembling() && n.clock.Now().Before(deadline) {
		n.clock.Sleep(20 * time.Millisecond)
	}
}

// linger keeps a finished node in the swarm for Linger: it serves state
// and /status to peers still finishing, and keeps comparing its final
// state with theirs. Finishing nodes decide on the consensus from what
// they see; if that moves (a peer adopted another state after we
// settled), we follow, so nodes that stay long enough end identical. The
// result is re-evaluated after any change.
func (n *Node) linger(ctx context.Context, res *Result) *Result {
	n.setPhase("done")
	final := uint64(n.cfg.Run.Optimizer.Steps)
	end := n.clock.After(n.cfg.Linger)
	tick := n.clock.Ticker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-end:
			return res
		case <-ctx.Done():
			return res
		case <-tick.C:
		}
		if tried, err := n.adoptFinalConsensus(ctx); !tried || err != nil {
			continue
		}
		if n.currentStep() == final {
			res = n.finish()
			n.setPhase("done")
		}
	}
}

// deliver handles a validated gossip message.
func (n *Node) deliver(from peer.ID, m gossip.Message) {
	now := n.clock.Now()
	switch m.Kind {
	case gossip.KindHeartbeat:
		hb := m.Heartbeat
		if hb.Leaving {
			n.redials.left(hb.Peer)
		} else if hb.Peer != n.ID() {
			n.redials.heard(hb.Peer, now)
		}
		if !hb.Leaving && hb.Peer != n.ID() {
			n.peers.seen(hb.Peer, hb.Addrs, now)
		}
		if n.view.ObserveHeartbeat(*hb, now) {
			// Streams to it dial it directly: gossip may have reached us
			// through a third peer.
			n.net.Keep(hb.Peer, hb.Addrs)
			n.log.Info("peer up", "peer", hb.Peer, "device", hb.Device)
		}
	case gossip.KindProgress:
		n.view.ObserveProgress(*m.Progress, now)
	}
}

func (n *Node) heartbeats(ctx context.Context) {
	t := n.clock.Ticker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	var lastSave time.Time // the first peer heard is saved at once
	for {
		n.publishHeartbeat(ctx, false)
		n.checkAgreement()
		if n.clock.Since(lastSave) >= savePeersEvery && n.savePeers() {
			lastSave = n.clock.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) publishHeartbeat(ctx context.Context, leaving bool) {
	n.mu.Lock()
	hb := gossip.Heartbeat{
		Peer: n.ID(), Run: n.run, Seq: n.seq.Add(1), Step: n.rep.step, Hash: n.rep.hash,
		SamplesPerSec: finite(n.stats.samplesPerSec), Device: n.dev.Summary(), Syncing: n.rep.syncing, Leaving: leaving,
		Client: n.client(), Loss: finite(n.stats.loss), Reach: ReachabilityName(n.reachability()),
		BytesIn: max(n.net.BytesIn(), 0), BytesOut: max(n.net.BytesOut(), 0),
	}
	if n.rep.syncing {
		hb.SyncTo = n.rep.syncTo
	}
	n.mu.Unlock()
	addrs := n.net.JoinAddrs()
	if len(addrs) > 16 {
		addrs = addrs[:16]
	}
	hb.Addrs = addrs
	n.adv.heartbeat(&hb)
	if err := n.bus.Publish(ctx, gossip.Message{Kind: gossip.KindHeartbeat, Heartbeat: &hb}); err != nil && ctx.Err() == nil {
		n.log.Warn("heartbeat", "err", err)
	}
}

// client reports whether this node runs as a client: --client, or its
// host found it cannot be dialled (behind a NAT).
func (n *Node) client() bool {
	c, why := ClientMode(n.reachability(), n.cfg.Client)
	if n.wasClient.Swap(c) != c {
		mode := "owner"
		if c {
			mode = "client"
		}
		n.log.Info("mode changed", "mode", mode, "why", why)
	}
	return c
}

// reachability is AutoNAT's verdict on this node's host, or unknown on a
// network that cannot tell (the in-memory one).
func (n *Node) reachability() network.Reachability {
	if n.outside == nil {
		return network.ReachabilityUnknown
	}
	return n.outside.Reachability()
}

// outsideNet is a network that can tell how others see it: whether they
// can dial it (AutoNAT), at what public addresses, and how each
// connection was made. The libp2p one can; the in-memory one says
// only what a test makes it say.
type outsideNet interface {
	Reachability() network.Reachability
	ObservedAddrs() []string
	Conns() []PeerConn
}

func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		return 0
	}
	return x
}

func (n *Node) setPhase(p string) {
	n.mu.Lock()
	n.stats.phase = p
	n.mu.Unlock()
}

// leave tells the swarm we are going, so nobody waits for us.
func (n *Node) leave() {
	ctx, cancel := n.clock.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n.publishHeartbeat(ctx, true)
	n.log.Info("leave announced", "step", n.currentStep())
}

func (n *Node) writeInfo() error {
	info := Info{Peer: n.ID().String(), Run: n.run, Addrs: n.net.JoinAddrs(), PID: os.Getpid()}
	if n.http != nil {
		info.HTTP = n.http.Addr()
	}
	if err := writeJSON(filepath.Join(n.cfg.Dir, "node.json"), info); err != nil {
		return err
	}
	// The run as a file: what a joiner that has none of a text run's
	// files passes as --run-config (it names their hashes).
	return WriteRunConfig(filepath.Join(n.cfg.Dir, RunFile), n.cfg.Run)
}

// RunFile is where a node leaves its run config in its directory.
const RunFile = "run.json"

// writeJSON writes atomically: a reader never sees half a file.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'))
}

// livePeers counts live peers on the run, self excluded.
func (n *Node) livePeers() int { return len(n.view.Live(n.clock.Now())) }
