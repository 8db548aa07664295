package trainer

import "math/rand/v2"

// An epoch reads the training rows block by block, so that a node can
// keep only a window of a dataset larger than its memory resident: the
// rows are cut into blocks of about blockBytes, each epoch permutes the
// blocks, and the rows of every windowBlocks consecutive blocks of that
// permutation are shuffled together. The block size is part of the data
// order every peer must agree on, so it depends on the dataset's shape
// alone, never on a node's memory budget: a node with a budget and one
// without draw the same rows in the same order.
const (
	// blockBytes is a block's size: max(1, blockBytes/rowBytes) rows.
	// Larger blocks mean fewer, longer reads; smaller ones a finer
	// permutation of the epoch.
	blockBytes = 128 << 10
	// windowBlocks is how many blocks are shuffled together: a batch mixes
	// rows of this many places in the dataset, and a node's memory budget
	// must hold one window (windowBlocks·blockBytes, 2 MiB).
	windowBlocks = 16
)

// Stream tags of the block order.
const (
	streamBlocks = 0x626c6f636b // "block"
	streamWindow = 0x77696e646f // "windo"
)

// blocks cuts n rows into blocks of rows rows (the last may be shorter).
type blocks struct{ n, rows int }

// blocksOf is the block layout of n rows of rowBytes bytes each.
func blocksOf(n, rowBytes int) blocks {
	return blocks{n: n, rows: max(1, blockBytes/max(1, rowBytes))}
}

func (b blocks) count() int { return (b.n + b.rows - 1) / b.rows }

// span is the half-open row range of block k.
func (b blocks) span(k int) (lo, hi int) { return k * b.rows, min((k+1)*b.rows, b.n) }

// windows is the number of windows of an epoch.
func (b blocks) windows() int { return (b.count() + windowBlocks - 1) / windowBlocks }

// blockPerm is the order of the blocks in the epoch of seed.
func (b blocks) blockPerm(seed uint64) []int { return perm(b.count(), seed, streamBlocks) }

// window returns the blocks of window w of a block permutation.
func windowOf(bp []int, w int) []int {
	return bp[w*windowBlocks : min((w+1)*windowBlocks, len(bp))]
}

// order is the epoch of seed: every row once, window by window, and the
// position in that order where each window starts (plus len(order) at
// the end). A function of (seed, n, rowBytes) only.
func (b blocks) order(seed uint64) (order, starts []int) {
	bp := b.blockPerm(seed)
	order = make([]int, 0, b.n)
	starts = make([]int, 0, b.windows()+1)
	src := rand.NewPCG(seed, streamWindow)
	for w := range b.windows() {
		lo := len(order)
		starts = append(starts, lo)
		for _, k := range windowOf(bp, w) {
			r0, r1 := b.span(k)
			for r := r0; r < r1; r++ {
				order = append(order, r)
			}
		}
		win := order[lo:]
		for i := len(win) - 1; i > 0; i-- {
			j := boundedUint64(src, uint64(i)+1)
			win[i], win[j] = win[j], win[i]
		}
	}
	return order, append(starts, len(order))
}
