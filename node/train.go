package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/gossip/averaging"
	"github.com/swarmtrain/swarmtrain/gossip/statesync"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// trainLoop is the sync-mode loop. Every iteration produces exactly one
// step shared by the round's group, or none.
func (n *Node) trainLoop(ctx context.Context) (*Result, error) {
	if err := n.begin(ctx); err != nil {
		return nil, err
	}
	acc := newAccumulator(n.local.model.NumParams(), n.cfg.Run.Compute.Batch*n.local.train.Dim, n.cfg.Run.Compute.Batch)
	badGrads := 0 // non-finite gradients in a row
	env := strategyEnv{n}
	// Where a step's time goes, for the debug log: since the last step
	// applied, computing, then waiting for the swarm's target batch.
	var stepFrom time.Time
	var computing time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return nil, err // a clean leave: Run announces it, then finishes
		}
		step := n.currentStep()
		if step >= uint64(n.cfg.Run.Optimizer.Steps) {
			n.trainingDone()
			n.settle(ctx)
			return n.finish(), nil
		}
		if n.resync.Load() || n.behind(step) {
			n.det.void(fmt.Sprintf("the swarm moved past step %d without us", step))
			if err := n.syncState(ctx); err != nil {
				n.log.Warn("state sync failed; retrying", "err", err)
				n.sleep(ctx, 500*time.Millisecond)
				continue
			}
			acc.reset()
			badGrads = 0 // a new state: its gradients start a new count
			continue
		}

		// Local work: one minibatch, then see whether the swarm has enough
		// (a deterministic run: whether we have our share).
		if n.det == nil || acc.samples < n.det.samples(n.cfg.Run) {
			n.setPhase("training")
			began := n.clock.Now()
			if stepFrom.IsZero() {
				stepFrom = began
			}
			if err := n.minibatch(acc); err != nil {
				return nil, fmt.Errorf("step %d: %w", step, err)
			}
			computing += n.clock.Since(began)
			n.addCompute(n.clock.Since(began))
			n.publishProgress(ctx, step, acc.samples)
		} else {
			// A deterministic retry: no minibatch to compute meanwhile.
			n.sleep(ctx, detRetryPause)
		}
		if !n.enough(step, acc.samples) {
			continue
		}

		// Average with whoever is ready for this step.
		mean := acc.mean(n.local.frozen)
		if i := compression.FirstNonFinite(mean); i >= 0 {
			// Our gradient is unusable (NaN/Inf from a bad batch or a
			// numeric blow-up): sending it would fail every round we join.
			n.log.Warn("local gradient is not finite; dropping it", "step", step, "index", i, "value", mean[i])
			acc.reset()
			if badGrads++; badGrads >= maxBadGradients {
				// Not a bad batch but weights that overflow the forward
				// pass: no step will ever be taken again.
				return nil, fmt.Errorf("training diverged at step %d: the gradient was NaN or Inf %d times in a row (learning rate %g); lower --lr or lengthen --warmup", step, badGrads, n.local.sched.LR(int(step)))
			}
			continue
		}
		badGrads = 0
		if n.behind(step) {
			continue // the swarm moved on while we computed: sync first
		}
		n.adv.gradient(step, mean)
		began := n.clock.Now()
		rctx, endRound := n.roundContext(ctx, step)
		n.matchedAt = time.Time{}
		evalDone := n.evalBeside()
		out, err := n.strategy.Step(rctx, env, step, mean, acc.samples)
		movedOn := errors.Is(context.Cause(rctx), errMovedOn)
		endRound()
		reduced := n.clock.Now()
		evalDone() // what outlasts the round counts as apply below
		if err == nil && out.Members != nil {
			n.dash.roundDone(reduced.Sub(began))
		}
		n.det.round(step, out.Members)
		if out.Grad != nil || out.Params != nil {
			// The gradient is spent (Moshpit spends it on its local step
			// even when its group's round fails).
			if err := n.commit(step, out); err != nil {
				return nil, err
			}
			committed := n.clock.Now()
			n.checkpoint(false)
			n.logStep()
			acc.reset()
			if !n.matchedAt.IsZero() && n.log.Enabled(ctx, slog.LevelDebug) {
				rt := n.av.LastRound()
				n.log.Debug("step times", "step", step+1, "compute", computing.Round(time.Millisecond),
					"wait", (began.Sub(stepFrom) - computing).Round(time.Millisecond),
					"match", n.matchedAt.Sub(began).Round(time.Millisecond),
					"transfer", rt.Held.Round(time.Millisecond), "verify", rt.Verified.Round(time.Millisecond),
					"apply", committed.Sub(reduced).Round(time.Millisecond), "log", n.clock.Since(committed).Round(time.Millisecond))
			}
			stepFrom, computing = n.clock.Now(), 0
		}
		var round *averaging.RoundError
		switch {
		case err != nil && movedOn:
			n.log.Info("the swarm took a step without us while our round went on; leaving it to sync", "step", step, "err", err)
			n.resync.Store(true)
			continue
		case errors.Is(err, allreduce.ErrBehind):
			n.log.Info("swarm averaged without us; syncing", "step", step)
			n.aheadHint.Store(step + 1)
			n.resync.Store(true)
			continue
		case errors.Is(err, allreduce.ErrTooFew):
			// Not a failure: the run asks for more peers than are here.
			n.setPhase("waiting for peers")
			level := slog.LevelInfo
			if out.Params != nil {
				level = slog.LevelDebug // Moshpit kept its local step: it trains on
			}
			n.log.Log(ctx, level, "waiting for a large enough group", "step", step, "err", err)
			continue
		case errors.As(err, &round):
			n.noteFailure(step, round.Stage, round.Err)
			continue // keep the gradient, try again (more samples meanwhile)
		case err != nil:
			return nil, err
		}
	}
}

