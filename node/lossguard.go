package node

import (
	"fmt"
	"math"
)

// A learning rate too high for the model can send the loss up by orders of
// magnitude for a few steps and then kill every ReLU: from there the
// gradients are finite, the model sits at chance and the NaN checks never
// fire, so the run would spend its whole budget on a dead model. The loss
// guard stops it at the blow-up instead.
const (
	// blowupFactor: a minibatch loss this many times the reference is a
	// blow-up. Legitimate spikes (a hard batch, a warm restart) stay
	// within a few times the loss the run started from.
	blowupFactor = 100
	// blowupRun is how many blow-ups in a row end the run: one hostile or
	// corrupt batch must not.
	blowupRun = 3
	// lossFloor bounds the reference from below, so a run resumed at a
	// tiny loss is not stopped by an ordinary bump.
	lossFloor = 1
)

// lossGuard watches one process's minibatch losses.
type lossGuard struct {
	ref float64 // the first finite loss seen, at least lossFloor; 0: none yet
	run int     // blow-ups in a row
}

// observe takes one minibatch's loss and returns an error once the loss
// has blown up blowupRun times in a row. A NaN or infinite loss counts as
// a blow-up.
func (g *lossGuard) observe(loss float32) error {
	l := float64(loss)
	finite := !math.IsNaN(l) && !math.IsInf(l, 0)
	if g.ref == 0 {
		if !finite {
			return nil // no reference yet; the gradient checks see this one
		}
		g.ref = max(l, lossFloor)
		return nil
	}
	if finite && l <= blowupFactor*g.ref {
		g.run = 0
		return nil
	}
	if g.run++; g.run < blowupRun {
		return nil
	}
	return fmt.Errorf("training diverged: the minibatch loss was %.4g, over %d× the first loss %.4g, %d minibatches in a row; lower --lr or lengthen --warmup", l, blowupFactor, g.ref, g.run)
}
