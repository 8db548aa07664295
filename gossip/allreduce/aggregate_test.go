package allreduce

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestParseAggregate(t *testing.T) {
	for s, want := range map[string]Aggregate{"": AggregateMean, "mean": AggregateMean, "clip": AggregateClip, "trimmed": AggregateTrimmed} {
		if g, err := ParseAggregate(s); err != nil || g != want {
			t.Errorf("ParseAggregate(%q) = %v, %v; want %v", s, g, err, want)
		}
		if want.String() != s && s != "" {
			t.Errorf("%v prints as %q, want %q", want, want.String(), s)
		}
	}
	if _, err := ParseAggregate("median"); err == nil || !strings.Contains(err.Error(), `"median": want mean, clip or trimmed`) {
		t.Errorf("an unknown rule: %v", err)
	}
}

// Clipping by hand: norms 5, 5 and 50; τ = 2 × 5 = 10, so the third
// copy is scaled by 1/5 and keeps its weight in the denominator.
func TestClippedMean(t *testing.T) {
	xs := [][]float32{{3, 4}, {4, 3}, {30, 40}, nil}
	got := ClippedMean(xs, []int{1, 1, 2, 7}, 2)
	want := []float32{(3 + 4 + 2*6) / 4.0, (4 + 3 + 2*8) / 4.0}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	// With one liar of two members the lower median is the honest norm.
	got = ClippedMean([][]float32{{3, 4}, {3e30, 4e30}}, []int{1, 1}, 2)
	if want := []float32{(3 + 6) / 2.0, (4 + 8) / 2.0}; math.Abs(float64(got[0]-want[0])) > 1e-5 || math.Abs(float64(got[1]-want[1])) > 1e-5 {
		t.Errorf("two members, one liar: got %v, want %v", got, want)
	}
	// Most copies zero: so is the average, whatever the rest say.
	if got := ClippedMean([][]float32{{0, 0}, {0, 0}, {3e30, 4}}, []int{1, 1, 1}, 2); got[0] != 0 || got[1] != 0 {
		t.Errorf("median norm 0: %v, want zeros", got)
	}
	// Nothing clipped: the plain weighted mean, bit for bit.
	xs = [][]float32{{1, 2, 3}, {1.5, 2.5, 3.5}, {0.5, 1.5, 2.5}}
	got, mean := ClippedMean(xs, []int{2, 3, 4}, 2), WeightedMean(xs, []int{2, 3, 4})
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(mean[i]) {
			t.Fatalf("unclipped: %v, mean %v", got, mean)
		}
	}
}

func TestTrimCount(t *testing.T) {
	for m, want := range map[int]int{0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 6: 1, 7: 1, 8: 2, 12: 3, 100: 25} {
		if got := TrimCount(m); got != want {
			t.Errorf("TrimCount(%d) = %d, want %d", m, got, want)
		}
	}
}

// Per value the smallest and largest copies go (5 members: one each),
// whoever holds them, and the rest weigh by their samples.
func TestTrimmedMean(t *testing.T) {
	xs := [][]float32{
		{1, 100, 2},
		{2, -100, 2},
		nil, // dropped
		{3, 5, 2},
		{4, 6, 2},
		{1e30, 7, 2},
	}
	w := []int{1, 2, 9, 1, 1, 4}
	got := TrimmedMean(xs, w)
	want := []float32{
		(2*2 + 1*3 + 1*4) / 4.0, // drops 1 and 1e30
		(1*5 + 1*6 + 4*7) / 6.0, // drops -100 and 100
		2,                       // ties: any two of equal values
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	// Two members trim nothing: the weighted mean.
	if got := TrimmedMean([][]float32{{1}, {4}}, []int{2, 1}); got[0] != 2 {
		t.Errorf("two members: %v, want [2]", got)
	}
}

// The owner's reduction of one part: 4 members' copies of 1 Mi values
// (the part each of 4 hosts owns in `swarmtrain bench allreduce`'s 16
// MiB default). Compare with that command's time per round.
func BenchmarkAggregate(b *testing.B) {
	const k, n = 4, 1 << 20
	rng := rand.New(rand.NewPCG(1, 1))
	xs := make([][]float32, k)
	for i := range xs {
		xs[i] = randVec(rng, n)
	}
	weights := []int{64, 64, 64, 64}
	for _, g := range []Aggregate{AggregateMean, AggregateClip, AggregateTrimmed} {
		b.Run(g.String(), func(b *testing.B) {
			b.SetBytes(4 * k * n)
			for b.Loop() {
				g.reduce(xs, weights)
			}
		})
	}
}

// Both ways of trimming (one pass for one copy at each end, a sort for
// more) against a plain reference, on values with many ties and signs.
func TestTrimmedMeanMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for k := 3; k <= 10; k++ {
		xs := make([][]float32, k)
		w := make([]int, k)
		for m := range xs {
			xs[m] = make([]float32, 200)
			for e := range xs[m] {
				xs[m][e] = float32(rng.IntN(7) - 3) // ties on most values
				if e%3 == 0 {
					xs[m][e] = float32(rng.NormFloat64() * 1e3)
				}
			}
			w[m] = 1 + rng.IntN(100)
		}
		got := TrimmedMean(xs, w)
		b := TrimCount(k)
		for e := range got {
			// Stable by value, then member order: the first smallest and
			// the last largest go.
			order := make([]int, k)
			for i := range order {
				order[i] = i
			}
			slices.SortStableFunc(order, func(i, j int) int { return cmp.Compare(xs[i][e], xs[j][e]) })
			var sum, total float64
			for _, m := range order[b : k-b] {
				sum += float64(w[m]) * float64(xs[m][e])
				total += float64(w[m])
			}
			if want := sum / total; math.Abs(float64(got[e])-want) > 1e-6*(1+math.Abs(want)) {
				t.Fatalf("%d members, value %d: got %v, want %v", k, e, got[e], want)
			}
		}
	}
}
