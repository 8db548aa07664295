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
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/gossip/averaging"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// DiLoCo in a node: the replicated state (rep.params, rep.optState, the
// step) is the outer one, the global parameters and the outer Nesterov
// momentum after rep.step outer steps; it is what donors serve, joiners
// download and the hash covers. The inner optimizer and the local
// parameters of the phase under way are this node's own: a joiner starts
// them afresh from the state it downloads, and a peer that dies in the
// middle of a phase takes only that phase with it.

// phase is a DiLoCo node's local progress.
type phase struct {
	local []float32 // the model's parameters: the committed state minus our progress
	delta []float32 // scratch: the pseudo-gradient, committed minus local
	grad  *accumulator
	steps int // inner steps of the phase under way
	// unsent are the samples behind progress not handed to a round yet,
	// inflight those behind the round in flight (overlap).
	unsent, inflight int
	badGrads         int // non-finite gradients in a row
	// atStep is our samples at the current outer step (phases that
	// failed to average included), what our progress gossip reports;
	// base is what each partner reported when this phase began.
	atStep    int
	stepOf    uint64
	base      map[peer.ID]int
	waitedAt  uint64    // the step "waiting for a group" was last logged at, plus one
	published time.Time // our last progress gossip
}

// dilocoLoop is the DiLoCo loop: every iteration is a phase of up to
// InnerSteps local steps, then its outer round (with overlap: the round
// of the phase before is collected and this one launched).
func (n *Node) dilocoLoop(ctx context.Context) (*Result, error) {
	if err := n.begin(ctx); err != nil {
		return nil, err
	}
	np := n.local.model.NumParams()
	ph := &phase{local: make([]float32, np), delta: make([]float32, np),
		grad: newAccumulator(np, n.cfg.Run.Compute.Batch*n.local.train.Dim, n.cfg.Run.Compute.Batch)}
	n.mu.Lock()
	copy(ph.local, n.rep.params)
	n.mu.Unlock()
	env := strategyEnv{n}
	fl, _ := n.strategy.(averaging.Flusher)
	final := uint64(n.cfg.Run.Optimizer.Steps)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		step := n.currentStep()
		inFlight := fl != nil && fl.InFlight()
		if step >= final && !inFlight {
			n.trainingDone()
			n.settle(ctx)
			return n.finish(), nil
		}
		// With a round in flight the swarm is at step+1 once it lands.
		reach := step
		if inFlight {
			reach++
		}
		if n.resync.Load() || n.behind(reach) {
			n.det.void(fmt.Sprintf("the swarm moved past step %d without us", reach))
			if err := n.resyncDiLoCo(ctx, ph); err != nil {
				n.log.Warn("state sync failed; retrying", "err", err)
				n.sleep(ctx, 500*time.Millisecond)
			}
			continue
		}
		var out averaging.Outcome
		var err error
		if inFlight && step+1 >= final {
			// The last round: nothing more to compute for.
			out, err = fl.Flush(context.WithoutCancel(ctx), env, step)
			// Landed or not, nothing is in flight now: what failed is
			// ours to send again.
			if out.Grad == nil {
				ph.unsent += ph.inflight
			}
			ph.inflight = 0
		} else {
			phaseBegan := n.clock.Now()
			if err := n.innerPhase(ctx, ph, step, reach); err != nil {
				return nil, err
			}
			if err := ctx.Err(); err != nil {
				return nil, err // a leave: a phase cut short is not worth the others' round
			}
			if ph.unsent == 0 {
				continue // the phase ended before its first step (behind)
			}
			n.mu.Lock()
			for i, g := range n.rep.params {
				ph.delta[i] = g - ph.local[i]
			}
			n.mu.Unlock()
			began, handed := n.clock.Now(), ph.unsent
			out, err = n.strategy.Step(context.WithoutCancel(ctx), env, step, ph.delta, handed)
			if err == nil && out.Members != nil {
				n.dash.roundDone(n.clock.Since(began))
			}
			// Where a phase's wall time goes: the utilisation's story.
			n.log.Debug("phase", "step", step, "inner_steps", ph.steps, "samples", handed,
				"computing", began.Sub(phaseBegan).Round(time.Millisecond), "in_round", n.clock.Since(began).Round(time.Millisecond), "err", err)
			switch {
			case out.Carry != nil && out.Grad != nil: // the last flight landed, this phase flies
				ph.unsent, ph.inflight = 0, handed
			case out.Carry != nil: // the last flight, if any, failed: all of it flies again
				ph.unsent, ph.inflight = 0, ph.inflight+handed
			case out.Grad != nil:
				ph.unsent = 0
			}
		}
		n.det.round(step, out.Members)
		if err != nil && !errors.Is(err, allreduce.ErrBehind) { // behind: the sync voids it
			// The next phase adds to this one: a phase no other run had.
			n.det.void(fmt.Sprintf("the outer round of step %d did not average (%v)", step, err))
		}
		if err := n.commitPhase(ph, step, out); err != nil {
			return nil, err
		}
		var round *averaging.RoundError
		switch {
		case errors.Is(err, allreduce.ErrBehind):
			n.log.Info("swarm averaged without us; syncing, keeping this phase's progress", "step", step)
			n.aheadHint.Store(step + 1)
			n.resync.Store(true)
		case errors.Is(err, allreduce.ErrTooFew):
			n.setPhase("waiting for peers")
			level := slog.LevelDebug
			if ph.waitedAt != step+1 { // once a step: phases go on meanwhile
				level, ph.waitedAt = slog.LevelInfo, step+1
			}
			n.log.Log(ctx, level, "waiting for a large enough group; the next phases add to this one", "step", step, "err", err)
		case errors.As(err, &round):
			n.noteFailure(step, round.Stage, round.Err) // the next phase adds to this one
		case err != nil:
			return nil, err
		}
	}
}

