package gossip

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	// same assembler for the next step. Not covered by the state hash.
	Group []peer.ID
}

// HashState is the state hash peers gossip: SHA-256 over the step, the
// parameters and the optimizer state, as little-endian bits.
func HashState(step uint64, params, opt []float32) string {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], step)
	h.Write(b[:])
	buf := make([]byte, 0, 64<<10)
	for _, xs := range [][]float32{params, opt} {
		binary.LittleEndian.PutUint64(b[:], uint64(len(xs)))
		h.Write(b[:])
		for _, x := range xs {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
			if len(buf) == cap(buf) {
				h.Write(buf)
				buf = buf[:0]
			}
		}
		h.Write(buf)
		buf = buf[:0]
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

type stateRequest struct {
	Run string `json:"run"`
}

type stateHeader struct {
	Step    uint64    `json:"step"`
	Hash    string    `json:"hash"`
	NParams int       `json:"n_params"`
	NOpt    int       `json:"n_opt"`
	Group   []peer.ID `json:"group,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// stateChunk values per frame: 256 Ki floats = 1 MiB, well under any cap.
const stateChunk = 256 << 10

// ServeState answers state downloads with whatever snapshot returns.
func ServeState(t Transport, run string, snapshot func() (Snapshot, error)) {
	t.Handle(ProtoState, func(s Stream) {
		b, err := s.Recv(MaxMessageSize)
		if err != nil {
			s.Reset()
			return
		}
		var req stateRequest
		if json.Unmarshal(b, &req) != nil {
			s.Reset()
			return
		}
		var hdr stateHeader
		var snap Snapshot
		if req.Run != run {
			hdr.Error = "not on this run"
		} else if snap, err = snapshot(); err != nil {
			hdr.Error = err.Error()
		} else {
			hdr = stateHeader{Step: snap.Step, Hash: HashState(snap.Step, snap.Params, snap.Opt), NParams: len(snap.Params), NOpt: len(snap.Opt), Group: snap.Group}
		}
		hb, _ := json.Marshal(hdr)
		if s.Send(hb) != nil || hdr.Error != "" {
			s.Close()
			return
		}
		for _, xs := range [][]float32{snap.Params, snap.Opt} {
			for lo := 0; lo < len(xs); lo += stateChunk {
				hi := min(lo+stateChunk, len(xs))
				frame, err := encodeFP32(xs[lo:hi])
				if err != nil || s.Send(frame) != nil {
					s.Reset()
					return
				}
			}
		}
		s.Close()
	})
}

// encodeFP32 frames state values losslessly: state must arrive bit-exact.
func encodeFP32(xs []float32) ([]byte, error) {
	return compression.EncodePart(nil, compression.FP32{}, compression.LosslessNone, xs)
}

// FetchState downloads the state from p. The sizes must match what the
// caller's model expects, and the hash computed over what arrived must
// equal the one the donor announced.
func FetchState(ctx context.Context, t Transport, p peer.ID, run string, nParams, nOpt int) (Snapshot, string, error) {
	s, err := t.Open(ctx, p, ProtoState)
	if err != nil {
		return Snapshot{}, "", err
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	fail := func(err error) (Snapshot, string, error) {
		s.Reset()
		return Snapshot{}, "", fmt.Errorf("state from %s: %w", p.ShortString(), err)
	}
	req, _ := json.Marshal(stateRequest{Run: run})
	if err := s.Send(req); err != nil {
		return fail(err)
	}
	hb, err := s.Recv(MaxMessageSize)
	if err != nil {
		return fail(err)
	}
	var hdr stateHeader
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return fail(fmt.Errorf("bad header: %w", err))
	}
	if hdr.Error != "" {
		return fail(errors.New(truncate(hdr.Error, 200)))
	}
	if hdr.NParams != nParams || hdr.NOpt != nOpt {
		return fail(fmt.Errorf("donor sent %d params + %d optimizer values, this model has %d + %d", hdr.NParams, hdr.NOpt, nParams, nOpt))
	}
	if len(hdr.Group) > maxMembers {
		return fail(fmt.Errorf("donor lists a group of %d members", len(hdr.Group)))
	}
	snap := Snapshot{Step: hdr.Step, Params: make([]float32, nParams), Opt: make([]float32, nOpt), Group: hdr.Group}
	for _, xs := range [][]float32{snap.Params, snap.Opt} {
		for lo := 0; lo < len(xs); lo += stateChunk {
			hi := min(lo+stateChunk, len(xs))
			frame, err := s.Recv(maxPartFrame(hi - lo))
			if err != nil {
				return fail(err)
			}
			if err := compression.DecodePart(xs[lo:hi], frame); err != nil {
				return fail(err)
			}
		}
	}
	s.Close()
	if got := HashState(snap.Step, snap.Params, snap.Opt); got != hdr.Hash {
		return Snapshot{}, "", fmt.Errorf("state from %s: hash %s does not match announced %s", p.ShortString(), got, hdr.Hash)
	}
	return snap, hdr.Hash, nil
}
