package compression

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Codec ids of the sparse codecs.
const (
	IDTopK   CodecID = 6 // the k largest magnitudes
	IDSparse CodecID = 7 // every non-zero value, exactly
)

func init() {
	Register(TopK{})
	Register(Sparse{})
}

// DefaultTopK is the fraction TopK keeps when none is given.
const DefaultTopK = 0.01

// TopK keeps the ⌈Fraction·count⌉ values of largest magnitude (ties go
// to the lower index) and drops the rest; with error feedback the dropped
// mass (and the rounding of fp16 values) is sent in later rounds. Indices
// are delta-encoded as uvarints, so at 1% they cost about a byte each;
// values are fp32, or fp16 with Half.
// Payload: k u32 | value width u8 (2 or 4) | k uvarint index gaps | k values.
type TopK struct {
	Fraction float64
	Half     bool
}

func (TopK) ID() CodecID       { return IDTopK }
func (TopK) Name() string      { return "topk" }
func (TopK) ShuffleWidth() int { return 1 }

// MaxEncodedLen bounds any fraction. k gaps that sum to at most count
// take at most k·(1 + log₁₂₈(count/k)) bytes, largest at k = count (a
// byte each); with 4-byte values that is 5·count.
func (TopK) MaxEncodedLen(count int) int { return 5 + 5*count }

func (c TopK) keep(n int) int {
	f := c.Fraction
	if !(f > 0 && f <= 1) {
		f = DefaultTopK
	}
	return min(n, int(math.Ceil(f*float64(n))))
}

func (c TopK) Encode(dst []byte, src []float32) []byte {
	return encodeSparse(dst, src, topIndices(src, c.keep(len(src))), c.Half)
}

func (TopK) Decode(dst []float32, src []byte) error { return decodeSparse(dst, src, "topk") }

// Sparse sends every non-zero value, in the TopK layout: exactly, or
// rounded to fp16 with Half. The all-reduce encodes averages of TopK parts
// with it: the average of a few sparse parts is sparse, and must not be
// truncated again.
type Sparse struct{ Half bool }

func (Sparse) ID() CodecID                 { return IDSparse }
func (Sparse) Name() string                { return "sparse" }
func (Sparse) ShuffleWidth() int           { return 1 }
func (Sparse) MaxEncodedLen(count int) int { return 5 + 5*count }

func (c Sparse) Encode(dst []byte, src []float32) []byte {
	var idx []int
	for i, x := range src {
		if math.Float32bits(x) != 0 { // -0 too: exact means bit-exact
			idx = append(idx, i)
		}
	}
	return encodeSparse(dst, src, idx, c.Half)
}

func (Sparse) Decode(dst []float32, src []byte) error { return decodeSparse(dst, src, "sparse") }

func encodeSparse(dst []byte, src []float32, idx []int, half bool) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(idx)))
	width := byte(4)
	if half {
		width = 2
	}
	dst = append(dst, width)
	prev := -1
	for _, i := range idx {
		dst = binary.AppendUvarint(dst, uint64(i-prev-1))
		prev = i
	}
	for _, i := range idx {
		if half {
			dst = binary.LittleEndian.AppendUint16(dst, HalfFromFloat32(src[i]))
		} else {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(src[i]))
		}
	}
	return dst
}

func decodeSparse(dst []float32, src []byte, name string) error {
	if len(src) < 5 {
		return fmt.Errorf("%w: %s: no count", ErrMalformed, name)
	}
	k := int(binary.LittleEndian.Uint32(src))
	width := int(src[4])
	if width != 2 && width != 4 {
		return fmt.Errorf("%w: %s: value width %d", ErrMalformed, name, width)
	}
	if k > len(dst) || len(src) < 5+k+width*k { // at least a byte per gap
		return fmt.Errorf("%w: %s: %d values kept of %d in %d bytes", ErrMalformed, name, k, len(dst), len(src))
	}
	clear(dst)
	gaps := src[5 : len(src)-width*k]
	vals := src[len(src)-width*k:]
	prev := -1
	off := 0
	for j := range k {
		g, n := readUvarint(gaps[off:])
		if n <= 0 { // only the shortest form: one encoding per index
			return fmt.Errorf("%w: %s: bad index gap %d", ErrMalformed, name, j)
		}
		off += n
		if g >= uint64(len(dst)-prev-1) {
			return fmt.Errorf("%w: %s: index past the end", ErrMalformed, name)
		}
		i := prev + 1 + int(g)
		if width == 2 {
			dst[i] = Float32FromHalf(binary.LittleEndian.Uint16(vals[2*j:]))
		} else {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(vals[4*j:]))
		}
		prev = i
	}
	if off != len(gaps) {
		return fmt.Errorf("%w: %s: %d stray bytes", ErrMalformed, name, len(gaps)-off)
	}
	return nil
}