// commitPhase applies an outer step the strategy returned and sets the
// local parameters to the new state minus what is still in flight.
func (n *Node) commitPhase(ph *phase, step uint64, out averaging.Outcome) error {
	if out.Grad == nil {
		return nil // nothing averaged: our progress stays local
	}
	if err := n.commit(step, out); err != nil {
		return err
	}
	n.checkpoint(false)
	n.logStep()
	n.mu.Lock()
	copy(ph.local, n.rep.params)
	n.mu.Unlock()
	for i, c := range out.Carry {
		ph.local[i] -= c
	}
	return n.local.model.WriteParams(ph.local)
}

// maxPhase bounds a phase at maxPhase × InnerSteps of our own steps: a
// fast peer makes up for slow ones (up to this), not for dead ones.
const maxPhase = 2

// innerPhase takes local steps from ph.local until the swarm has taken a
// phase's samples, InnerSteps × batch for each peer we averaged with last
// and us (slower peers take fewer steps, faster ones more, and each
// weighs in by its samples; so every round averages the same samples
// whatever the peers' speeds), or the swarm is past reach.
func (n *Node) innerPhase(ctx context.Context, ph *phase, step, reach uint64) error {
	h := n.cfg.Run.Averaging.InnerSteps
	batch := n.cfg.Run.Compute.Batch
	n.setPhase("training")
	if ph.stepOf != step {
		ph.stepOf, ph.atStep = step, 0
	}
	if ph.atStep == 0 {
		// The first phase at this step: whatever a partner already did at
		// it belongs to this phase (it began first). Discounting it would
		// have us take H steps of our own after the fastest partner ended
		// its phase, while its round waits for ours.
		clear(ph.base)
	} else {
		// A phase again at a step whose round failed: only what comes
		// after counts.
		ph.base = n.partnerSamples(step, ph.base)
	}
	most := maxPhase * h
	if n.det != nil {
		most = h // a deterministic run's phases are H steps, however fast the others
	}
	defer func() {
		// The phase's last count, for the partners' sums and bases.
		n.publishProgress(ctx, step, ph.atStep)
		ph.published = n.clock.Now()
	}()
	for ph.steps = 0; ph.steps < most; {
		if ctx.Err() != nil {
			return nil // the loop sees it
		}
		began := n.clock.Now()
		ok, err := n.innerStep(ph, step)
		n.addCompute(n.clock.Since(began))
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		if !ok {
			continue
		}
		ph.steps++
		ph.unsent += batch
		ph.atStep += batch
		if now := n.clock.Now(); now.Sub(ph.published) >= n.cfg.HeartbeatInterval/5 {
			// Paced: at every inner step it would cost more bytes per
			// sample than the rounds do.
			n.publishProgress(ctx, step, ph.atStep)
			ph.published = now
		}
		over := n.det == nil && n.phaseOver(step, ph.base, ph.steps*batch, h*batch)
		if ph.steps < most && (over || n.resync.Load() || n.behind(reach)) {
			break
		}
	}
	return nil
}

