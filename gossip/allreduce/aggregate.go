package allreduce

import (
	"fmt"
	"math"
	"slices"
)

// Aggregate is how a part owner combines its members' copies of its part
// into the one average every member gets. The owner computes it once and
// sends the same bytes to all, so any rule keeps replicas bit-identical;
// what the rule decides is how far one lying member can move them.
type Aggregate uint8

const (
	// AggregateMean is the sample-weighted mean: exact, and any one
	// member can move it anywhere.
	AggregateMean Aggregate = iota
	// AggregateClip scales every copy whose L2 norm exceeds ClipFactor ×
	// the median norm down to that bound, then takes the weighted mean:
	// a member of weight share s moves the average by at most
	// s·(τ + ‖honest mean‖) (see ClippedMean).
	AggregateClip
	// AggregateTrimmed is the coordinate-wise trimmed mean: per value the
	// TrimCount largest and smallest copies are left out (see
	// TrimmedMean). Up to TrimCount liars leave every value within the
	// range of the honest members' values.
	AggregateTrimmed
)

var aggregateNames = [...]string{AggregateMean: "mean", AggregateClip: "clip", AggregateTrimmed: "trimmed"}

func (g Aggregate) String() string {
	if int(g) < len(aggregateNames) {
		return aggregateNames[g]
	}
	return fmt.Sprintf("Aggregate(%d)", g)
}

// ParseAggregate reads a rule by name; "" is mean.
func ParseAggregate(s string) (Aggregate, error) {
	if s == "" {
		return AggregateMean, nil
	}
	if i := slices.Index(aggregateNames[:], s); i >= 0 {
		return Aggregate(i), nil
	}
	return 0, fmt.Errorf("aggregate %q: want mean, clip or trimmed", s)
}

// ClipFactor sets AggregateClip's bound τ = ClipFactor × the median of the
// members' norms. An honest minibatch gradient's squared norm is about
// ‖g‖² + tr(Σ)/b: with similar batches honest norms lie within tens of
// percent of each other, and a member with a batch 4× smaller than the
// median's (noise dominating) is still only about 2× the median. So 2
// clips honest copies rarely (and clipping one only shrinks it), while
// the bound on a liar's pull grows linearly with the factor.
const ClipFactor = 2

// reduceInto is reduce writing the mean into dst (len of the copies):
// the pipelined owner reuses one buffer for every chunk.
func (g Aggregate) reduceInto(dst []float32, xs [][]float32, weights []int) []float32 {
	if g == AggregateMean {
		return weightedMeanInto(dst, xs, weights)
	}
	return g.reduce(xs, weights)
}

// reduce combines xs (by member; nil: left out) weighted by weights.
func (g Aggregate) reduce(xs [][]float32, weights []int) []float32 {
	switch g {
	case AggregateClip:
		return ClippedMean(xs, weights, ClipFactor)
	case AggregateTrimmed:
		return TrimmedMean(xs, weights)
	}
	return WeightedMean(xs, weights)
}

// ClippedMean is the weighted mean of the non-nil xs after scaling each
// x whose L2 norm exceeds τ = factor × the median norm down to norm τ
// (the lower median: with one liar among two members the honest norm
// sets τ). The denominator stays Σ w, so a clipped member of weight
// share s = w/Σw moves the result by at most s·(τ + ‖mean of the others‖)
// from the others' weighted mean. Norms are summed in float64, which no
// finite float32 vector overflows; the mean accumulates in float32 like
// WeightedMean. When most members send zeros for the part (median norm
// 0), every copy is scaled to zero: the part averages to 0 rather than
// to what a minority, perhaps one liar, says.
func ClippedMean(xs [][]float32, weights []int, factor float64) []float32 {
	norms := make([]float64, len(xs))
	var present []float64
	for m, x := range xs {
		if x == nil {
			continue
		}
		norms[m] = l2(x)
		present = append(present, norms[m])
	}
	if len(present) == 0 {
		return nil
	}
	slices.Sort(present)
	tau := factor * present[(len(present)-1)/2]
	scaled := make([]float64, len(xs)) // per member: weight × clip scale
	for m, x := range xs {
		if x == nil {
			continue
		}
		scaled[m] = float64(weights[m])
		if norms[m] > tau {
			scaled[m] *= tau / norms[m]
		}
	}
	acc := make([]float32, len(firstPresent(xs)))
	var total float32
	for m, x := range xs {
		if x == nil {
			continue
		}
		total += float32(weights[m])
		w := float32(scaled[m])
		if w == 0 {
			continue
		}
		for e := range acc {
			acc[e] = acc[e] + float32(w*x[e])
		}
	}
	inv := float32(1) / total
	for e := range acc {
		acc[e] = float32(acc[e] * inv)
	}
	return acc
}