// enough reports whether the swarm holds a target batch at step, with
// our samples; in a deterministic run, whether we hold exactly our share.
func (n *Node) enough(step uint64, samples int) bool {
	if n.det != nil {
		return samples >= n.det.samples(n.cfg.Run)
	}
	others, _ := n.view.SwarmSamples(step, n.clock.Now())
	return samples+others >= n.cfg.Run.Optimizer.TargetBatch
}

// errMovedOn ends a round the swarm no longer needs.
var errMovedOn = errors.New("the swarm took a step without us")

// movedOnPoll is how often a round in flight checks whether the swarm
// went on without it.
const movedOnPoll = 250 * time.Millisecond

// roundContext is the context of our round at step. A leave does not end
// it (the others would wait for our part and count the round failed),
// but the swarm taking step+1 without us does: a round's deadline backs
// off after failures (up to minutes on a first round with unmeasured
// links), and a member stuck in one (an owner waiting for a copy that a
// peer behind NAT never sent) would sit out the whole run meanwhile. A
// quorum past step+1 has finished a round that we were not in, so ours
// can only leave us behind: better to sync now.
func (n *Node) roundContext(ctx context.Context, step uint64) (context.Context, func()) {
	rctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		t := n.clock.Ticker(movedOnPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if n.behind(step + 1) {
					cancel(errMovedOn)
					return
				}
			}
		}
	}()
	return rctx, func() {
		close(done)
		cancel(nil)
	}
}

// accumulator sums this step's minibatch gradients: Σ batch·grad.
type accumulator struct {
	sum, avg []float32
	samples  int
	x        []float32 // scratch: one minibatch
	y        []uint8
}

func newAccumulator(params, inputs, batch int) *accumulator {
	return &accumulator{sum: make([]float32, params), avg: make([]float32, params), x: make([]float32, inputs), y: make([]uint8, batch)}
}

func (a *accumulator) reset() {
	clear(a.sum)
	a.samples = 0
}

// mean is the accumulated gradient over the samples, zero on frozen
// ranges (they take no step: nothing to send for them).
func (a *accumulator) mean(frozen [][2]int) []float32 {
	inv := float32(1) / float32(a.samples)
	for i := range a.sum {
		a.avg[i] = float32(a.sum[i] * inv)
	}
	for _, r := range frozen {
		clear(a.avg[r[0]:r[1]])
	}
	return a.avg
}

// minibatch computes one minibatch's gradient into acc and updates the
// loss and speed figures.
func (n *Node) minibatch(acc *accumulator) error {
	batch := n.cfg.Run.Compute.Batch
	n.local.batcher.Next(acc.x, acc.y)
	loss, err := n.local.model.ComputeGradients(acc.x, acc.y)
	if err != nil {
		return err
	}
	if err := n.lossGuard.observe(loss); err != nil {
		return err
	}
	n.local.model.AddGrads(acc.sum, float32(batch))
	acc.samples += batch
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stats.samples += int64(batch)
	if n.stats.loss == 0 {
		n.stats.loss = float64(loss)
	} else {
		n.stats.loss = 0.95*n.stats.loss + 0.05*float64(loss)
	}
	n.stats.rate.add(batch, n.clock.Now(), &n.stats.samplesPerSec)
	return nil
}

