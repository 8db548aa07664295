package trainer

import (
	"slices"
	"testing"
)

func TestBlockOrder(t *testing.T) {
	for _, c := range []struct{ n, rowBytes int }{
		{1, 784}, {10, 784}, {5000, 784}, {100_000, 784}, {300, 200 << 10}, {7000, 3072},
	} {
		b := blocksOf(c.n, c.rowBytes)
		if b.rows < 1 || (b.rows > 1 && b.rows*c.rowBytes > blockBytes) {
			t.Fatalf("n=%d rowBytes=%d: %d rows a block, want >= 1 and within %d bytes", c.n, c.rowBytes, b.rows, blockBytes)
		}
		order, starts := b.order(11)
		if len(order) != c.n || starts[0] != 0 || starts[len(starts)-1] != c.n || len(starts) != b.windows()+1 {
			t.Fatalf("n=%d: %d rows, window starts %v", c.n, len(order), starts)
		}
		if got := slices.Sorted(slices.Values(order)); !slices.Equal(got, seq(c.n)) {
			t.Fatalf("n=%d: an epoch does not visit every row once", c.n)
		}
		// Each window reads the rows of at most windowBlocks blocks.
		for w := range b.windows() {
			blk := map[int]bool{}
			for _, r := range order[starts[w]:starts[w+1]] {
				blk[r/b.rows] = true
			}
			if len(blk) > windowBlocks {
				t.Fatalf("n=%d window %d spans %d blocks, want <= %d", c.n, w, len(blk), windowBlocks)
			}
		}
		again, _ := b.order(11)
		other, _ := b.order(12)
		if !slices.Equal(order, again) {
			t.Fatalf("n=%d: the same seed gives two orders", c.n)
		}
		if c.n > 2 && slices.Equal(order, other) {
			t.Fatalf("n=%d: seeds 11 and 12 give the same order", c.n)
		}
	}
	// Pinned output: a change here means every existing run's batches move.
	if got, _ := blocksOf(40, 64<<10).order(42); !slices.Equal(got, []int{25, 34, 32, 2, 27, 28, 4, 24, 26, 13, 8, 36, 23, 37, 31, 19, 6, 1, 12, 20, 22, 18, 33, 0, 29, 30, 7, 9, 21, 3, 35, 5, 11, 17, 14, 15, 10, 38, 39, 16}) {
		t.Logf("order = %v", got)
		t.Fatal("the epoch order changed; update the pin only on purpose")
	}
}

// A window mixes rows from across the dataset, not one stretch of it.
func TestBlockOrderMixes(t *testing.T) {
	b := blocksOf(100_000, 784) // 167 rows a block, 599 blocks
	order, starts := b.order(3)
	first := order[starts[0]:starts[1]]
	if lo, hi := slices.Min(first), slices.Max(first); hi-lo < b.n/2 {
		t.Fatalf("the first window's rows lie in %d..%d of %d", lo, hi, b.n)
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