// l2 is x's L2 norm, summed in float64 (no finite float32 vector
// overflows it) with four sums so the adds do not wait on each other.
func l2(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		s0 += float64(v[0]) * float64(v[0])
		s1 += float64(v[1]) * float64(v[1])
		s2 += float64(v[2]) * float64(v[2])
		s3 += float64(v[3]) * float64(v[3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i]) * float64(x[i])
	}
	return math.Sqrt(s0 + s1 + s2 + s3)
}

// firstPresent returns the first non-nil x (nil if none).
func firstPresent(xs [][]float32) []float32 {
	for _, x := range xs {
		if x != nil {
			return x
		}
	}
	return nil
}

// TrimCount is how many of m copies of a value TrimmedMean leaves out at
// each end: ⌊m/4⌋, at least 1 from 3 copies on. Up to a quarter of the
// members may lie per value, while at least half the copies (from 4 on)
// are kept, so honest noise averages down nearly as in the mean; with 3
// members it is the median. Two members cannot outvote each other: 0.
func TrimCount(m int) int {
	if m < 3 {
		return 0
	}
	return max(1, m/4)
}

// TrimmedMean is, per value, the weighted mean of the non-nil xs' copies
// after leaving out the TrimCount(m) smallest and largest copies (by
// value, not by weight; ties broken by member order). The kept copies
// weigh as in the mean, so a liar's claimed samples (capped by the
// owner) only count while its value lies among the honest ones. Computed
// in float64 per value and rounded once.
func TrimmedMean(xs [][]float32, weights []int) []float32 {
	var idx []int
	for m, x := range xs {
		if x != nil {
			idx = append(idx, m)
		}
	}
	b := TrimCount(len(idx))
	if b == 0 {
		return WeightedMean(xs, weights)
	}
	k := len(idx)
	cols := make([][]float32, k) // the copies, with their weights
	ws := make([]float64, k)
	for i, m := range idx {
		cols[i], ws[i] = xs[m], float64(weights[m])
	}
	out := make([]float32, len(cols[0]))
	if b == 1 {
		trimOne(out, cols, ws)
		return out
	}
	vals := make([]float32, k)
	vw := make([]float64, k)
	for e := range out {
		// Insertion sort of k copies (k is a group size, small): values
		// with their weights.
		for i, c := range cols {
			v, w := c[e], ws[i]
			j := i
			for ; j > 0 && vals[j-1] > v; j-- {
				vals[j], vw[j] = vals[j-1], vw[j-1]
			}
			vals[j], vw[j] = v, w
		}
		var sum, total float64
		for i := b; i < k-b; i++ {
			sum += vw[i] * float64(vals[i])
			total += vw[i]
		}
		out[e] = float32(sum / total)
	}
	return out
}

// trimOne is TrimmedMean leaving out one copy at each end (3 to 7
// members, TrimCount 1): the first smallest and the last largest, as the stable sort
// would, found in one pass instead of a sort. The kept copies are summed
// afresh rather than the extremes subtracted from the whole, which a
// 1e30 would cancel away.
func trimOne(out []float32, cols [][]float32, ws []float64) {
	k := len(cols)
	// 1 / the kept weight, by which pair was left out: a product per
	// value instead of a division.
	var all float64
	for _, w := range ws {
		all += w
	}
	inv := make([]float64, k*k)
	for lo := range k {
		for hi := range k {
			inv[lo*k+hi] = 1 / (all - ws[lo] - ws[hi])
		}
	}
	var v [7]float32
	var key [7]int32
	var w [7]float64
	copy(w[:], ws)
	for e := range out {
		// Branch-free: which copy is the extreme changes from value to
		// value, so a branch mispredicts on most of them. The keys order
		// finite floats as integers (−0 before +0), whose differences'
		// signs pick the extremes.
		for i, c := range cols {
			x := c[e]
			b := int32(math.Float32bits(x))
			v[i], key[i] = x, b^int32(uint32(b>>31)>>1)
		}
		lo, hi := 0, 0
		for i := 1; i < k; i++ {
			// Masks of all ones where key[i] < key[lo], key[i] >= key[hi]:
			// Go branches on the comparisons even of integers here.
			below := int(int64(key[i])-int64(key[lo])) >> 63
			atTop := ^(int(int64(key[i])-int64(key[hi])) >> 63)
			lo ^= (lo ^ i) & below
			hi ^= (hi ^ i) & atTop
		}
		// All equal: lo is the first and hi the last, never the same.
		var sum float64
		for i := range k {
			keep := 1
			if i == lo {
				keep = 0
			}
			if i == hi {
				keep = 0
			}
			sum += float64(keep) * w[i] * float64(v[i])
		}
		out[e] = float32(sum * inv[lo*k+hi])
	}
}
