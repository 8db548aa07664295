package allreduce

import (
	"math"
	"slices"
	"time"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// How long a round may take. A round's deadline must be long enough for
// the slowest member to move its bytes, or the swarm stalls for good: a
// deadline learned only from past rounds never grows back once it is too
// short. So the budget of a round is the larger of what its bytes need on
// the members' measured links and what recent rounds took; each failed
// round in a row doubles it, up to a cap that itself follows the round's
// bytes (a large model on a slow link needs minutes, and must get them).

// roundBudget is the deadline of one round, from its start.
//
//	need    = open + slack × transfer        (transfer: the slowest member's bytes at its rate)
//	cap     = max(capFloor, capFactor × need)
//	base    = cap before any round succeeded, else max(factor × recent, need, floor)
//	budget  = min(base × 2^failures, cap)
type roundBudget struct {
	open     time.Duration // opening the round's streams, dials included
	transfer time.Duration // the slowest member's bytes at its link rate
	slack    float64       // transfer × slack: room for congestion, CPU, encoding
	recent   time.Duration // moving average of successful rounds; 0: none yet
	factor   float64       // recent × factor
	floor    time.Duration // the least a round is given once rounds are measured
	capFloor time.Duration // the configured RoundTimeout: the cap for small rounds
	failures int           // rounds failed in a row since the last success
}

// maxDuration keeps float products of durations representable.
const maxDuration = time.Duration(1 << 62)

// seconds converts a float number of seconds, saturating.
func seconds(s float64) time.Duration {
	if !(s < maxDuration.Seconds()) {
		return maxDuration
	}
	return time.Duration(s * float64(time.Second))
}

func (b roundBudget) need() time.Duration {
	return min(b.open+seconds(b.slack*b.transfer.Seconds()), maxDuration/capFactor)
}

// cap is the most the round may ever take.
func (b roundBudget) cap() time.Duration {
	return max(b.capFloor, capFactor*b.need())
}

// deadline is the time the round may take.
func (b roundBudget) deadline() time.Duration {
	limit := b.cap()
	base := limit
	if b.recent > 0 {
		base = max(seconds(b.factor*b.recent.Seconds()), b.need(), b.floor)
	}
	for range b.failures {
		if base >= limit/2 {
			return limit
		}
		base *= 2
	}
	return min(base, limit)
}

// openTimeout is how long opening one stream may take: it doubles with
// failures like the round, so a dial that needs longer on a congested
// link is waited for after a failure or two, while it is under half the
// round's deadline (the rest is for moving the parts).
func (b roundBudget) openTimeout() time.Duration {
	d, round := b.open, b.deadline()
	for range b.failures {
		if d >= round/2 {
			break
		}
		d *= 2
	}
	return min(d, round)
}

// TransferTime predicts how long the slowest member of r takes to move
// its bytes in a round over a vector of n values: member i uploads its
// copy of every other owner's part and, if it owns a part, the average of
// it to each other member, at rate Rates[i] (bytes/s; minRate where the
// member has not measured its link, and at least minRate: the slowest link
// the swarm waits for). bytes gives the wire size of values
// [lo, hi) as a part and as a result. Downloads mirror uploads in size and
// are not counted again: the measured rate is how fast parts reached
// their owners, so a slow receiver already shows in its senders' rates.
func TransferTime(r Round, n int, minRate float64, bytes func(lo, hi int) (part, result int)) time.Duration {
	k := len(r.Members)
	parts := make([]int, k)
	results := make([]int, k)
	for j := range k {
		if lo, hi := r.Bounds(n, j); lo < hi {
			parts[j], results[j] = bytes(lo, hi)
		}
	}
	var total int
	for _, p := range parts {
		total += p
	}
	var worst float64
	for i := range k {
		up := total - parts[i] + (k-1)*results[i]
		rate := minRate // also the floor: the assembler's word cannot stretch a round past it
		if i < len(r.Rates) {
			rate = max(rate, r.Rates[i])
		}
		if rate > 0 {
			worst = max(worst, float64(up)/rate)
		}
	}
	return seconds(worst)
}

// Part shares are integers in units of 1/shareTotal of the vector, the
// most a Group may carry; a member owns at most maxShareFactor times an
// even split among the members that can own parts (defaults.go).
const shareTotal = gossip.MaxShare

// PartShares sizes the members' parts so that the slowest member's
// uploads end as early as they can. A member i that owns a fraction p of
// a vector of k members uploads 1 + (k-2)·p of it (its copies of the
// others' parts, then its average to each of them), at its measured
// uplink rate r_i. The round lasts as long as its slowest member, so
//
//   - T is the round time the links allow: the least T at which
//     fractions p_i ≤ (T·r_i − 1)/(k−2) can add up to 1 (water filling),
//     and never less than the slowest member's 1/r_i, which no share
//     can lower;
//   - within those bounds the parts are made as even as they can be
//     (a common level λ, p_i = min(bound_i, λ)): a fast link is no
//     reason to own more than needed, since owners also average.
//
// A member on a slow uplink thus owns less, or nothing. Clients own
// nothing; members that measured nothing yet count at the median rate.
// Nil means an even split (all equal, or nobody measured).
func PartShares(joins []gossip.Join) []int {
	k := len(joins)
	var measured []float64
	servers := 0
	for _, j := range joins {
		if !j.Client {
			servers++
		}
		if j.Uplink > 0 {
			measured = append(measured, j.Uplink)
		}
	}
	if servers == 0 {
		return nil // nobody can take parts; an even split fails the round visibly
	}
	fracs := make([]float64, k)
	limit := float64(maxShareFactor) / float64(servers)
	if len(measured) == 0 || k <= 2 {
		// No rates, or two members: each uploads the whole vector
		// whatever the split, so the split cannot help.
		for i, j := range joins {
			if !j.Client {
				fracs[i] = 1 / float64(servers)
			}
		}
		return sharesOf(fracs)
	}
	slices.Sort(measured)
	median := measured[len(measured)/2]
	rates := make([]float64, k)
	for i, j := range joins {
		rates[i] = j.Uplink
		if rates[i] <= 0 {
			rates[i] = median
		}
	}
	bound := func(i int, t float64) float64 {
		if joins[i].Client {
			return 0
		}
		return min(max((t*rates[i]-1)/float64(k-2), 0), limit)
	}
	owned := func(t, level float64) float64 {
		var s float64
		for i := range k {
			s += min(bound(i, t), level)
		}
		return s
	}
	// T: water filling, by bisection (owned grows with t); then no less
	// than what the slowest member needs even owning nothing.
	hi := 1.0
	for owned(hi, limit) < 1 {
		hi *= 2
	}
	t := leastCovering(hi, func(t float64) bool { return owned(t, limit) >= 1 })
	for _, r := range rates {
		t = max(t, 1/r)
	}
	// λ: the most even split within the bounds at T.
	level := leastCovering(limit, func(l float64) bool { return owned(t, l) >= 1 })
	for i := range k {
		fracs[i] = min(bound(i, t), level)
	}
	return sharesOf(fracs)
}

// leastCovering bisects [0, hi] for the least x at which the monotone
// covers(x) holds (covers(hi) must).
func leastCovering(hi float64, covers func(float64) bool) float64 {
	lo := 0.0
	for range 100 {
		if mid := (lo + hi) / 2; covers(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// sharesOf turns fractions into integer shares; nil when all are equal.
func sharesOf(fracs []float64) []int {
	var sum float64
	for _, f := range fracs {
		sum += f
	}
	shares := make([]int, len(fracs))
	even := true
	for i, f := range fracs {
		shares[i] = int(math.Round(f / sum * shareTotal))
		even = even && shares[i] == shares[0]
	}
	if even {
		return nil
	}
	return shares
}