// topIndices returns, in increasing order, the indices of the k values of
// largest magnitude; ties at the threshold go to the lower indices.
func topIndices(src []float32, k int) []int {
	if k <= 0 {
		return nil
	}
	if k >= len(src) {
		idx := make([]int, len(src))
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	// Candidates: every index whose magnitude reaches a floor. On large
	// inputs a sample estimates a floor that about 2k values pass, so the
	// exact selection runs on those instead of on all n; without a floor
	// (small input, or the estimate let fewer than k through) every index
	// is a candidate and no index list is built.
	var cand []int // nil: every index
	if floor := sampleFloor(src, k); floor > 0 {
		cand = make([]int, 0, 3*k)
		for i, x := range src {
			if abs32(x) >= floor {
				cand = append(cand, i)
			}
		}
		if len(cand) < k {
			cand = nil
		}
	}
	var mags []float32 // candidates' magnitudes, in index order
	if cand == nil {
		mags = make([]float32, len(src))
		for i, x := range src {
			mags[i] = abs32(x)
		}
	} else {
		mags = make([]float32, len(cand))
		for j, i := range cand {
			mags[j] = abs32(src[i])
		}
	}
	t := kthLargest(slices.Clone(mags), k) // reorders its input
	above := 0
	for _, m := range mags {
		if m > t {
			above++
		}
	}
	ties := k - above
	idx := make([]int, 0, k)
	for j, m := range mags { // in index order: ties go to the lower index
		if m > t || (m == t && ties > 0) {
			if m == t {
				ties--
			}
			if cand == nil {
				idx = append(idx, j)
			} else {
				idx = append(idx, cand[j])
			}
		}
	}
	return idx
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// sampleFloor estimates, from an evenly spaced sample, a magnitude that
// about 2k of src's values reach (0: input too small to bother).
func sampleFloor(src []float32, k int) float32 {
	const samples = 1 << 14
	n := len(src)
	if n < 16*samples || 2*k >= n {
		return 0
	}
	s := make([]float32, samples)
	for j := range s {
		s[j] = abs32(src[int(int64(j)*int64(n)/samples)])
	}
	r := int(math.Ceil(2 * float64(k) / float64(n) * samples))
	return kthLargest(s, min(max(r, 1), samples))
}

// kthLargest returns the k-th largest value of xs (1-based), reordering
// xs: quickselect with a median-of-three pivot, linear on average.
func kthLargest(xs []float32, k int) float32 {
	lo, hi := 0, len(xs)-1
	target := k - 1 // index in descending order
	for lo < hi {
		mid := lo + (hi-lo)/2
		a, b, c := xs[lo], xs[mid], xs[hi]
		pivot := max(min(a, b), min(max(a, b), c))
		i, j := lo, hi
		for i <= j {
			for xs[i] > pivot {
				i++
			}
			for xs[j] < pivot {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case target <= j:
			hi = j
		case target >= i:
			lo = i
		default:
			return xs[target]
		}
	}
	return xs[target]
}

// parseTopK reads "F" or "F:fp16" of "topk:F[:fp16]".
func parseTopK(arg string) (Codec, error) {
	frac, prec, hasPrec := strings.Cut(arg, ":")
	f, err := strconv.ParseFloat(frac, 64)
	if err != nil || !(f > 0 && f <= 1) || (hasPrec && prec != "fp16" && prec != "fp32") {
		return nil, fmt.Errorf("codec topk:%s: want topk:F[:fp16|fp32] with F in (0, 1], e.g. topk:0.01", arg)
	}
	return TopK{Fraction: f, Half: prec == "fp16"}, nil
}
