package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// trainLoop is the sync-mode loop. Every iteration produces exactly one
// optimizer step shared by the whole group, or none.
func (n *Node) trainLoop(ctx context.Context) (*Result, error) {
	if err := n.waitForPeers(ctx); err != nil {
		return nil, err
	}
	n.setPhase("evaluating")
	if _, loss, err := n.model.Evaluate(n.test); err == nil {
		n.mu.Lock()
		n.initialLoss = loss
		n.mu.Unlock()
	}
	np := n.model.NumParams()
	acc := make([]float32, np)  // Σ batch·grad over this step's minibatches
	mean := make([]float32, np) // acc / samples: our contribution
	avg := make([]float32, np)  // the group's average
	var local []float32         // Moshpit: our parameters after a local step
	inMoshpit := false
	badGrads := 0 // non-finite gradients in a row
	x := make([]float32, n.cfg.Run.Compute.Batch*n.train.Dim)
	y := make([]uint8, n.cfg.Run.Compute.Batch)
	samples := 0
	lastRate := time.Now()
	rateSamples := 0

	for {
		if err := ctx.Err(); err != nil {
			return n.finish(), nil // clean leave
		}
		step := n.currentStep()
		if step >= uint64(n.cfg.Run.Optimizer.Steps) {
			n.settle(ctx)
			return n.finish(), nil
		}
		if n.resync.Load() || n.behind(step) {
			if err := n.syncState(ctx); err != nil {
				n.log.Warn("state sync failed; retrying", "err", err)
				sleep(ctx, 500*time.Millisecond)
				continue
			}
			clear(acc)
			samples = 0
			badGrads = 0 // a new state: its gradients start a new count
			continue
		}

		// Local work: one minibatch, then see whether the swarm has enough.
		n.setPhase("training")
		n.batcher.Next(x, y)
		loss, err := n.model.ComputeGradients(x, y)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", step, err)
		}
		n.model.AddGrads(acc, float32(n.cfg.Run.Compute.Batch))
		samples += n.cfg.Run.Compute.Batch
		rateSamples += n.cfg.Run.Compute.Batch
		n.mu.Lock()
		if n.loss == 0 {
			n.loss = float64(loss)
		} else {
			n.loss = 0.95*n.loss + 0.05*float64(loss)
		}
		if el := time.Since(lastRate); el > time.Second {
			n.samplesPerSec = float64(rateSamples) / el.Seconds()
			rateSamples, lastRate = 0, time.Now()
		}
		n.mu.Unlock()
		n.publishProgress(ctx, step, samples)
		others, _ := n.view.SwarmSamples(step, time.Now())
		if samples+others < n.cfg.Run.Optimizer.TargetBatch {
			continue
		}

		// Average with whoever is ready for this step.
		inv := float32(1) / float32(samples)
		for i := range acc {
			mean[i] = float32(acc[i] * inv)
		}
		for _, r := range n.frozen { // frozen tensors take no step: nothing to send for them
			clear(mean[r[0]:r[1]])
		}
		if i := compression.FirstNonFinite(mean); i >= 0 {
			// Our gradient is unusable (NaN/Inf from a bad batch or a
			// numeric blow-up): sending it would fail every round we join.
			n.log.Warn("local gradient is not finite; dropping it", "step", step, "index", i, "value", mean[i])
			clear(acc)
			samples = 0
			if badGrads++; badGrads >= maxBadGradients {
				// Not a bad batch but weights that overflow the forward
				// pass: no step will ever be taken again.
				return nil, fmt.Errorf("training diverged at step %d: the gradient was NaN or Inf %d times in a row (learning rate %g); lower --lr or lengthen --warmup", step, badGrads, n.sched.LR(int(step)))
			}
			continue
		}
		badGrads = 0
		if n.behind(step) {
			continue // the swarm moved on while we computed: sync first
		}
		swarm := n.moshpit()
		if (swarm != nil) != inMoshpit {
			inMoshpit = swarm != nil
			if inMoshpit {
				n.log.Info("swarm is larger than the max group: averaging parameters in rotating Moshpit groups", "step", step, "peers", len(swarm), "max_group", n.cfg.Run.Averaging.MaxGroup)
			} else {
				n.log.Info("swarm fits one group again: averaging gradients exactly", "step", step)
			}
		}
		if inMoshpit {
			if local == nil {
				local = make([]float32, np)
			}
			if err := n.mix(ctx, step, mean, samples, swarm, local, avg); err != nil {
				return nil, err
			}
			n.checkpoint(false)
			clear(acc)
			samples = 0
			continue
		}
		n.setPhase("averaging")
		r, err := n.mm.Match(ctx, step, samples, n.candidates())
		if errors.Is(err, gossip.ErrBehind) {
			n.log.Info("swarm averaged without us; syncing", "step", step)
			n.aheadHint.Store(step + 1)
			n.resync.Store(true)
			continue
		}
		if errors.Is(err, gossip.ErrTooFew) {
			// Not a failure: the run asks for more peers than are here.
			n.setPhase("waiting for peers")
			n.log.Info("waiting for a large enough group", "step", step, "err", err)
			continue
		}
		if err != nil {
			n.noteFailure(step, "matchmaking", err)
			continue // keep the gradient, try again (more samples meanwhile)
		}
		switch {
		case n.power != nil:
			err = n.power.AllReduce(ctx, n.av, r, mean, avg)
		case n.residual != nil:
			err = n.av.AllReduceEF(ctx, r, mean, n.residual, avg)
		default:
			err = n.av.AllReduce(ctx, r, mean, avg)
		}
		if err != nil {
			n.noteFailure(step, "all-reduce", err)
			continue
		}
		lo, hi := r.Bounds(np, r.Index(n.host.ID()))
		n.mu.Lock()
		n.partShare = float64(hi-lo) / float64(np)
		n.mu.Unlock()
		if err := n.apply(step, avg, r.Members); err != nil {
			return nil, err
		}
		n.checkpoint(false)
		clear(acc)
		samples = 0
	}
}

