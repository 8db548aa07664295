package trainer

import "time"

// The package's tunables, in one table: each with its unit and what
// raising or lowering it trades. Those that enter the numerics change the
// bits every peer computes, so all peers of a run must be built with the
// same values. Architecture defaults that a run config overrides live
// beside their model (DefaultBERTWidth, DefaultBERTHeads and
// DefaultBERTLayers in bert.go, DefaultChannels in cnn.go), and caps that
// guard against hostile input beside what they guard.
const (
	// AdamBeta1 is the per-step decay of Adam's running mean of the
	// gradient (first moment), which spans about 1/(1-β1) = 10 steps.
	// Higher: smoother updates, slower to follow a gradient that turns;
	// lower: closer to RMSProp, noisier.
	AdamBeta1 = 0.9

	// AdamBeta2 is the per-step decay of Adam's running mean of the squared
	// gradient (second moment), about 1000 steps. Higher: steadier
	// per-coordinate step sizes; lower: quicker to shrink the steps after a
	// burst of large gradients, but noisier.
	AdamBeta2 = 0.999

	// AdamEps is added to Adam's denominator √v̂, in units of the gradient.
	// Larger: coordinates with tiny gradients take smaller steps (towards
	// plain SGD); smaller: pure per-coordinate scaling, which can blow up
	// a coordinate whose gradient is near zero.
	AdamEps = 1e-8

	// MinLRDivisor sets where a node's schedule ends: Schedule.Min =
	// Base / MinLRDivisor. It is a divisor, not a fraction 0.1, because
	// Base/10 and Base*0.1 differ in the last bit. Larger: a lower final
	// rate, finer last steps but less progress at the end of the run.
	MinLRDivisor = 10

	// DecayStep divides Base by stepDecay1 from the fraction stepDecayAt1
	// of the decay span on, and by stepDecay2 from stepDecayAt2 (the
	// classic ×0.1 milestones; DecayStep's documentation states them).
	// Earlier or deeper drops settle sooner and explore less.
	stepDecayAt1, stepDecay1 = 0.5, 10
	stepDecayAt2, stepDecay2 = 0.75, 100

	// mlmMaskPercent is the percentage of ordinary tokens an MLM dataset
	// picks as targets (BERT's 15%), also the cap MaskedPerSequence puts on
	// a sequence. More: more training signal per sequence, but less
	// context left to predict it from.
	mlmMaskPercent = 15

	// mlmMaskShare and mlmRandomShare are the fractions of picked tokens
	// replaced by [MASK] and by a random ordinary token; the rest keep
	// their own token (BERT's 80/10/10). Less [MASK]: a smaller mismatch
	// with fine-tuning inputs, which never contain it, but an easier task.
	mlmMaskShare   = 0.8
	mlmRandomShare = 0.1

	// replacedWordDivisor: ReplacedDataset replaces max(1, words/
	// replacedWordDivisor) words of a passage it labels 0. Larger: fewer
	// replaced words, a harder task that needs more context to solve.
	replacedWordDivisor = 10

	// goListTimeout bounds the `go list -m` that moduleDir runs to find a
	// module's data. Longer: a slow first run of the go command still
	// answers; shorter: a broken toolchain fails the lookup sooner.
	goListTimeout = 10 * time.Second
)