// innerStep takes one local optimizer step on one minibatch; false: the
// gradient was not finite and was dropped.
func (n *Node) innerStep(ph *phase, step uint64) (bool, error) {
	acc, l := ph.grad, &n.local
	acc.reset()
	if err := n.minibatch(acc); err != nil {
		return false, err
	}
	g := acc.mean(l.frozen)
	if i := compression.FirstNonFinite(g); i >= 0 {
		n.log.Warn("local gradient is not finite; dropping it", "step", step, "index", i, "value", g[i])
		if ph.badGrads++; ph.badGrads >= maxBadGradients {
			return false, fmt.Errorf("training diverged at step %d: the gradient was NaN or Inf %d times in a row; lower --lr or lengthen --warmup", step, ph.badGrads)
		}
		return false, nil
	}
	ph.badGrads = 0
	// The inner schedule runs over steps × H inner steps.
	t := int(step)*n.cfg.Run.Averaging.InnerSteps + ph.steps
	lr := l.sched.LR(t)
	trainer.ClipGlobalNorm(g, n.cfg.Run.Optimizer.ClipNorm)
	l.inner.Step(ph.local, g, lr)
	if len(l.frozen) > 0 {
		n.mu.Lock()
		for _, r := range l.frozen { // not even weight decay moves them
			copy(ph.local[r[0]:r[1]], n.rep.params[r[0]:r[1]])
		}
		n.mu.Unlock()
	}
	if i := compression.FirstNonFinite(ph.local); i >= 0 {
		return false, fmt.Errorf("training diverged at step %d: parameter %d became %v after inner step %d (learning rate %g); lower --lr or lengthen --warmup", step, i, ph.local[i], ph.steps, lr)
	}
	if i := l.inner.FirstNonFinite(); i >= 0 {
		return false, fmt.Errorf("training diverged at step %d: inner optimizer state value %d became NaN or Inf (learning rate %g); lower --lr or lengthen --warmup", step, i, lr)
	}
	return true, n.local.model.WriteParams(ph.local)
}

// phaseOver reports whether the swarm has taken a phase's samples at
// step: perPeer for us and each peer of our last round (before our
// first: any admitted peer), counting our own samples of this phase and
// each partner's since our phase began (base); or whether a partner is
// past step. With overlap, the first peer to end its phase collects the
// round in flight and moves to the next step at once, so its samples at
// step leave the view; that it is past step says the phase is over.
// Progress counts all samples at a step, so a phase that failed to
// average does not look finished again. Only a recent partner counts, so
// a newcomer's claim cannot cut our phases short.
func (n *Node) phaseOver(step uint64, base map[peer.ID]int, own, perPeer int) bool {
	n.mu.Lock()
	partners := n.rep.lastMembers
	n.mu.Unlock()
	peers, total := 1, own
	for _, mem := range n.view.Live(n.clock.Now()) {
		if mem.Syncing || mem.Peer == n.ID() || (partners != nil && !slices.Contains(partners, mem.Peer)) {
			continue
		}
		if mem.Step > step {
			return true
		}
		peers++ // one behind counts for nothing: the others make up for it
		if mem.Step == step && mem.ProgressStep == step {
			total += max(0, mem.ProgressSamples-base[mem.Peer])
		}
	}
	return total >= peers*perPeer
}