// apply takes the identical optimizer step every member takes.
func (n *Node) apply(step uint64, avg []float32, members []peer.ID) error {
	n.mu.Lock()
	lr, err := n.optimizerStep(step, n.params, avg) // the same average everywhere: the same step
	if err != nil {
		// Put the last committed state back (the model and optState still
		// hold it): nothing broken is served or reported on the way out.
		n.model.ReadParams(n.params)
		n.opt.LoadState(n.optState)
		n.mu.Unlock()
		return err // every replica took the same step: the run, not this node, diverged
	}
	prev := n.lastGroup
	n.lastGroup = members
	n.commitLocked(step+1, members)
	n.mu.Unlock()
	n.publish(step + 1)
	if !slices.Equal(prev, members) {
		// Who we average with is the first thing to read after a fault.
		joined, left := diffPeers(prev, members)
		n.log.Info("group changed", "step", step, "members", len(members), "joined", joined, "left", left)
	}
	n.log.Debug("step", "step", step+1, "members", len(members), "lr", lr)
	return nil
}

// publish hands the state just committed at step to the state server
// (joiners waiting for it) and to the model (the next forward pass).
// Training loop only, after commitLocked.
func (n *Node) publish(step uint64) {
	n.states.Advanced(step)
	if err := n.model.WriteParams(n.params); err != nil {
		n.log.Error("write params", "err", err)
	}
}

// optimizerStep is the step every path takes on params with grad: clip
// (--clip-norm), an optimizer step that leaves the frozen ranges as they
// were (not even weight decay touches them), and the divergence check.
// It returns the step's learning rate; on error the caller undoes.
func (n *Node) optimizerStep(step uint64, params, grad []float32) (lr float32, err error) {
	lr = n.sched.LR(int(step))
	trainer.ClipGlobalNorm(grad, n.cfg.Run.Optimizer.ClipNorm)
	keep := n.frozenKeep[:0]
	for _, r := range n.frozen {
		clear(grad[r[0]:r[1]])
		keep = append(keep, params[r[0]:r[1]]...)
	}
	n.frozenKeep = keep
	n.opt.Step(params, grad, lr)
	for _, r := range n.frozen {
		keep = keep[copy(params[r[0]:r[1]], keep):]
	}
	return lr, diverged(step, params, lr)
}

