package averaging

import (
	"context"
	"errors"
	"fmt"

	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
)

// diloco averages DiLoCo's pseudo-gradients (Douillard et al., 2023):
// the node runs a phase of local optimizer steps and hands Step the
// pseudo-gradient, the committed parameters minus its local ones, with
// the samples the phase saw. The pseudo-gradient goes through the run's
// exact, error-feedback or PowerSGD rounds, weighted by samples, so a
// peer that took fewer inner steps weighs less; the Outcome's Grad is
// then the outer step's gradient, which every member applies alike with
// its outer Nesterov optimizer.
//
// Without overlap Step is the base strategy's step. With it (outer
// steps a phase late, as in streaming DiLoCo), Step hands the round to a goroutine and returns at
// once; the node computes the next phase meanwhile, and the next Step
// first collects that round and commits its outer step, one phase late.
// What is in flight comes back as Outcome.Carry: the node keeps it as
// local progress on top of the state it commits, so nothing it learned
// is lost or counted twice (the next pseudo-gradient, measured from the
// committed state, has the carry taken out before it is sent).
type diloco struct {
	base    Strategy // the rounds' protocol, over pseudo-gradients
	overlap bool

	// Overlap only; the training loop alone touches these, except that
	// a flight's goroutine reads sent and writes into base.
	pending   *flight // the round in the background, nil: none
	abandoned *flight // a flight Reset dropped, still finishing
	sent      []float32
	sentN     int // samples behind sent
	avg       []float32
	reset     bool // base.Reset is due once abandoned is over
}

// flight is one round in the background.
type flight struct {
	step uint64
	done chan struct{}
	out  Outcome
	err  error
}

// Flusher is a strategy that may hold a round in flight: Flush waits for
// it and returns its outcome, launching nothing, for the run's last step.
type Flusher interface {
	InFlight() bool
	Flush(ctx context.Context, env Env, step uint64) (Outcome, error)
}

func (s *diloco) Step(ctx context.Context, env Env, step uint64, delta []float32, samples int) (Outcome, error) {
	if !s.overlap {
		return s.base.Step(ctx, env, step, delta, samples)
	}
	if err := checkLen(delta, s.sent); err != nil {
		return Outcome{}, err
	}
	if samples <= 0 {
		return Outcome{}, fmt.Errorf("averaging: a DiLoCo phase of %d samples", samples)
	}
	s.settle()
	out, err := s.collect(step)
	send, n := delta, samples
	switch {
	case err == nil && out.Grad != nil:
		// The round in flight is in the state now: send what came after.
		for i := range s.sent {
			s.sent[i] = delta[i] - s.sent[i]
		}
		send, step = s.sent, out.Next
	case err == nil: // nothing was in flight
	case errors.Is(err, allreduce.ErrBehind):
		return Outcome{}, err // the node downloads the state; delta stays its own progress
	case errors.Is(err, allreduce.ErrTooFew) || isRound(err):
		n += s.sentN // nothing applied: send all of it again
	default:
		return Outcome{}, err
	}
	copy(s.sent, send)
	s.sentN = n
	s.launch(ctx, env, step)
	out.Carry = s.sent
	if out.Grad == nil {
		out.Next = step
	}
	return out, err
}

// InFlight reports whether a round runs in the background.
func (s *diloco) InFlight() bool { return s.pending != nil }

// Flush collects the round in flight, launching none.
func (s *diloco) Flush(ctx context.Context, env Env, step uint64) (Outcome, error) {
	s.settle()
	out, err := s.collect(step)
	if err == nil && out.Grad == nil {
		out.Next = step
	}
	return out, err
}

// collect waits for the round in flight, if any, and returns its outcome
// with the average copied out of base's buffer (the next round reuses it).
func (s *diloco) collect(step uint64) (Outcome, error) {
	p := s.pending
	if p == nil {
		return Outcome{}, nil
	}
	<-p.done
	s.pending = nil
	if p.step != step {
		// The node committed another state meanwhile (it would have
		// called Reset): a programming error, not the network's.
		return Outcome{}, fmt.Errorf("averaging: a DiLoCo round of step %d collected at step %d", p.step, step)
	}
	if p.err != nil {
		return Outcome{}, p.err
	}
	copy(s.avg, p.out.Grad)
	out := p.out
	out.Grad = s.avg
	return out, nil
}

func (s *diloco) launch(ctx context.Context, env Env, step uint64) {
	f := &flight{step: step, done: make(chan struct{})}
	s.pending = f
	x, n := s.sent, s.sentN // read here: Reset may change the fields meanwhile
	go func() {
		defer close(f.done)
		f.out, f.err = s.base.Step(ctx, env, step, x, n)
	}()
}

// settle waits for a flight Reset dropped before base is used again.
func (s *diloco) settle() {
	if s.abandoned != nil {
		<-s.abandoned.done
		s.abandoned = nil
	}
	if s.reset {
		s.base.Reset()
		s.reset = false
	}
}

// Reset drops the round in flight (its outer step belongs to the state
// being replaced) without waiting for it: the node may hold its lock,
// which the round's matchmaking takes. The next Step waits for it first.
func (s *diloco) Reset() {
	if !s.overlap {
		s.base.Reset()
		return
	}
	if s.pending != nil {
		s.abandoned, s.pending = s.pending, nil
	}
	s.sentN = 0 // (sent is the abandoned round's until it ends)
	s.reset = true
}

func isRound(err error) bool {
	var re *RoundError
	return errors.As(err, &re)
}
