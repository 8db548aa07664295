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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
	"github.com/swarmtrain/swarmtrain/node/device"
	"github.com/swarmtrain/swarmtrain/p2p"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// Node is one running peer: a libp2p host, the run's gossip, the
// averaging protocols and a local trainer, composed into the sync-mode
// loop: accumulate → gossip progress → match → all-reduce → identical step.
type Node struct {
	cfg    Config
	run    string
	log    *slog.Logger
	dev    device.Info
	host   *p2p.Host
	tr     hostTransport
	bus    *gossip.Bus
	view   *gossip.Membership
	mm     *gossip.Matchmaker
	av     *gossip.Averager
	adm    *gossip.Admission
	states *gossip.StateServer
	http   *httpServer
	codec  compression.Codec

	model   trainer.Model
	opt     trainer.Optimizer
	sched   trainer.Schedule
	train   *trainer.Dataset
	test    *trainer.Dataset
	batcher *trainer.Batcher

	// mu guards the replicated state and the figures /status reports; the
	// training loop is the only writer.
	mu            sync.Mutex
	step          uint64
	params        []float32
	hash          string
	loss          float64 // moving average of the training loss
	samplesPerSec float64
	rounds        int
	failedRounds  int
	rounds0       roundMark // the first round applied
	roundsN       roundMark // the latest round applied
	// failing is the current run of failed rounds (zero: none); longest
	// the longest one that ended, from its first failure to its last.
	failing        failStreak
	longestFailing time.Duration
	partShare      float64 // fraction of the vector we owned in the last all-reduce
	syncs          int
	phase          string
	initialLoss    float64
	lastGroup      []peer.ID // members of the last round we applied (Moshpit: the grid)
	groupSize      int       // members of the last round we averaged in
	largestGroup   int
	partners       map[peer.ID]struct{} // everyone we averaged with
	optState       []float32            // scratch: the optimizer state, reused for hashing every step
	syncing        bool
	syncTo         uint64          // the step being downloaded, while syncing
	download       gossip.Download // verified chunks kept across attempts (training loop only)
	// residual is what a lossy codec dropped from our last contribution
	// (error feedback); nil for fp32. Training loop only.
	residual []float32
	// power runs PowerSGD's two rounds instead of one all-reduce (it
	// keeps its own error feedback); nil for per-part codecs.
	power *gossip.PowerSGD
	// frozen are the parameter ranges the run leaves untouched.
	frozen     [][2]int
	frozenKeep []float32 // scratch: the frozen values across a step

	lastCheckpoint uint64 // step of the last checkpoint written (mu)

	unlock    func()        // releases the node directory
	resync    atomic.Bool   // set when the swarm's consensus is another state
	aheadHint atomic.Uint64 // a step the swarm is known to have reached
	seq       atomic.Uint64
	started   time.Time
	refusals  chan string
	redials   *redialer
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
	Params    int     `json:"params"` // the model's parameter count

	BytesSent int64   `json:"bytes_sent"`
	BytesRecv int64   `json:"bytes_received"`
	Seconds   float64 `json:"seconds"`
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

// New loads the data, builds the model and starts the host. It does not
// contact any peer yet; Run does.
func New(cfg Config) (_ *Node, err error) {
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
	var host *p2p.Host
	defer func() {
		if err != nil {
			if host != nil {
				host.Close()
			}
			unlock()
		}
	}()
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	n := &Node{cfg: cfg, unlock: unlock, run: cfg.Run.ID(), log: slog.New(slog.NewTextHandler(logw, nil)), phase: "starting", refusals: make(chan string, 4), partners: map[peer.ID]struct{}{}}
	n.redials = newRedialer(10 * time.Minute)
	n.dev = device.Detect()
	var power *powerSpec
	if n.codec, power, err = parseGradientCodec(cfg.Run.Averaging.Codec); err != nil {
		return nil, err
	}
	if power != nil {
		n.codec = compression.FP32{} // PowerSGD's rounds say their own codecs
	}
	lossless, _ := compression.LosslessByName(cfg.Run.Averaging.Lossless)

	if n.train, n.test, err = LoadData(cfg); err != nil {
		return nil, err
	}
	if n.model, err = trainer.NewModel(cfg.Run.ModelConfig(), n.train); err != nil {
		return nil, err
	}
	np := n.model.NumParams()
	n.params = make([]float32, np)
	n.model.ReadParams(n.params)
	r := cfg.Run
	switch r.Optimizer.Name {
	case "adam":
		n.opt = trainer.NewAdam(0.9, 0.999, 1e-8, 0, np)
	case "adamw":
		n.opt = trainer.NewAdam(0.9, 0.999, 1e-8, r.Optimizer.WeightDecay, np)
	case "sgd":
		n.opt = trainer.NewSGD(0, r.Optimizer.WeightDecay, np)
	case "momentum":
		n.opt = trainer.NewSGD(r.Optimizer.Momentum, r.Optimizer.WeightDecay, np)
	case "nesterov":
		n.opt = trainer.NewNesterov(r.Optimizer.Momentum, r.Optimizer.WeightDecay, np)
	}
	decay, _ := r.decay() // validated
	n.sched = trainer.Schedule{Base: r.Optimizer.LR, Min: r.Optimizer.LR / 10, Warmup: r.Optimizer.Warmup, Total: r.Optimizer.Steps, Decay: decay}
	n.optState = n.opt.AppendState(nil)
	if n.codec.ID() != compression.IDFP32 {
		n.residual = make([]float32, np)
	}
	n.hash = gossip.HashState(0, n.params, n.optState)

	pc := p2p.DefaultConfig()
	pc.Dir = cfg.Dir
	if len(cfg.Listen) > 0 {
		pc.ListenAddrs = cfg.Listen
	}
	if host, err = p2p.New(pc); err != nil {
		return nil, err
	}
	n.host = host
	n.tr = hostTransport{h: n.host, timeout: cfg.FrameTimeout, minRate: cfg.MinLinkRate}

	shard := n.train
	if cfg.Shards > 0 {
		if shard, err = n.train.Shard(cfg.Run.Seed, cfg.Shard, cfg.Shards); err != nil {
			return nil, err
		}
	}
	n.batcher = trainer.NewBatcher(shard, cfg.Run.Compute.Batch, cfg.Run.Seed^peerSeed(n.host.ID()))
	n.log.Info("data", "train", n.train.Name, "train_rows", n.train.N, "our_rows", shard.N, "test_rows", n.test.N)
	if d, ok := n.model.(interface{ SeedDropout(uint64) }); ok {
		d.SeedDropout(cfg.Run.Seed ^ peerSeed(n.host.ID())) // like the batch order: ours alone
	}

	n.view = gossip.NewMembership(n.host.ID(), cfg.PeerExpiry)
	result := n.codec // the averages: the part codec, except for top-k
	if tk, ok := n.codec.(compression.TopK); ok {
		result = compression.Sparse{Half: tk.Half}
	}
	// Under a lossy codec, biases and other small tensors go dense in fp16:
	// they cost little, and quantising or sparsifying them costs accuracy.
	var sizes []int
	for _, t := range n.model.Tensors() {
		sizes = append(sizes, t.Size())
	}
	if power != nil {
		pc := gossip.PowerSGDConfig{Rank: power.rank, MinMatrix: smallTensor, Seed: cfg.Run.Seed}
		for _, t := range n.model.Tensors() {
			pc.Shapes = append(pc.Shapes, t.Shape)
		}
		if power.half {
			pc.Wire = compression.FP16{}
		}
		if n.power, err = gossip.NewPowerSGD(pc); err != nil {
			return nil, err
		}
	}
	var partFor, resultFor func(lo, hi int) compression.Codec
	if n.codec.ID() != compression.IDFP32 {
		partFor = compression.Policy{Large: n.codec, Small: compression.FP16{}, Tensors: sizes, SmallTensor: smallTensor}.For
		resultFor = compression.Policy{Large: result, Small: compression.FP16{}, Tensors: sizes, SmallTensor: smallTensor}.For
	}
	n.av = gossip.NewAverager(n.tr, gossip.AveragerConfig{Codec: n.codec, Result: result, PartCodec: partFor, ResultCodec: resultFor, Lossless: lossless, RoundTimeout: cfg.RoundTimeout, MinLinkRate: cfg.MinLinkRate,
		OnDrop: func(round string, p peer.ID, err error) {
			n.log.Warn("left a contribution out of the average", "round", round, "peer", p, "err", err)
		}})
	n.mm = gossip.NewMatchmaker(n.tr, gossip.MatchConfig{Run: n.run, JoinWindow: cfg.JoinWindow,
		Capacity: func() (float64, bool) { return n.av.Uplink(), cfg.Client }, MinGroup: cfg.Run.Averaging.MinGroup, MaxGroup: cfg.Run.Averaging.MaxGroup}, matchView{n})
	n.adm = &gossip.Admission{Run: n.run, Config: cfg.Run.JSON(), OnResult: n.onHello}
	n.adm.Serve(n.tr)
	n.states = gossip.NewStateServer(n.tr, n.run, n.servableStep, n.snapshot)
	if n.frozen, err = frozenRanges(n.model.Tensors(), cfg.Run.Model.Freeze); err != nil {
		return nil, err
	}
	if cfg.Run.Model.InitFrom != "" {
		if cfg.InitPath == "" {
			return nil, fmt.Errorf("the run starts from checkpoint %s: give this node that file with --init-from", cfg.Run.Model.InitFrom)
		}
		if err := n.initFrom(cfg.InitPath); err != nil {
			return nil, err
		}
	}
	if err := n.resume(); err != nil { // a checkpoint of this run wins
		return nil, err
	}
	return n, nil
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
func (n *Node) ID() peer.ID { return n.host.ID() }

// RunID is the hash of the run config.
func (n *Node) RunID() string { return n.run }

// Addrs are the multiaddrs others can join with.
func (n *Node) Addrs() []string { return n.host.JoinAddrs() }

// Device is what this node detected.
func (n *Node) Device() device.Info { return n.dev }

func (n *Node) currentStep() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.step
}

// candidates is who may assemble the group of a step: the members of
// the last round (identical at every member, unlike gossip views, which
// lag by a step or two when steps are fast) that are still live and not
// syncing, plus self. A newcomer holds the same list (it came with the
// state) and does not count itself until it has been in a round, so it
// picks the same assembler as everyone else. With no last round (the
// first step), every live peer counts.
func (n *Node) candidates() []peer.ID {
	self := n.host.ID()
	live := n.liveTrainers()
	n.mu.Lock()
	last := n.lastGroup
	n.mu.Unlock()
	var out []peer.ID
	for _, p := range last {
		if _, ok := live[p]; (ok || p == self) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = append(out, self)
		for p := range live {
			out = append(out, p)
		}
	}
	return out
}

// expected is whom the assembler of step waits for: the candidates, self,
// newcomers the view shows at step or just finishing step-1, and peers
// downloading exactly that step, so a joiner is in the round right after
// its download instead of chasing a swarm that moves on without it.
func (n *Node) expected(step uint64) []peer.ID {
	if swarm := n.moshpit(); swarm != nil {
		return n.moshpitGroup(step, swarm)
	}
	out := n.candidates()
	if !slices.Contains(out, n.host.ID()) {
		out = append(out, n.host.ID())
	}
	for _, m := range n.view.Live(time.Now()) {
		if slices.Contains(out, m.Peer) {
			continue
		}
		if (!m.Syncing && (m.Step == step || m.Step+1 == step)) || (m.Syncing && m.SyncTo == step) {
			out = append(out, m.Peer)
		}
	}
	return out
}

// liveTrainers is the view's live peers that are not syncing.
func (n *Node) liveTrainers() map[peer.ID]gossip.Member {
	live := map[peer.ID]gossip.Member{}
	for _, m := range n.view.Live(time.Now()) {
		if !m.Syncing {
			live[m.Peer] = m
		}
	}
	return live
}

// matchView shows the node's membership to its matchmaker.
type matchView struct{ n *Node }

func (v matchView) Step() uint64                   { return v.n.currentStep() }
func (v matchView) Expected(step uint64) []peer.ID { return v.n.expected(step) }
func (v matchView) Behind(step uint64) bool        { return v.n.behind(step) }

// MinGroup is the run's minimum group, except that a Moshpit grid line
// smaller than it still counts (the swarm as a whole exceeds the cap,
// and so the minimum).
func (v matchView) MinGroup(step uint64) int {
	need := v.n.cfg.Run.Averaging.MinGroup
	if swarm := v.n.moshpit(); swarm != nil {
		need = min(need, len(v.n.moshpitGroup(step, swarm)))
	}
	return need
}

// servableStep is the step a donor would serve; none while syncing.
func (n *Node) servableStep() (uint64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.syncing {
		return 0, errSyncing
	}
	return n.step, nil
}

var errSyncing = errors.New("this peer is syncing itself")

func (n *Node) snapshot() (gossip.Snapshot, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.syncing {
		return gossip.Snapshot{}, errSyncing
	}
	// optState, not the optimizer: a Moshpit step moves the optimizer
	// before the averaged parameters are installed at the next step.
	return gossip.Snapshot{Step: n.step, Params: append([]float32(nil), n.params...), Opt: append([]float32(nil), n.optState...), Group: n.lastGroup}, nil
}

func (n *Node) onHello(p peer.ID, ok bool, reason string, inbound bool) {
	if ok {
		return
	}
	if inbound {
		n.log.Warn("refused peer", "peer", p, "reason", reason)
		fmt.Fprintf(os.Stderr, "swarmtrain: refused peer %s: %s\n", p, reason)
		// Let the refusal reach the peer before hanging up.
		time.AfterFunc(time.Second, func() { n.host.Network().ClosePeer(p) })
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
	n.started = time.Now()
	defer n.unlock()
	defer n.host.Close()
	var err error
	// The bus outlives ctx: a cancelled node still announces its leave.
	busCtx, stopBus := context.WithCancel(context.Background())
	defer stopBus()
	n.bus, err = gossip.NewBus(busCtx, n.host.Host, n.run, n.deliver)
	if err != nil {
		return nil, err
	}
	defer n.bus.Close()
	// A peer whose last connection closed (crash, kill, cut) is dropped
	// from the view at once instead of after PeerExpiry: rounds stop
	// waiting for it within moments. If it is alive, its next heartbeat
	// brings it back.
	n.host.Network().Notify(&network.NotifyBundle{DisconnectedF: func(nw network.Network, c network.Conn) {
		p := c.RemotePeer()
		if nw.Connectedness(p) != network.Connected {
			n.view.Remove(p)
		}
	}})
	if n.cfg.HTTP != "" {
		if n.http, err = startHTTP(n, n.cfg.HTTP); err != nil {
			return nil, err
		}
		defer n.http.Close()
	}
	if err := n.writeInfo(); err != nil {
		return nil, err
	}
	n.log.Info("node up", "peer", n.host.ID(), "run", n.run, "addrs", n.host.JoinAddrs(), "device", n.dev.Summary())
	for _, c := range n.cfg.Run.Caveats() {
		n.log.Warn("run caveat", "note", c)
	}
	for _, addr := range n.cfg.Join {
		if err := n.join(ctx, addr); err != nil {
			return nil, err
		}
	}
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go n.heartbeats(hbCtx)
	go n.redial(hbCtx)

	res, err := n.trainLoop(ctx)
	if err == nil && n.cfg.Linger > 0 && ctx.Err() == nil {
		res = n.linger(ctx, res)
	}
	stopHB()
	n.leave()
	return res, err
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
	end := time.After(n.cfg.Linger)
	tick := time.NewTicker(100 * time.Millisecond)
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

// join connects to a peer by multiaddr and checks it is on our run.
func (n *Node) join(ctx context.Context, addr string) error {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	p, err := n.host.Connect(cctx, addr)
	if err != nil {
		return fmt.Errorf("join %s: %w", addr, err)
	}
	if err := n.adm.Greet(cctx, n.tr, p); err != nil {
		var ref *gossip.RefusedError
		if errors.As(err, &ref) {
			n.host.Network().ClosePeer(p)
			return fmt.Errorf("join refused by %s: %s", p, ref.Reason)
		}
		return fmt.Errorf("join %s: %w", addr, err)
	}
	n.host.ConnManager().Protect(p, "swarm")
	n.redials.heard(p, time.Now())
	n.log.Info("joined", "peer", p)
	return nil
}

// deliver handles a validated gossip message.
func (n *Node) deliver(from peer.ID, m gossip.Message) {
	now := time.Now()
	switch m.Kind {
	case gossip.KindHeartbeat:
		hb := m.Heartbeat
		if hb.Leaving {
			n.redials.left(hb.Peer)
		} else if hb.Peer != n.host.ID() {
			n.redials.heard(hb.Peer, now)
		}
		if n.view.ObserveHeartbeat(*hb, now) {
			n.learnAddrs(hb.Peer, hb.Addrs)
			n.log.Info("peer up", "peer", hb.Peer, "device", hb.Device)
		}
	case gossip.KindProgress:
		n.view.ObserveProgress(*m.Progress, now)
	}
}

// learnAddrs lets streams to p dial it directly: gossip may have reached
// us through a third peer.
func (n *Node) learnAddrs(p peer.ID, addrs []string) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil || ai.ID != p {
			continue
		}
		mas = append(mas, ai.Addrs...)
	}
	n.host.Peerstore().AddAddrs(p, mas, time.Hour)
	n.host.ConnManager().Protect(p, "swarm")
}

func (n *Node) heartbeats(ctx context.Context) {
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		n.publishHeartbeat(ctx, false)
		n.checkAgreement()
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
		Peer: n.host.ID(), Run: n.run, Seq: n.seq.Add(1), Step: n.step, Hash: n.hash,
		SamplesPerSec: finite(n.samplesPerSec), Device: n.dev.Summary(), Syncing: n.syncing, Leaving: leaving,
	}
	if n.syncing {
		hb.SyncTo = n.syncTo
	}
	n.mu.Unlock()
	addrs := n.host.JoinAddrs()
	if len(addrs) > 16 {
		addrs = addrs[:16]
	}
	hb.Addrs = addrs
	if err := n.bus.Publish(ctx, gossip.Message{Kind: gossip.KindHeartbeat, Heartbeat: &hb}); err != nil && ctx.Err() == nil {
		n.log.Warn("heartbeat", "err", err)
	}
}