// maxBadGradients is how many non-finite gradients in a row end the run:
// a bad batch is dropped, a blown-up model would loop forever.
const maxBadGradients = 20

// diverged reports an optimizer step that left a parameter NaN or Inf.
// The averaged gradient was finite, so the step itself blew up: with
// identical replicas every peer sees the same, and going on would only
// spread NaN, so the run stops with the likely cause.
func diverged(step uint64, params []float32, lr float32) error {
	if i := compression.FirstNonFinite(params); i >= 0 {
		return fmt.Errorf("training diverged at step %d: parameter %d became %v after the optimizer step (learning rate %g); lower --lr or lengthen --warmup", step, i, params[i], lr)
	}
	return nil
}

// commitLocked records that n.params and the optimizer now hold the state
// at step, reached by averaging with members (nil: no round). Called with
// n.mu held.
func (n *Node) commitLocked(step uint64, members []peer.ID) {
	n.step = step
	n.optState = n.opt.AppendState(n.optState[:0])
	n.hash = gossip.HashState(n.step, n.params, n.optState)
	if members == nil {
		return
	}
	n.rounds++
	now := time.Now()
	n.roundsN = roundMark{step, now}
	if n.rounds == 1 {
		n.rounds0 = n.roundsN
	}
	if f := n.failing; f.count > 0 {
		// How long rounds kept failing is what an operator of a slow
		// link wants to know: it should stay within one deadline.
		failing := f.last.Sub(f.first)
		n.longestFailing = max(n.longestFailing, failing)
		n.log.Info("averaging recovered", "step", step, "failed_rounds", f.count, "failing_for", failing.Round(time.Millisecond), "deadline", n.av.Deadline().Round(time.Millisecond))
		n.failing = failStreak{}
	}
	n.groupSize = len(members)
	n.largestGroup = max(n.largestGroup, len(members))
	for _, p := range members {
		if p != n.host.ID() {
			n.partners[p] = struct{}{}
		}
	}
}

// roundMark is a step and when its round was applied.
type roundMark struct {
	step uint64
	at   time.Time
}

// failStreak is a run of failed rounds: how many, the first and the last.
type failStreak struct {
	count       int
	first, last time.Time
}

func (n *Node) noteFailure(step uint64, what string, err error) {
	n.mu.Lock()
	n.failedRounds++
	now := time.Now()
	if n.failing.count == 0 {
		n.failing.first = now
	}
	n.failing.count++
	n.failing.last = now
	n.mu.Unlock()
	n.log.Warn(what+" failed; retrying", "step", step, "err", err)
}

func (n *Node) publishProgress(ctx context.Context, step uint64, samples int) {
	n.mu.Lock()
	hash := n.hash
	n.mu.Unlock()
	p := gossip.Progress{Peer: n.host.ID(), Run: n.run, Seq: n.seq.Add(1), Step: step, Hash: hash, Samples: samples}
	if err := n.bus.Publish(ctx, gossip.Message{Kind: gossip.KindProgress, Progress: &p}); err != nil && ctx.Err() == nil {
		n.log.Warn("progress", "err", err)
	}
}

// behind reports whether a live peer is already past step: a round
// happened without us and our state is stale. Members of a round apply
// its step before they loop back here, so a peer that merely finished the
// same round first is never mistaken for one that is ahead.
func (n *Node) behind(step uint64) bool {
	var lag uint64
	if n.moshpit() != nil {
		lag = moshpitLag // a round behind is normal; mixing catches us up
	}
	for _, m := range n.view.Live(time.Now()) {
		if !m.Syncing && m.Step > step+lag {
			return true
		}
	}
	return false
}

