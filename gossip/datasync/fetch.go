package datasync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// maxManifest bounds a manifest frame: every chunk's hash (base64 in
// JSON) and every file's entry, with room for the keys.
const maxManifest = 4<<10 + MaxChunks*64 + MaxFiles*(maxNameLen+64)

// maxAsked caps the peers asked for a manifest in one download.
const maxAsked = 16

// Request says which dataset to download.
type Request struct {
	// Root is the dataset wanted. Empty: the root most peers announce,
	// which Check must then verify.
	Root string
	// Check verifies the downloaded files against what the run names
	// (nil: nothing beyond the root). It is required without a Root: a
	// root no one vouches for but the peers is only as good as Check.
	Check func([]File) error
	// Clock times the manifest wait (nil: the wall clock).
	Clock clock.Clock
}

// Fetched is a downloaded, verified dataset and where it came from.
type Fetched struct {
	Root   string
	Files  []File
	Chunks map[peer.ID]int   // chunks each peer delivered
	Failed map[peer.ID]error // peers dropped along the way, and why
}

type source struct {
	p peer.ID
	s gossip.Stream
	m Manifest
}

// Source is what gossip.PullChunks needs of c.
func (c source) Source() (peer.ID, gossip.Stream) { return c.p, c.s }

// Fetch downloads the dataset from peers (the first maxFetchPeers that
// serve it, in order) in parallel. It succeeds only with files whose
// every chunk matched a manifest whose root is the one wanted; a peer
// that fails, refuses or sends a chunk that does not match is dropped,
// and its chunks go to the others. The Fetched it returns is never nil:
// on failure too it says which peers failed and why (a retry may leave
// them out).
func Fetch(ctx context.Context, t gossip.Transport, peers []peer.ID, req Request) (*Fetched, error) {
	f := &Fetched{Chunks: map[peer.ID]int{}, Failed: map[peer.ID]error{}}
	if req.Root == "" && req.Check == nil {
		return f, errors.New("datasync: a request without a root needs a Check")
	}
	if len(peers) == 0 {
		return f, errors.New("no peers to download the data from")
	}
	if len(peers) > maxAsked {
		peers = peers[:maxAsked]
	}
	srcs := askAll(ctx, t, peers, req.Root, req.Clock, f.Failed)
	if len(srcs) == 0 {
		return f, fmt.Errorf("no peer serves the data: %w", gossip.JoinFailures(f.Failed))
	}
	defer func() {
		for _, c := range srcs {
			c.s.CloseWrite()
			c.s.Close()
		}
	}()
	data, err := download(ctx, srcs, f)
	if err != nil {
		return f, err
	}
	f.Root, f.Files = srcs[0].m.Root(), split(srcs[0].m, data)
	if req.Check != nil {
		if err := req.Check(f.Files); err != nil {
			for _, c := range srcs {
				f.Failed[c.p] = fmt.Errorf("served dataset %s: %w", f.Root, err)
			}
			f.Files = nil
			return f, fmt.Errorf("downloaded dataset %s: %w", f.Root, err)
		}
	}
	return f, nil
}

// askAll asks every peer for its manifest and keeps at most
// maxFetchPeers of those announcing the wanted root (or, with none
// wanted, the root most announced).
func askAll(ctx context.Context, t gossip.Transport, peers []peer.ID, want string, clk clock.Clock, failed map[peer.ID]error) []source {
	srcs, errs := gossip.AskEach(peers, func(p peer.ID) (source, error) { return ask(ctx, t, p, want, clk) })
	votes := map[string]int{}
	roots := make([]string, len(srcs))
	for i, c := range srcs {
		if errs[i] == nil {
			roots[i] = c.m.Root()
			votes[roots[i]]++
		}
	}
	chosen := want
	if chosen == "" {
		chosen = gossip.Consensus(votes)
	}
	var out []source
	for i, c := range srcs {
		switch {
		case errs[i] != nil:
			failed[peers[i]] = errs[i]
		case roots[i] != chosen:
			failed[peers[i]] = fmt.Errorf("serves dataset %s, not %s", roots[i], chosen)
			c.s.Reset()
		case len(out) >= maxFetchPeers:
			c.s.Reset() // a spare: enough peers serve already
		default:
			out = append(out, c)
		}
	}
	return out
}

// ask opens a data stream to p and checks its manifest.
func ask(ctx context.Context, t gossip.Transport, p peer.ID, want string, clk clock.Clock) (source, error) {
	c := source{p: p}
	ctx, cancel := gossip.OrWall(clk).WithTimeout(ctx, manifestWait)
	defer cancel()
	s, err := t.Open(ctx, p, gossip.ProtoData)
	if err != nil {
		return c, err
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	fail := func(err error) (source, error) {
		s.Reset()
		return c, err
	}
	b, _ := json.Marshal(request{Root: want})
	if err := s.Send(b); err != nil {
		return fail(err)
	}
	mb, err := s.Recv(maxManifest)
	if err != nil {
		return fail(err)
	}
	var a answer
	if err := json.Unmarshal(mb, &a); err != nil {
		return fail(fmt.Errorf("bad manifest: %w", err))
	}
	if a.Error != "" {
		return fail(errors.New(truncate(a.Error, 200)))
	}
	if err := a.Manifest.Validate(); err != nil {
		return fail(err)
	}
	if want != "" {
		if got := a.Manifest.Root(); got != want {
			return fail(fmt.Errorf("manifest hashes to %s, not the run's %s", got, want))
		}
	}
	c.s, c.m = s, a.Manifest
	return c, nil
}

// download pulls every chunk from the sources in parallel, each checked
// against the manifest; a source's failure hands its chunk back.
func download(ctx context.Context, srcs []source, f *Fetched) ([]byte, error) {
	m := srcs[0].m
	size := m.Size()
	n := len(m.Chunks)
	data := make([]byte, size)
	todo := make([]int, n)
	for k := range n {
		todo[k] = k
	}
	pull := &gossip.Pull{Chunks: f.Chunks, Failed: f.Failed}
	left, err := gossip.PullChunks(ctx, pull, srcs, todo, func(c source) func(int) error {
		return func(k int) error {
			lo := int64(k) * ChunkSize
			return fetchChunk(c, k, data[lo:lo+int64(chunkLen(size, k))])
		}
	})
	if err != nil {
		return nil, err
	}
	if left > 0 {
		return nil, fmt.Errorf("every peer failed with %d of %d chunks left: %w", left, n, gossip.JoinFailures(f.Failed))
	}
	return data, nil
}

// fetchChunk asks c for chunk k and checks it against the manifest
// before it counts.
func fetchChunk(c source, k int, dst []byte) error {
	b, _ := json.Marshal(chunkRequest{Chunk: k})
	if err := c.s.Send(b); err != nil {
		return err
	}
	got, err := c.s.Recv(len(dst))
	if err != nil {
		return err
	}
	if len(got) != len(dst) {
		return fmt.Errorf("%d bytes, want %d", len(got), len(dst))
	}
	if sum := sha256.Sum256(got); !bytes.Equal(sum[:], c.m.Chunks[k]) {
		return fmt.Errorf("hash %s does not match the manifest", hex.EncodeToString(sum[:8]))
	}
	copy(dst, got)
	return nil
}
