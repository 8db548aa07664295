// Package averaging holds the ways a swarm turns its members' local
// gradients into one step: exact all-reduce, all-reduce with error
// feedback for lossy codecs, PowerSGD's two low-rank rounds, and Moshpit
// groups above the run's maximum group; and DiLoCo's outer rounds, which
// average the pseudo-gradients of local phases through the same rounds,
// plain or overlapped with the next phase. A node holds one Strategy
// chosen from its run config and calls Step once per optimizer step; the
// strategy forms the round through the node (Env) and says what to
// commit (Outcome). Adding a mode is one file here and a case in New.
package averaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/gossip/swarm"
)

// Strategy averages one optimizer step.
type Strategy interface {
	// Step averages grad, this node's mean gradient over samples at step.
	// It returns what the node commits, and:
	//   - allreduce.ErrBehind: the swarm went on without us; download the state.
	//   - allreduce.ErrTooFew: fewer peers than the run's minimum; wait.
	//   - a *RoundError: the round failed; keep the gradient, try again.
	//   - anything else: the run cannot go on (it diverged).
	// An Outcome may come with an error: Moshpit keeps its local step
	// even when its group's round fails.
	Step(ctx context.Context, env Env, step uint64, grad []float32, samples int) (Outcome, error)
	// Reset forgets what belongs to the replica being replaced (error
	// feedback residuals): the node loaded another state.
	Reset()
}

// Env is what a strategy needs from its node.
type Env interface {
	// Swarm is the node's view of the swarm now.
	Swarm() swarm.View
	// Match forms the round of step among group (see allreduce.Matchmaker).
	Match(ctx context.Context, step uint64, samples int, group []peer.ID) (allreduce.Round, error)
	// MatchRef is Match announcing ref, the tag of the Moshpit reference
	// we hold for group (see allreduce.Matchmaker.MatchRef).
	MatchRef(ctx context.Context, step uint64, samples int, group []peer.ID, ref string) (allreduce.Round, error)
	// Params copies the committed parameters into dst.
	Params(dst []float32)
	// LocalStep takes the node's optimizer step on params with grad, as
	// the node's own apply would (clipping, frozen ranges), moving the
	// optimizer's state; an error means the step diverged, and the
	// optimizer is back at its committed state.
	LocalStep(step uint64, params, grad []float32) error
}

// Outcome is what the node commits after a step. At most one of Grad
// and Params is set; neither: nothing to commit.
type Outcome struct {
	// Next is the step the node's state is at once committed: step+1
	// when the step counts, step when it is to be tried again.
	Next uint64
	// Grad is the group's averaged gradient, bit-identical at every
	// member: the node applies its optimizer step with it.
	Grad []float32
	// Params replace the node's parameters as they are (Moshpit: the
	// optimizer already moved).
	Params []float32
	// Members averaged with us (nil: nobody, a local step).
	Members []peer.ID
	// Group is what the node remembers as its last group: the candidates
	// of the next exact round.
	Group []peer.ID
	// Share is the fraction of the vector this node owned in the round
	// (exact modes; 0 otherwise).
	Share float64
	// Carry is this node's contribution to a round still in flight
	// (overlapped DiLoCo): once it commits, the node keeps its local
	// parameters at the committed ones minus Carry, its own progress not
	// yet in the state. Valid until the next Step.
	Carry []float32
}

// RoundError is a failed round: the gradient is kept and tried again.
type RoundError struct {
	Stage string // "matchmaking" or "all-reduce"
	Err   error
}

func (e *RoundError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *RoundError) Unwrap() error { return e.Err }

// Config chooses and sizes a strategy.
type Config struct {
	Averager  *allreduce.Averager
	NumParams int
	// Codec is the per-part gradient codec; a lossy one gets error
	// feedback. Ignored with PowerSGD.
	Codec compression.Codec
	// PowerSGD, when set, replaces the per-part all-reduce by PowerSGD's
	// two low-rank rounds.
	PowerSGD *PowerSGDConfig
	// MaxGroup above 0 averages in Moshpit groups whenever the swarm has
	// more trainers than it.
	MaxGroup int
	// DiLoCo: Step averages pseudo-gradients of local phases (see
	// diloco); Overlap runs each round while the next phase computes.
	DiLoCo, Overlap bool
	Log             *slog.Logger
}

