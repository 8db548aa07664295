package trainer

import (
	"fmt"
	"slices"

	"github.com/dustin/go-humanize"
)

// residency holds the rows of a streamed dataset's current window: on
// entering a window it reads the window's blocks from the pixel file into
// one buffer (pread, not the mapping: a read through a mapping makes the
// kernel map whole page-cache folios, up to 2 MiB around each, so what is
// resident would not be ours to bound), and asks the kernel to read the
// next window ahead when the budget holds two. The bytes are the file's,
// so the rows drawn are the same with or without it.
type residency struct {
	d        *Dataset
	view     []int // the Batcher's rows of d (nil: all)
	blk      blocks
	prefetch bool
	buf      []uint8     // the window's rows, its blocks in ascending order
	base     map[int]int // block → row index in buf of its first row
	seed     uint64      // of the epoch bp is the block order of
	bp       []int
}

func newResidency(d *Dataset, view []int, blk blocks, prefetch bool) *residency {
	return &residency{d: d, view: view, blk: blk, prefetch: prefetch,
		buf:  make([]uint8, 0, windowBlocks*blk.rows*d.Dim),
		base: make(map[int]int, windowBlocks)}
}

// enter is called as the Batcher starts window w of the epoch of seed;
// next is the seed of the epoch after, whose first window follows the
// last.
func (r *residency) enter(seed uint64, w int, next uint64) {
	if r.bp == nil || r.seed != seed {
		r.bp, r.seed = r.blk.blockPerm(seed), seed // once an epoch, not a window
	}
	bp := r.bp
	dim := r.d.Dim
	r.buf = r.buf[:0]
	clear(r.base)
	for _, k := range slices.Sorted(slices.Values(windowOf(bp, w))) {
		lo, hi := r.blk.span(k)
		r.base[k] = len(r.buf) / dim
		// One read per run of consecutive dataset rows: a block of all
		// of d is one; a shard's rows are scattered.
		for j := lo; j < hi; {
			e := j + 1
			for e < hi && r.parent(e) == r.parent(e-1)+1 {
				e++
			}
			n := len(r.buf)
			r.buf = r.buf[:n+(e-j)*dim]
			r.d.readPix(r.buf[n:], r.parent(j)*dim)
			j = e
		}
	}
	if !r.prefetch {
		return
	}
	nb := bp
	if w++; w == r.blk.windows() {
		nb, w = r.blk.blockPerm(next), 0
	}
	if r.view != nil {
		return // scattered rows: a read ahead a row would cost what the read does
	}
	for _, k := range windowOf(nb, w) {
		lo, hi := r.blk.span(k)
		readAhead(r.d.src, int64(r.d.pixOff+lo*dim), int64((hi-lo)*dim))
	}
}

// parent is the dataset row of row j of the Batcher's rows.
func (r *residency) parent(j int) int {
	if r.view != nil {
		return r.view[j]
	}
	return j
}

// row is row i of the dataset, which must be in the current window.
func (r *residency) row(i int) []uint8 {
	k := i / r.blk.rows
	j := r.base[k] + i - k*r.blk.rows
	return r.buf[j*r.d.Dim : (j+1)*r.d.Dim]
}

// windowData is the most pixel bytes one window of b's dataset holds.
func (b *Batcher) windowData() int64 {
	return int64(windowBlocks) * int64(b.blk.rows) * int64(b.d.rowBytes())
}

// MinMemory is the smallest budget SetMemory accepts for b's dataset:
// one window of rows, the labels of the dataset (a byte a row, kept on
// the heap) and the epoch's order (8 bytes a row drawn from).
func (b *Batcher) MinMemory() int64 { return b.windowData() + int64(b.d.N) + 8*int64(b.n) }

// SetMemory makes b keep at most budget bytes of its dataset resident
// (0: no limit): the labels and one window of rows, read from the pixel
// file as the window starts, the next window read ahead into the page
// cache when the budget holds two. The dataset must be mapped from a
// pixel file (Mapped), and the budget at least MinMemory. The rows drawn
// do not change.
func (b *Batcher) SetMemory(budget int64) error {
	if budget <= 0 {
		b.res, b.win = nil, -1
		return nil
	}
	if !b.d.Mapped() {
		return fmt.Errorf("memory budget %s: dataset %q is not mapped from a pixel file (no --data-cache, a copy such as --train-rows makes, or text rows), so it cannot be streamed",
			humanize.IBytes(uint64(budget)), b.d.Name)
	}
	need := b.MinMemory()
	if budget < need {
		return fmt.Errorf("memory budget %s is smaller than one window of dataset %q, %s (%d blocks of %d rows of %d bytes, the labels and the epoch's order)",
			humanize.IBytes(uint64(budget)), b.d.Name, humanize.IBytes(uint64(need)), windowBlocks, b.blk.rows, b.d.rowBytes())
	}
	if err := b.d.StreamRows(); err != nil {
		return err
	}
	b.res = newResidency(b.d, b.view, b.blk, budget >= need+b.windowData())
	b.win = -1 // the next row enters its window
	return nil
}