// partnerSamples reports, into m (cleared; nil: a new map), the samples
// each peer of our last round has gossiped for step.
func (n *Node) partnerSamples(step uint64, m map[peer.ID]int) map[peer.ID]int {
	if m == nil {
		m = map[peer.ID]int{}
	}
	clear(m)
	n.mu.Lock()
	partners := n.rep.lastMembers
	n.mu.Unlock()
	for _, mem := range n.view.Live(n.clock.Now()) {
		// Before our first round every admitted peer counts: else the
		// first phases end as far apart as the peers' speeds, and the
		// first round splits the swarm.
		if mem.Step == step && !mem.Syncing && mem.ProgressStep == step && (partners == nil || slices.Contains(partners, mem.Peer)) {
			m[mem.Peer] = mem.ProgressSamples
		}
	}
	return m
}

// resyncDiLoCo downloads the swarm's state and, when it is one outer
// step past ours, keeps our progress not in it (a phase the swarm
// averaged without us) on top of the new state: its next round adds it,
// late, rather than lose it.
func (n *Node) resyncDiLoCo(ctx context.Context, ph *phase) error {
	n.mu.Lock()
	for i, g := range n.rep.params {
		ph.delta[i] = g - ph.local[i]
	}
	n.mu.Unlock()
	n.mu.Lock()
	syncs, was := n.stats.syncs, n.rep.step
	n.mu.Unlock()
	if err := n.syncState(ctx); err != nil {
		return err
	}
	n.mu.Lock()
	if n.stats.syncs == syncs {
		n.mu.Unlock()
		return nil // no donor: our state is the swarm's, and nothing changed
	}
	// Progress made on the state one outer step before is kept (the
	// swarm averaged one round without us: ours is one phase stale, as
	// overlap's always is). Any other is dropped: a joiner's steps from
	// the initial weights, or a diverged replica's, added to the swarm's
	// state would undo what the swarm learned.
	keep := n.rep.step == was+1 && ph.unsent+ph.inflight > 0
	for i, g := range n.rep.params {
		if keep {
			ph.local[i] = g - ph.delta[i]
		} else {
			ph.local[i] = g
		}
	}
	n.mu.Unlock()
	ph.unsent, ph.inflight = ph.unsent+ph.inflight, 0 // all of it is ours to send again
	if !keep {
		ph.unsent = 0
	}
	n.log.Debug("state synced in a DiLoCo run", "was_step", was, "kept_progress", keep, "samples", ph.unsent)
	return n.local.model.WriteParams(ph.local)
}

// begin waits for the run's first peers and measures the initial loss.
func (n *Node) begin(ctx context.Context) error {
	if err := n.waitForPeers(ctx); err != nil {
		return err
	}
	n.setPhase("evaluating")
	if _, loss, err := n.local.model.Evaluate(n.local.test); err == nil {
		n.mu.Lock()
		n.stats.initialLoss = loss
		n.mu.Unlock()
	}
	n.mu.Lock()
	n.stats.rate.since = n.clock.Now() // the first window includes the first minibatch
	n.stats.trainStart = n.clock.Now()
	n.mu.Unlock()
	return nil
}

// addCompute counts d as time spent computing (forward, backward, local
// steps): the numerator of the compute utilisation.
func (n *Node) addCompute(d time.Duration) {
	n.mu.Lock()
	n.stats.compute += d
	n.mu.Unlock()
}

// trainingDone marks the last step reached: settling and the final
// evaluation are no part of the compute utilisation.
func (n *Node) trainingDone() {
	n.mu.Lock()
	if n.stats.trainEnd.IsZero() {
		n.stats.trainEnd = n.clock.Now()
	}
	n.mu.Unlock()
}

// utilisationLocked is the fraction of the time from the start of
// training to its last step (or now) spent computing. Called with n.mu
// held.
func (n *Node) utilisationLocked(now time.Time) float64 {
	st := &n.stats
	if st.trainStart.IsZero() {
		return 0
	}
	if !st.trainEnd.IsZero() {
		now = st.trainEnd
	}
	el := now.Sub(st.trainStart)
	if el <= 0 {
		return 0
	}
	return min(1, st.compute.Seconds()/el.Seconds())
}