// waitForPeers holds the first step until MinPeers are live, so a demo
// swarm starts together instead of one node racing ahead alone.
func (n *Node) waitForPeers(ctx context.Context) error {
	need := n.cfg.MinPeers
	if len(n.cfg.Join) > 0 {
		// A joiner first hears from the swarm it joined, so it knows the
		// swarm's step (and downloads it) instead of starting alone at 0.
		need = max(need, 2)
	}
	if need <= 1 {
		return nil
	}
	n.setPhase("waiting for peers")
	deadline := time.Now().Add(n.cfg.MinPeersTimeout)
	for {
		if live := n.livePeers() + 1; live >= need {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d peers showed up within %v", n.livePeers()+1, need, n.cfg.MinPeersTimeout)
		}
		select {
		case reason := <-n.refusals:
			n.log.Warn("refusal while waiting", "reason", reason)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// syncState downloads the state the swarm's majority holds at the newest
// step, from a peer that announced it, and verifies its hash.
func (n *Node) syncState(ctx context.Context) error {
	n.setPhase("syncing state")
	n.mu.Lock()
	n.syncing = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.syncing = false
		n.mu.Unlock()
	}()
	// An assembler told us the swarm reached at least aheadHint; wait
	// (bounded) until gossip shows a peer there, or we would pick a donor
	// as stale as we are.
	hint := n.aheadHint.Swap(0)
	for wait := time.Now().Add(2 * n.cfg.HeartbeatInterval); hint > 0 && time.Now().Before(wait); {
		if n.newestStep() >= hint {
			break
		}
		sleep(ctx, 20*time.Millisecond)
	}
	donors, top, want := n.donors()
	if len(donors) == 0 {
		n.resync.Store(false)
		return nil // nobody ahead of us: our state is the swarm's
	}
	// Download the step after the newest one gossiped: donors hand it over
	// the moment they reach it, and its assembler, told by our heartbeat,
	// waits for us, so we are in that very round. (A stalled swarm never
	// gets there; FetchState then takes the step the donors are at.)
	step := top + 1
	if top >= uint64(n.cfg.Run.Optimizer.Steps) {
		step = top // the final state: nobody goes further
	} else {
		want = "" // the consensus we know is top's
	}
	n.mu.Lock()
	n.syncTo = step
	n.mu.Unlock()
	n.publishHeartbeat(ctx, false)
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	f, err := n.download.Fetch(cctx, n.tr, donors, gossip.StateRequest{
		Run: n.run, NParams: len(n.params), NOpt: len(n.optState), Step: step, Want: want,
		// A donor a round behind usually gets there within a round; one
		// that does not answers "not yet" and the others serve.
		Wait: min(max(2*n.av.Deadline(), time.Second), 5*time.Second),
	})
	if err != nil {
		return err
	}
	for p, err := range f.Failed {
		// Mostly donors that moved on or are syncing themselves; a donor
		// that lied or died is named here too.
		n.log.Info("state donor not used", "peer", p, "err", err)
	}
	if err := n.load(f.Snapshot, f.Hash); err != nil {
		return err
	}
	n.resync.Store(false)
	n.mu.Lock()
	n.syncs++
	n.syncing = false // before the heartbeat: peers must expect us in the next round
	n.mu.Unlock()
	n.log.Info("state synced", "step", f.Step, "hash", f.Hash, "donors", len(f.Chunks), "chunks", fmt.Sprint(chunkCounts(f.Chunks)))
	n.publishHeartbeat(ctx, false)
	return nil
}

// chunkCounts lists how many chunks each donor sent, largest first.
func chunkCounts(m map[peer.ID]int) []int {
	out := make([]int, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

// donors ranks the live peers to download from, best first, with the
// step to download (the newest any of them gossips) and the hash the
// swarm agrees on there ("" when the gossiped votes are not there yet).
// It returns no donors when our own state already is the consensus at
// the newest step.
func (n *Node) donors() ([]peer.ID, uint64, string) {
	n.mu.Lock()
	my, myHash := n.step, n.hash
	n.mu.Unlock()
	var cands []gossip.Member
	for _, m := range n.view.Live(time.Now()) {
		if !m.Syncing && m.Hash != "" && m.Step >= my {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return nil, 0, ""
	}
	top := cands[0].Step
	for _, m := range cands {
		top = max(top, m.Step)
	}
	var winner string
	if top == my {
		winner = gossip.Consensus(n.votes(my, myHash))
		if winner == myHash {
			return nil, 0, ""
		}
	} else {
		winner = gossip.Consensus(n.votes(top, ""))
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.Step != b.Step {
			return a.Step > b.Step
		}
		return a.Hash == winner && b.Hash != winner
	})
	ids := make([]peer.ID, len(cands))
	for i, m := range cands {
		ids[i] = m.Peer
	}
	return ids, top, winner
}

// newestStep is the highest step a live, non-syncing peer reports.
func (n *Node) newestStep() uint64 {
	var top uint64
	for _, m := range n.view.Live(time.Now()) {
		if !m.Syncing {
			top = max(top, m.Step)
		}
	}
	return top
}

// load installs a downloaded snapshot whose hash was verified.
func (n *Node) load(s gossip.Snapshot, hash string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	// Validate everything before changing anything: no half-loaded state.
	if err := n.model.WriteParams(s.Params); err != nil {
		n.model.WriteParams(n.params)
		return err
	}
	if err := n.opt.LoadState(s.Opt); err != nil {
		n.model.WriteParams(n.params)
		return err
	}
	clear(n.residual) // what we owed belonged to the state we drop
	if n.power != nil {
		n.power.Reset()
	}
	n.log.Info("replacing local state", "was_step", n.step, "was_hash", n.hash, "step", s.Step, "hash", hash)
	copy(n.params, s.Params)
	n.optState = n.opt.AppendState(n.optState[:0])
	n.lastGroup = s.Group
	n.step = s.Step
	n.hash = hash
	return nil
}

// settle runs after the last step: it waits (bounded) for the live peers
// to finish too and, if the swarm's consensus on the final state is not
// ours, downloads it, so a run never ends with silently different replicas.
func (n *Node) settle(ctx context.Context) {
	n.setPhase("settling")
	final := uint64(n.cfg.Run.Optimizer.Steps)
	deadline := time.Now().Add(4 * n.cfg.PeerExpiry)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pending := false
		for _, m := range n.view.Live(time.Now()) {
			if m.Step < final {
				pending = true
			}
		}
		if tried, err := n.adoptFinalConsensus(ctx); tried {
			if err != nil {
				sleep(ctx, 200*time.Millisecond)
			}
			continue
		}
		if !pending {
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// adoptFinalConsensus downloads the swarm's consensus state at the final
// step when ours is not it. It reports whether it had to try.
func (n *Node) adoptFinalConsensus(ctx context.Context) (tried bool, err error) {
	n.mu.Lock()
	hash := n.hash
	n.mu.Unlock()
	if gossip.Consensus(n.votes(uint64(n.cfg.Run.Optimizer.Steps), hash)) == hash {
		return false, nil
	}
	if err := n.syncState(ctx); err != nil {
		n.log.Warn("final state sync failed", "err", err)
		return true, err
	}
	return true, nil
}

// finish evaluates the final model on the test set and writes result.json.
func (n *Node) finish() *Result {
	n.checkpoint(true)
	n.setPhase("evaluating")
	acc, loss, err := n.model.Evaluate(n.test)
	if err != nil {
		n.log.Error("evaluate", "err", err)
	}
	n.mu.Lock()
	res := &Result{
		Peer: n.host.ID().String(), Run: n.run, Step: n.step, Hash: n.hash, Accuracy: acc, TestLoss: loss, InitialTestLoss: n.initialLoss,
		Rounds: n.rounds, Failed: n.failedRounds, Syncs: n.syncs, LargestGroup: n.largestGroup, Partners: len(n.partners),
		BytesSent: n.host.BytesOut(), BytesRecv: n.host.BytesIn(), Seconds: time.Since(n.started).Seconds(),
		LongestFailing: n.longestFailing.Seconds(), PartShare: n.partShare, Params: n.model.NumParams(),
	}
	if steps := n.roundsN.step - n.rounds0.step; steps > 0 {
		res.SecondsPerStep = n.roundsN.at.Sub(n.rounds0.at).Seconds() / float64(steps)
	}
	n.phase = "finished"
	n.mu.Unlock()
	if err := writeJSON(filepath.Join(n.cfg.Dir, "result.json"), res); err != nil {
		n.log.Error("write result", "err", err)
	}
	n.log.Info("finished", "step", res.Step, "accuracy", acc, "hash", res.Hash)
	return res
}

// diffPeers lists who is in b but not a (joined) and in a but not b (left).
func diffPeers(a, b []peer.ID) (joined, left int) {
	for _, p := range b {
		if !slices.Contains(a, p) {
			joined++
		}
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			left++
		}
	}
	return joined, left
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