func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		return 0
	}
	return x
}

// checkAgreement compares our state hash with the live peers at our
// step. If the swarm's consensus (most replicas, ties to the smallest
// hash) is another state, our replica diverged and is downloaded again.
func (n *Node) checkAgreement() {
	n.mu.Lock()
	step, hash := n.step, n.hash
	n.mu.Unlock()
	if n.moshpit() != nil {
		return // Moshpit replicas differ by design until the final step
	}
	votes := n.votes(step, hash)
	if c := gossip.Consensus(votes); c != hash {
		n.log.Warn("state differs from the swarm's consensus; will resync", "step", step, "ours", hash, "consensus", c, "votes", len(votes))
		n.resync.Store(true)
	}
}

// votes counts the state hashes that live replicas hold at step, ours included.
func (n *Node) votes(step uint64, ours string) map[string]int {
	votes := map[string]int{ours: 1}
	for _, m := range n.view.Live(time.Now()) {
		if m.Step == step && !m.Syncing && m.Hash != "" {
			votes[m.Hash]++
		}
	}
	return votes
}

func (n *Node) setPhase(p string) {
	n.mu.Lock()
	n.phase = p
	n.mu.Unlock()
}

// leave tells the swarm we are going, so nobody waits for us.
func (n *Node) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n.publishHeartbeat(ctx, true)
}

func (n *Node) writeInfo() error {
	info := Info{Peer: n.host.ID().String(), Run: n.run, Addrs: n.host.JoinAddrs(), PID: os.Getpid()}
	if n.http != nil {
		info.HTTP = n.http.Addr()
	}
	return writeJSON(filepath.Join(n.cfg.Dir, "node.json"), info)
}

// writeJSON writes atomically: a reader never sees half a file.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'))
}

// livePeers counts live peers on the run, self excluded.
func (n *Node) livePeers() int { return len(n.view.Live(time.Now())) }
