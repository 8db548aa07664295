package statesync

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
)

// Snapshot is the training state a joiner downloads: everything that
// must match for its next step to equal everyone else's.
type Snapshot struct {
	Step   uint64
	Params []float32
	Opt    []float32 // optimizer state (moments, step counter)
	// Group is the member list of the round that produced this state: a
	// joiner starts from the same list as everyone else, so it picks the
	// same assembler for the next step. It is inside the state hash: it
	// decides the next round, so a donor cannot forge it.
	Group []peer.ID
}

// StateChunk is how many values one chunk of the state holds (256 KiB of
// fp32): the unit a joiner fetches from one donor and verifies on its own.
const StateChunk = 64 << 10

// numChunks is how many chunks a state of n values splits into.
func numChunks(n int) int { return (n + StateChunk - 1) / StateChunk }

// ChunkHashes hashes each chunk of the state: the parameters followed by
// the optimizer state, cut every StateChunk values, each value as its
// little-endian fp32 bits.
func ChunkHashes(params, opt []float32) [][32]byte {
	n := len(params) + len(opt)
	out := make([][32]byte, numChunks(n))
	var buf []byte
	h := sha256.New()
	for k := range out {
		h.Reset()
		lo, hi := k*StateChunk, min((k+1)*StateChunk, n)
		// The chunk may straddle params and opt.
		if lo < len(params) {
			buf = writeBits(h, buf, params[lo:min(hi, len(params))])
		}
		if hi > len(params) {
			buf = writeBits(h, buf, opt[max(lo-len(params), 0):hi-len(params)])
		}
		h.Sum(out[k][:0])
	}
	return out
}

// chunkValues returns chunk k of params ‖ opt: a subslice when the chunk
// lies in one of them, else a copy into scratch (returned for reuse).
func chunkValues(params, opt []float32, k int, scratch []float32) (vals, scratchOut []float32) {
	lo, hi := k*StateChunk, min((k+1)*StateChunk, len(params)+len(opt))
	switch {
	case hi <= len(params):
		return params[lo:hi], scratch
	case lo >= len(params):
		return opt[lo-len(params) : hi-len(params)], scratch
	}
	scratch = append(append(scratch[:0], params[lo:]...), opt[:hi-len(params)]...)
	return scratch, scratch
}

// writeBits writes xs as little-endian fp32 bits to h. On little-endian
// machines (nearly all) that is their memory as it is, hashed in place:
// a state is hashed after every step, so the copy would cost more than the
// hash. buf is scratch for the others.
func writeBits(h hash.Hash, buf []byte, xs []float32) []byte {
	if len(xs) == 0 {
		return buf
	}
	if b, ok := wireBytes(xs); ok {
		h.Write(b)
		return buf
	}
	buf = buf[:0]
	for _, x := range xs {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
	}
	h.Write(buf)
	return buf
}

// wireBytes is compression.WireBytes; the format test swaps in the
// portable path.
var wireBytes = compression.WireBytes

// HashState is the state hash peers gossip. It is a hash over the step,
// the sizes, the chunk hashes and the group (the last round's members,
// which pick the next round's assembler), so a joiner can check a donor's
// manifest against the hash the swarm agrees on, and then every chunk on
// arrival, from whichever donor sent it. Every member of a round holds
// the same group (the assembler's list), so replicas still agree.
func HashState(step uint64, params, opt []float32, group []peer.ID) string {
	return hashManifest(step, len(params), len(opt), ChunkHashes(params, opt), group)
}

// hashManifest hashes step, sizes and chunks as little-endian uint64s and
// raw digests; then, when there is a group, its length and each member
// as a length-prefixed byte string. The number of chunks follows from the
// sizes, so the group cannot be mistaken for chunks; a state without a
// group hashes as it did before groups were covered.
func hashManifest(step uint64, nParams, nOpt int, chunks [][32]byte, group []peer.ID) string {
	h := sha256.New()
	var b [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	for _, v := range []uint64{step, uint64(nParams), uint64(nOpt), StateChunk} {
		put(v)
	}
	for _, c := range chunks {
		h.Write(c[:])
	}
	if len(group) > 0 {
		put(uint64(len(group)))
		for _, p := range group {
			put(uint64(len(p)))
			h.Write([]byte(p))
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
