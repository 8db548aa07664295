package statesync

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The state hash is over little-endian fp32 bits whatever the machine:
// hashing memory in place (little-endian hosts) and encoding value by
// value (big-endian hosts) must agree, including on a chunk that
// straddles parameters and optimizer state, and the value is pinned (it
// was checked against an independent Python computation) so a format
// change cannot slip through.
func TestHashStateFormat(t *testing.T) {
	params := make([]float32, StateChunk+3)
	opt := make([]float32, StateChunk/2)
	for i := range params {
		params[i] = float32(i) * 0.25
	}
	for i := range opt {
		opt[i] = -float32(i)
	}
	fast := HashState(9, params, opt, nil)
	saved := wireBytes
	wireBytes = func([]float32) ([]byte, bool) { return nil, false }
	portable := HashState(9, params, opt, nil)
	wireBytes = saved
	if fast != portable {
		t.Fatalf("in-place hash %s differs from the encoded one %s", fast, portable)
	}
	if got, want := HashState(3, []float32{1, 2}, []float32{-0.5}, nil), "e05d690ed2a1e649ba5f949196db1c60"; got != want {
		t.Errorf("HashState(3, [1 2], [-0.5], nil) = %s, want %s", got, want)
	}
	// The group is inside the hash (its length, then each member's length
	// and bytes), and its order matters: it picks the next assembler.
	if got, want := HashState(3, []float32{1, 2}, []float32{-0.5}, []peer.ID{"a", "bc"}), "0c15d069f9813cdf0b75b8516b3703b0"; got != want {
		t.Errorf("HashState(3, [1 2], [-0.5], [a bc]) = %s, want %s", got, want)
	}
	if HashState(3, []float32{1, 2}, []float32{-0.5}, []peer.ID{"bc", "a"}) == HashState(3, []float32{1, 2}, []float32{-0.5}, []peer.ID{"a", "bc"}) {
		t.Error("the group's order does not change the hash")
	}
}

// The state of the demo's model (hidden 256, Adam): hashed after every step.
func BenchmarkHashState(b *testing.B) {
	params := make([]float32, 203530)
	opt := make([]float32, 2*len(params)+1)
	b.SetBytes(int64(4 * (len(params) + len(opt))))
	for b.Loop() {
		HashState(1, params, opt, nil)
	}
}
