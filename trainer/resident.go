package trainer

import (
	"fmt"
	"slices"

	"github.com/dustin/go-humanize"
)

// faultAround is how much the kernel may map around a page fault of a
// file mapping from pages already cached (Linux's fault_around_bytes,
// 64 KiB by default): reading a block can make up to this much of its
// neighbours resident, until the next window drops it.
const faultAround = 64 << 10

// residency keeps the pixel rows of a mapped dataset resident a window
// at a time: entering a window drops every page of the rows outside it
// and asks the kernel to read the window (and, when the budget holds two,
// the next) ahead. It only advises the kernel, so the rows read are the
// same with or without it.
type residency struct {
	d        *Dataset
	blk      blocks
	prefetch bool  // read the next window ahead too
	spans    []int // scratch: byte ranges of the window's blocks
}

// enter is called as the Batcher starts window w of the epoch of seed;
// next is the seed of the epoch after, whose first window follows the
// last.
func (r *residency) enter(seed uint64, w int, next uint64) {
	bp := r.blk.blockPerm(seed)
	cur := slices.Sorted(slices.Values(windowOf(bp, w)))
	dim := r.d.Dim
	r.spans = r.spans[:0]
	for _, k := range cur {
		lo, hi := r.blk.span(k)
		r.spans = append(r.spans, lo*dim, hi*dim)
	}
	at := 0
	for i := 0; i < len(r.spans); i += 2 {
		r.d.dropPix(at, r.spans[i])
		at = r.spans[i+1]
		r.prefetchPix(r.spans[i], r.spans[i+1])
	}
	r.d.dropPix(at, len(r.d.Pix))
	if !r.prefetch {
		return
	}
	nb := bp
	if w++; w == r.blk.windows() {
		nb, w = r.blk.blockPerm(next), 0
	}
	for _, k := range windowOf(nb, w) {
		lo, hi := r.blk.span(k)
		r.prefetchPix(lo*dim, hi*dim)
	}
}

func (r *residency) prefetchPix(lo, hi int) {
	prefetchPages(r.d.mapping, r.d.pixOff+lo, r.d.pixOff+hi)
}

// windowData is the most pixel bytes one window of b's dataset holds.
func (b *Batcher) windowData() int64 {
	return int64(windowBlocks) * int64(b.blk.rows) * int64(b.d.rowBytes())
}

// MinMemory is the smallest budget SetMemory accepts for b's dataset:
// the labels and one window of rows, with the neighbours' pages the
// kernel may map around the window's blocks.
func (b *Batcher) MinMemory() int64 {
	return int64(b.d.N) + b.windowData() + int64(windowBlocks)*2*faultAround
}

// SetMemory makes b keep at most about budget bytes of its dataset
// resident (0: no limit): one window of rows, and a second read ahead
// when the budget holds it. The dataset must be mapped from a pixel file
// (Mapped), and the budget at least MinMemory. The rows drawn do not
// change.
func (b *Batcher) SetMemory(budget int64) error {
	if budget <= 0 {
		b.res = nil
		return nil
	}
	if !b.d.Mapped() {
		return fmt.Errorf("memory budget %s: dataset %q is not mapped from a pixel file (no --data-cache, a copy such as --shard or --train-rows makes, or text rows), so it cannot be streamed",
			humanize.IBytes(uint64(budget)), b.d.Name)
	}
	need := b.MinMemory()
	if budget < need {
		return fmt.Errorf("memory budget %s is smaller than one window of dataset %q, %s (%d blocks of %d rows of %d bytes, its labels, and pages the kernel maps around reads)",
			humanize.IBytes(uint64(budget)), b.d.Name, humanize.IBytes(uint64(need)), windowBlocks, b.blk.rows, b.d.rowBytes())
	}
	b.res = &residency{d: b.d, blk: b.blk, prefetch: budget >= need+b.windowData()}
	b.win = -1 // the next row enters its window: drops what is resident
	return nil
}