// commit makes a strategy's outcome the local state: the optimizer step
// with an averaged gradient, or parameters as they are.
func (n *Node) commit(step uint64, out averaging.Outcome) error {
	switch {
	case out.Grad != nil:
		if err := n.apply(step, out.Grad, out.Members, out.Group); err != nil {
			return err
		}
		n.mu.Lock()
		n.stats.partShare = out.Share
		n.mu.Unlock()
	case out.Params != nil:
		n.install(out.Next, out.Params, out.Members, out.Group)
	}
	return nil
}

// apply takes the identical optimizer step every member takes; group
// becomes the candidates of the next exact round (see install).
func (n *Node) apply(step uint64, avg []float32, members, group []peer.ID) error {
	n.mu.Lock()
	lr, err := n.optimizerStep(step, n.rep.params, avg) // the same average everywhere: the same step
	if err != nil {
		// Put the last committed state back (the model and optState still
		// hold it): nothing broken is served or reported on the way out.
		n.local.model.ReadParams(n.rep.params)
		n.local.opt.LoadState(n.rep.optState)
		n.mu.Unlock()
		return err // every replica took the same step: the run, not this node, diverged
	}
	prev := n.rep.lastMembers
	n.rep.lastGroup, n.rep.lastMembers = group, members
	n.part.Round(n.ID(), members)
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

// install makes params the local state at step. members is the group it
// was averaged with (nil: a local step only); group becomes the member
// list a later exact round picks its assembler from.
func (n *Node) install(step uint64, params []float32, members, group []peer.ID) {
	n.mu.Lock()
	copy(n.rep.params, params)
	n.rep.lastGroup, n.rep.lastMembers = group, members
	if members != nil {
		n.part.Round(n.ID(), members)
	}
	n.commitLocked(step, members)
	n.mu.Unlock()
	n.publish(step)
	n.log.Debug("moshpit step", "step", step, "members", len(members))
}

// publish hands the state just committed at step to the state server
// (joiners waiting for it) and to the model (the next forward pass).
// Training loop only, after commitLocked.
func (n *Node) publish(step uint64) {
	n.states.Advanced(step)
	if err := n.local.model.WriteParams(n.rep.params); err != nil {
		n.log.Error("write params", "err", err)
	}
}

// optimizerStep is the step every path takes on params with grad: clip
// (--clip-norm), an optimizer step that leaves the frozen ranges as they
// were (not even weight decay touches them), and the divergence check.
// It returns the step's learning rate; on error the caller undoes.
func (n *Node) optimizerStep(step uint64, params, grad []float32) (lr float32, err error) {
	l := &n.local
	if n.cfg.Run.DiLoCo() {
		// The outer step: a constant rate, and no clipping (--clip-norm
		// bounds the inner steps' gradients).
		lr = n.cfg.Run.Averaging.OuterLR
	} else {
		lr = l.sched.LR(int(step))
		trainer.ClipGlobalNorm(grad, n.cfg.Run.Optimizer.ClipNorm)
	}
	keep := l.frozenKeep[:0]
	for _, r := range l.frozen {
		clear(grad[r[0]:r[1]])
		keep = append(keep, params[r[0]:r[1]]...)
	}
	l.frozenKeep = keep
	l.opt.Step(params, grad, lr)
	for _, r := range l.frozen {
		keep = keep[copy(params[r[0]:r[1]], keep):]
	}
	if err := diverged(step, params, lr); err != nil {
		return lr, err
	}
	// The optimizer's own state can overflow while the parameters stay
	// finite (Adam's v = g² of a huge gradient is +Inf, m/√v is 0): such a
	// state could be neither served nor checkpointed, nor stepped again.
	if i := l.opt.FirstNonFinite(); i >= 0 {
		return lr, fmt.Errorf("training diverged at step %d: optimizer state value %d became NaN or Inf after the step (learning rate %g); lower --lr or lengthen --warmup", step, i, lr)
	}
	return lr, nil
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

// commitLocked records that n.rep.params and the optimizer now hold the
// state at step, reached by averaging with members (nil: no round).
// Called with n.mu held.
func (n *Node) commitLocked(step uint64, members []peer.ID) {
	n.rep.step = step
	n.rep.optState = n.local.opt.AppendState(n.rep.optState[:0])
	n.rep.hash = statesync.HashState(n.rep.step, n.rep.params, n.rep.optState, n.rep.lastGroup)
	if members == nil {
		return
	}
	st := &n.stats
	st.rounds++
	now := n.clock.Now()
	st.roundsN = roundMark{step, now}
	if st.rounds == 1 {
		st.rounds0 = st.roundsN
	}
	if f := st.failing; f.count > 0 {
		// How long rounds kept failing is what an operator of a slow
		// link wants to know: it should stay within one deadline.
		failing := f.last.Sub(f.first)
		st.longestFailing = max(st.longestFailing, failing)
		n.log.Info("averaging recovered", "step", step, "failed_rounds", f.count, "failing_for", failing.Round(time.Millisecond), "deadline", n.av.Deadline().Round(time.Millisecond))
		st.failing = failStreak{}
	}
	st.groupSize = len(members)
	st.largestGroup = max(st.largestGroup, len(members))
	for _, p := range members {
		if p != n.ID() {
			st.partners[p] = struct{}{}
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
	logged      time.Time // when a failure was last logged
	quiet       int       // failures since, not logged
}

// failLogEvery spaces the warnings of one streak: a round refused at
// once is retried after each minibatch, so a stuck streak failed 1535
// times in 16 s and its warnings buried the rest of the log.
const failLogEvery = 5 * time.Second

// rateMeter turns minibatches into samples per second, over windows of
// at least a second.
type rateMeter struct {
	since   time.Time
	samples int
}

func (r *rateMeter) add(samples int, now time.Time, out *float64) {
	if r.since.IsZero() {
		r.since = now
	}
	r.samples += samples
	if el := now.Sub(r.since); el > time.Second {
		*out = float64(r.samples) / el.Seconds()
		r.samples, r.since = 0, now
	}
}

func (n *Node) noteFailure(step uint64, what string, err error) {
	n.mu.Lock()
	f := &n.stats.failing
	n.stats.failedRounds++
	now := n.clock.Now()
	if f.count == 0 {
		f.first = now
	}
	f.count++
	f.last = now
	if f.count > 1 && now.Sub(f.logged) < failLogEvery {
		f.quiet++
		n.mu.Unlock()
		return
	}
	quiet := f.quiet
	f.logged, f.quiet = now, 0
	n.mu.Unlock()
	if quiet > 0 {
		n.log.Warn(what+" failed; retrying", "step", step, "err", err, "unlogged_failures", quiet)
		return
	}
	n.log.Warn(what+" failed; retrying", "step", step, "err", err)
}

func (n *Node) publishProgress(ctx context.Context, step uint64, samples int) {
	n.mu.Lock()
	hash := n.rep.hash
	n.mu.Unlock()
	p := gossip.Progress{Peer: n.ID(), Run: n.run, Seq: n.seq.Add(1), Step: step, Hash: hash, Samples: samples}
	if err := n.bus.Publish(ctx, gossip.Message{Kind: gossip.KindProgress, Progress: &p}); err != nil && ctx.Err() == nil {
		n.log.Warn("progress", "err", err)
	}
}

// waitForPeers holds the first step until MinPeers are live, so a demo
// swarm starts together instead of one node racing ahead alone. A swarm
// already past our step has started without us: waiting for the rest of
// MinPeers then only risks the timeout (a peer reachable through a relay
// shows up late, one may have died), so we join it and sync its state.
func (n *Node) waitForPeers(ctx context.Context) error {
	need := n.cfg.MinPeers
	if n.det != nil {
		need = max(need, n.det.size) // its rounds are the whole fixed swarm's
	}
	if n.joined() {
		// A joiner first hears from the swarm it joined, so it knows the
		// swarm's step (and downloads it) instead of starting alone at 0.
		need = max(need, 2)
	}
	if need <= 1 {
		return nil
	}
	n.setPhase("waiting for peers")
	deadline := n.clock.Now().Add(n.cfg.MinPeersTimeout)
	for {
		if live := n.livePeers() + 1; live >= need || n.behind(n.currentStep()) {
			return nil
		}
		if n.clock.Now().After(deadline) {
			return fmt.Errorf("only %d of %d peers showed up within %v", n.livePeers()+1, need, n.cfg.MinPeersTimeout)
		}
		select {
		case reason := <-n.refusals:
			n.log.Warn("refusal while waiting", "reason", reason)
		case <-ctx.Done():
			return ctx.Err()
		case <-n.clock.After(50 * time.Millisecond):
		}
	}
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

// sleep waits d on the node's clock, or until ctx ends.
func (n *Node) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-n.clock.After(d):
	}
}
