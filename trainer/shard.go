package trainer

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
)

// Randomness for data order comes from our own Fisher–Yates over the raw
// PCG output: PCG's output is specified exactly, while rand.Rand's derived
// methods (Perm, Shuffle, IntN) are not promised to stay the same across Go
// releases, and peers built with different toolchains must agree.

// Stream tags keep the shard and batch orders independent for one seed.
const (
	streamShard   = 0x7368617264 // "shard"
	streamBatch   = 0x6261746368 // "batch"
	streamSample  = 0x73616d706c // "sampl"
	streamAugment = 0x6175676d   // "augm"
)

// perm returns a permutation of 0..n-1 determined by (seed, stream).
func perm(n int, seed, stream uint64) []int {
	src := rand.NewPCG(seed, stream)
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := boundedUint64(src, uint64(i)+1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// boundedUint64 returns a uniform value in [0,n), n > 0 (Lemire's
// multiply-and-reject method: unbiased, usually one draw).
func boundedUint64(src *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}

// Shard returns part index of count of d: the rows are permuted by a PCG
// seeded from seed, the permutation is cut into count contiguous slices
// whose sizes differ by at most one (the first N%count get the extra row),
// and slice index is copied out. Every peer that knows (seed, count) thus
// agrees on who holds which row, and the shards are disjoint and cover d.
func (d *Dataset) Shard(seed uint64, index, count int) (*Dataset, error) {
	rows, err := d.ShardRows(seed, index, count)
	if err != nil {
		return nil, err
	}
	return d.rows(fmt.Sprintf("%s[%d/%d]", d.Name, index, count), rows), nil
}

// ShardRows is the rows of d that Shard copies, in its order: with
// NewRowsBatcher, a shard drawn from without a copy.
func (d *Dataset) ShardRows(seed uint64, index, count int) ([]int, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if count < 1 || count > d.N {
		return nil, fmt.Errorf("shard: count %d out of range 1..%d (rows of %q)", count, d.N, d.Name)
	}
	if index < 0 || index >= count {
		return nil, fmt.Errorf("shard: index %d out of range 0..%d", index, count-1)
	}
	lo, hi := shardBounds(d.N, index, count)
	return perm(d.N, seed, streamShard)[lo:hi], nil
}

// Sample returns n rows of d drawn without replacement by a PCG seeded
// from seed (in drawn order): a smaller training set, the same for every
// peer that knows (seed, n).
func (d *Dataset) Sample(seed uint64, n int) (*Dataset, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if n < 1 || n > d.N {
		return nil, fmt.Errorf("sample of %d rows: %q has %d rows", n, d.Name, d.N)
	}
	return d.rows(fmt.Sprintf("%s[%d rows]", d.Name, n), perm(d.N, seed, streamSample)[:n]), nil
}

// rows copies the rows p of d into a new dataset.
func (d *Dataset) rows(name string, p []int) *Dataset {
	s := &Dataset{
		Name:    name,
		Y:       make([]uint8, len(p)),
		Norm:    d.Norm,
		N:       len(p),
		Dim:     d.Dim,
		Classes: d.Classes,
		Shape:   d.Shape,
		Vocab:   d.Vocab,
		MLM:     d.MLM,
		Labels:  d.Labels,
		Resized: d.Resized,
	}
	if d.Pix != nil {
		s.Pix = make([]uint8, len(p)*d.Dim)
		for i, r := range p {
			copy(s.Pix[i*d.Dim:(i+1)*d.Dim], d.pixRow(r))
		}
	} else {
		s.X = make([]float32, len(p)*d.Dim)
		for i, r := range p {
			copy(s.X[i*d.Dim:(i+1)*d.Dim], d.X[r*d.Dim:(r+1)*d.Dim])
		}
	}
	for i, r := range p {
		s.Y[i] = d.Y[r]
	}
	d.drop() // a one-off copy: leave the source's pages
	return s
}

// shardBounds returns the half-open range of slice index among count over n.
func shardBounds(n, index, count int) (lo, hi int) {
	q, r := n/count, n%count
	lo = index*q + min(index, r)
	hi = lo + q
	if index < r {
		hi++
	}
	return lo, hi
}

// Batcher draws minibatches from a Dataset in a deterministic order: epoch
// e visits every row once, block window by block window (blocks.go), in
// an order seeded from (seed, e). Batches run on across epoch boundaries,
// so no row is dropped or repeated within an epoch. With SetMemory it keeps
// only the current window of a mapped dataset resident. A Batcher is not
// safe for concurrent use.
type Batcher struct {
	d      *Dataset
	view   []int // the rows drawn from (a shard), nil: all of d
	n      int   // rows drawn from
	batch  int
	seed   uint64
	blk    blocks
	epoch  int
	pos    int   // next index into order
	order  []int // rows of the epoch, in the order drawn
	starts []int // where each window of order starts, then len(order)
	win    int   // window of pos (-1: not entered yet)
	res    *residency
	aug    Augment
	pix    []uint8 // scratch rows for augmentation
}

// SetAugment makes Next augment image rows with a: each row's draws
// come from the Batcher's seed and the row's (epoch, position), so they
// follow Seek. d must hold pixel rows with an image shape.
func (b *Batcher) SetAugment(a Augment) error {
	if a.On() && (b.d.Pix == nil || b.d.Shape == nil) {
		return fmt.Errorf("augment %s: dataset %q has no image pixels to augment", a, b.d.Name)
	}
	b.aug = a
	b.pix = make([]uint8, 2*b.d.Dim)
	return nil
}

// NewBatcher returns a Batcher at epoch 0, position 0. It panics if d is
// nil or empty or batch < 1: those are configuration bugs, caught earlier by
// validation.
func NewBatcher(d *Dataset, batch int, seed uint64) *Batcher {
	if d == nil || d.N < 1 || batch < 1 {
		panic("trainer: NewBatcher needs a non-empty dataset and batch >= 1")
	}
	return newBatcher(d, nil, d.N, batch, seed)
}

// NewRowsBatcher is a Batcher over rows of d (ShardRows) without copying
// them: it draws the batches NewBatcher draws from the copy Shard makes,
// and under SetMemory streams them from d's pixel file. It panics if rows
// is empty or names a row d lacks, as NewBatcher does.
func NewRowsBatcher(d *Dataset, rows []int, batch int, seed uint64) *Batcher {
	if d == nil || len(rows) < 1 || batch < 1 {
		panic("trainer: NewRowsBatcher needs a non-empty dataset and batch >= 1")
	}
	for _, r := range rows {
		if r < 0 || r >= d.N {
			panic(fmt.Sprintf("trainer: NewRowsBatcher: row %d of %q out of range 0..%d", r, d.Name, d.N-1))
		}
	}
	return newBatcher(d, rows, len(rows), batch, seed)
}

func newBatcher(d *Dataset, view []int, n, batch int, seed uint64) *Batcher {
	b := &Batcher{d: d, view: view, n: n, batch: batch, seed: seed, blk: blocksOf(n, d.rowBytes())}
	b.setEpoch(0)
	return b
}

// Rows is the number of rows b draws from: an epoch.
func (b *Batcher) Rows() int { return b.n }

// row is the dataset row of row r of what b draws from.
func (b *Batcher) row(r int) int {
	if b.view != nil {
		return b.view[r]
	}
	return r
}

func (b *Batcher) epochSeed(e int) uint64 { return splitmix64(b.seed ^ splitmix64(uint64(e))) }

func (b *Batcher) setEpoch(e int) {
	b.epoch, b.pos, b.win = e, 0, -1
	b.order, b.starts = b.blk.order(b.epochSeed(e))
}

// Next fills x (batch*Dim values) and y (batch labels) with the next batch
// and returns the epoch of the batch's first row. It panics if x or y has
// the wrong length.
func (b *Batcher) Next(x []float32, y []uint8) (epoch int) {
	dim := b.d.Dim
	if len(x) != b.batch*dim || len(y) != b.batch {
		panic(fmt.Sprintf("trainer: Batcher.Next: len(x)=%d len(y)=%d, want %d and %d", len(x), len(y), b.batch*dim, b.batch))
	}
	epoch = b.epoch
	for i := range b.batch {
		if b.pos == len(b.order) {
			b.setEpoch(b.epoch + 1)
		}
		if b.win < 0 || b.pos >= b.starts[b.win+1] {
			b.enterWindow()
		}
		r := b.order[b.pos]
		switch {
		case b.aug.On():
			src := rand.NewPCG(b.epochSeed(b.epoch), streamAugment^uint64(b.pos))
			row := b.pix[:dim]
			b.aug.apply(row, b.pixRow(r), b.pix[dim:], b.d.Shape, src)
			b.d.Norm.Apply(x[i*dim:(i+1)*dim], row)
		case b.res != nil:
			b.d.Norm.Apply(x[i*dim:(i+1)*dim], b.res.row(r))
		default:
			b.d.copyRow(x[i*dim:(i+1)*dim], b.row(r))
		}
		b.pos++
		y[i] = b.d.Y[b.row(r)]
	}
	return epoch
}

// pixRow is row r's bytes: from the window's buffer when streaming.
func (b *Batcher) pixRow(r int) []uint8 {
	if b.res != nil {
		return b.res.row(r)
	}
	return b.d.pixRow(b.row(r))
}

// enterWindow moves win to the window of pos and tells the residency.
func (b *Batcher) enterWindow() {
	w := 0
	for b.starts[w+1] <= b.pos {
		w++
	}
	b.win = w
	if b.res != nil {
		b.res.enter(b.epochSeed(b.epoch), w, b.epochSeed(b.epoch+1))
	}
}

// Position reports where the next batch starts: the epoch and the number
// of rows of that epoch already drawn. With Seek it lets a joining peer or a
// restart continue the same sequence.
func (b *Batcher) Position() (epoch, offset int) { return b.epoch, b.pos }

// Seek moves to (epoch, offset) as returned by Position.
func (b *Batcher) Seek(epoch, offset int) error {
	if epoch < 0 || offset < 0 || offset > b.n {
		return fmt.Errorf("batcher: position (%d, %d) out of range (epoch >= 0, offset 0..%d)", epoch, offset, b.n)
	}
	if epoch != b.epoch {
		b.setEpoch(epoch)
	}
	b.pos, b.win = offset, -1
	return nil
}

// splitmix64 is a bijective mixer used to derive per-epoch seeds.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