// New returns the strategy cfg describes.
func New(cfg Config) (Strategy, error) {
	if cfg.Averager == nil || cfg.NumParams <= 0 {
		return nil, errors.New("averaging: need an averager and a vector length")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var s Strategy
	switch {
	case cfg.PowerSGD != nil:
		ps, err := NewPowerSGD(*cfg.PowerSGD)
		if err != nil {
			return nil, err
		}
		s = &powerStrategy{ps: ps, av: cfg.Averager, avg: make([]float32, cfg.NumParams)}
	case cfg.Codec != nil && cfg.Codec.ID() != compression.IDFP32:
		s = &feedback{av: cfg.Averager, residual: make([]float32, cfg.NumParams), avg: make([]float32, cfg.NumParams)}
	default:
		s = &exact{av: cfg.Averager, avg: make([]float32, cfg.NumParams)}
	}
	if cfg.DiLoCo {
		if cfg.MaxGroup > 0 || (cfg.Overlap && cfg.PowerSGD != nil) {
			return nil, errors.New("averaging: DiLoCo averages whole phases: no Moshpit groups, and no PowerSGD with overlap")
		}
		return &diloco{base: s, overlap: cfg.Overlap, sent: make([]float32, cfg.NumParams), avg: make([]float32, cfg.NumParams)}, nil
	}
	if cfg.MaxGroup > 0 {
		if cfg.PowerSGD != nil {
			// PowerSGD's warm start is one Q shared by every member of a
			// round; rotating groups would each hold their own.
			return nil, errors.New("averaging: Moshpit groups with PowerSGD are not supported; use a per-value codec (int8, int4, fp16, topk)")
		}
		s = newMoshpit(s, cfg.Averager, cfg.Codec, cfg.NumParams, log)
	}
	return s, nil
}

// reduceFunc averages x over round r into out.
type reduceFunc func(ctx context.Context, r allreduce.Round, x, out []float32) error

// exactStep is one gradient all-reduce among the candidates the swarm
// policy names, by reduce; every exact mode shares it.
func exactStep(ctx context.Context, env Env, step uint64, grad []float32, samples int, reduce reduceFunc, avg []float32) (Outcome, error) {
	v := env.Swarm()
	r, err := env.Match(ctx, step, samples, v.Candidates())
	if errors.Is(err, allreduce.ErrBehind) || errors.Is(err, allreduce.ErrTooFew) {
		return Outcome{}, err
	}
	if err != nil {
		return Outcome{}, &RoundError{"matchmaking", err}
	}
	if err := reduce(ctx, r, grad, avg); err != nil {
		return Outcome{}, &RoundError{"all-reduce", err}
	}
	lo, hi := r.Bounds(len(grad), r.Index(v.Self))
	return Outcome{Next: step + 1, Grad: avg, Members: r.Members, Group: owners(r), Share: float64(hi-lo) / float64(len(grad))}, nil
}

// owners are r's members that owned a part: the candidates of the next
// exact round. A member that owned nothing (a client, which others cannot
// dial; one too slow or penalised) is no assembler either. Every member
// holds the same round, so every member picks the same list.
func owners(r allreduce.Round) []peer.ID {
	if r.Shares == nil {
		return r.Members
	}
	var out []peer.ID
	for i, p := range r.Members {
		if i < len(r.Shares) && r.Shares[i] > 0 {
			out = append(out, p)
		}
	}
	return out
}

func checkLen(grad, avg []float32) error {
	if len(grad) != len(avg) {
		return fmt.Errorf("averaging: gradient of %d values, strategy sized for %d", len(grad), len(avg))
	}
	return nil
}
