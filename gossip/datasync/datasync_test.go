package datasync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/gossiptest"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// testFiles is a dataset of a few chunks whose files do not end on chunk
// boundaries, and an empty file.
func testFiles(seed byte) []File {
	mk := func(n int, salt byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*31) ^ salt ^ seed
		}
		return b
	}
	return []File{
		{Name: "train-images-idx3-ubyte.gz", Data: mk(3*ChunkSize+1234, 1)},
		{Name: "empty", Data: nil},
		{Name: "t10k-labels-idx1-ubyte.gz", Data: mk(ChunkSize/3, 2)},
		{Name: "vocab.txt", Data: mk(2*ChunkSize+7, 3)},
	}
}

func mustDataset(t *testing.T, files []File) *Dataset {
	t.Helper()
	ds, err := NewDataset(files)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func sameFiles(t *testing.T, got, want []File) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d files, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Name != want[i].Name || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("file %d: got %q (%d bytes), want %q (%d bytes)", i, got[i].Name, len(got[i].Data), want[i].Name, len(want[i].Data))
		}
	}
}

// Three peers serve; the last peer downloads from all of them at once and
// gets the files byte for byte, each peer delivering part of them.
func TestFetchFromSeveralPeers(t *testing.T) {
	net, ts, ids := gossiptest.MemPeers(4)
	files := testFiles(0)
	ds := mustDataset(t, files)
	for _, tr := range ts[:3] {
		NewServer(tr, ds, nil)
	}
	// Chunks take a moment to go out, so no one peer serves them all
	// before the others have started.
	net.SlowDelay = 20 * time.Millisecond
	net.SetFault(func(e gossip.FrameEvent) gossip.FrameAction {
		if e.Proto == gossip.ProtoData && !e.Opener && e.Seq > 0 {
			return gossip.Slow
		}
		return gossip.Deliver
	})
	got, err := Fetch(context.Background(), ts[3], ids[:3], Request{Root: ds.Root()})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, got.Files, files)
	if got.Root != ds.Root() {
		t.Fatalf("root %s, want %s", got.Root, ds.Root())
	}
	total := 0
	for _, p := range ids[:3] {
		if got.Chunks[p] == 0 {
			t.Fatalf("peer %s delivered no chunk: %v", p.ShortString(), got.Chunks)
		}
		total += got.Chunks[p]
	}
	if n := len(ds.Manifest().Chunks); total != n {
		t.Fatalf("%d chunks delivered, the dataset has %d", total, n)
	}
}

// A peer that serves the right manifest but corrupted chunks is dropped
// at its first bad chunk; the others finish the download, and the files
// are right.
func TestCorruptingPeerIsDropped(t *testing.T) {
	net, ts, ids := gossiptest.MemPeers(3)
	files := testFiles(0)
	ds := mustDataset(t, files)
	NewServer(ts[0], ds, nil)
	NewServer(ts[1], ds, nil)
	liar := ids[0]
	// The honest peer's chunks take a moment, so it cannot serve them
	// all before the liar is asked for one.
	net.SlowDelay = 20 * time.Millisecond
	net.SetFault(func(e gossip.FrameEvent) gossip.FrameAction {
		switch {
		case e.Proto != gossip.ProtoData || e.Opener || e.Seq == 0:
			return gossip.Deliver
		case e.From == liar:
			return gossip.Corrupt // every chunk, not the manifest
		}
		return gossip.Slow
	})
	got, err := Fetch(context.Background(), ts[2], ids[:2], Request{Root: ds.Root()})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, got.Files, files)
	if err := got.Failed[liar]; err == nil || !strings.Contains(err.Error(), "does not match the manifest") {
		t.Fatalf("the corrupting peer was not dropped for a bad chunk: %v", err)
	}
	if got.Chunks[liar] != 0 {
		t.Fatalf("%d corrupted chunks were taken from the liar", got.Chunks[liar])
	}
	if _, ok := got.Failed[ids[1]]; ok {
		t.Fatalf("the honest peer was dropped: %v", got.Failed[ids[1]])
	}
}

// When every peer lies, the download fails with why, and no bad file is
// returned.
func TestEveryPeerCorrupting(t *testing.T) {
	net, ts, ids := gossiptest.MemPeers(3)
	ds := mustDataset(t, testFiles(0))
	NewServer(ts[0], ds, nil)
	NewServer(ts[1], ds, nil)
	net.SetFault(func(e gossip.FrameEvent) gossip.FrameAction {
		if e.Proto == gossip.ProtoData && !e.Opener && e.Seq > 0 {
			return gossip.Corrupt
		}
		return gossip.Deliver
	})
	got, err := Fetch(context.Background(), ts[2], ids[:2], Request{Root: ds.Root()})
	if err == nil || !strings.Contains(err.Error(), "does not match the manifest") {
		t.Fatalf("got %v, err %v; want a failure naming the bad chunks", got, err)
	}
}

// A peer serving another dataset (its manifest hashes to another root)
// is refused before a chunk is asked of it.
func TestOtherDatasetIsRefused(t *testing.T) {
	_, ts, ids := gossiptest.MemPeers(3)
	files := testFiles(0)
	ds := mustDataset(t, files)
	NewServer(ts[0], mustDataset(t, testFiles(9)), nil)
	NewServer(ts[1], ds, nil)
	got, err := Fetch(context.Background(), ts[2], ids[:2], Request{Root: ds.Root()})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, got.Files, files)
	if err := got.Failed[ids[0]]; err == nil || !strings.Contains(err.Error(), "serves dataset") {
		t.Fatalf("the peer with other data was not refused: %v", err)
	}
	if got.Chunks[ids[0]] != 0 {
		t.Fatal("chunks were taken from the peer with other data")
	}
}

// A lying manifest that lists the right chunk hashes under other sizes
// or names hashes to another root: refused. The test speaks the protocol
// by hand, as a hostile server would.
func TestLyingManifestIsRefused(t *testing.T) {
	_, ts, ids := gossiptest.MemPeers(2)
	ds := mustDataset(t, testFiles(0))
	m := ds.Manifest()
	m.Files = append([]Entry(nil), m.Files...)
	m.Files[0].Name = "other-name"
	ts[0].Handle(gossip.ProtoData, func(s gossip.Stream) {
		s.Recv(maxRequest)
		b, _ := json.Marshal(answer{Manifest: m})
		s.Send(b)
		s.Close()
	})
	_, err := Fetch(context.Background(), ts[1], ids[:1], Request{Root: ds.Root()})
	if err == nil || !strings.Contains(err.Error(), "not the run's") {
		t.Fatalf("want the manifest refused for its root, got %v", err)
	}
}

// Without a root, the one most peers announce is downloaded and Check
// decides; a Check that fails fails the download and names the dataset.
func TestFetchWithoutRootChecks(t *testing.T) {
	_, ts, ids := gossiptest.MemPeers(4)
	files := testFiles(0)
	ds := mustDataset(t, files)
	NewServer(ts[0], ds, nil)
	NewServer(ts[1], ds, nil)
	NewServer(ts[2], mustDataset(t, testFiles(5)), nil)
	checked := 0
	ok := func(fs []File) error {
		checked++
		sameFiles(t, fs, files)
		return nil
	}
	got, err := Fetch(context.Background(), ts[3], ids[:3], Request{Check: ok})
	if err != nil {
		t.Fatal(err)
	}
	if checked != 1 || got.Root != ds.Root() {
		t.Fatalf("checked %d times, root %s; want once, %s", checked, got.Root, ds.Root())
	}
	if _, err := Fetch(context.Background(), ts[3], ids[:3], Request{Check: func([]File) error { return errors.New("not the run's files") }}); err == nil || !strings.Contains(err.Error(), "not the run's files") {
		t.Fatalf("a failed check passed: %v", err)
	}
	if _, err := Fetch(context.Background(), ts[3], ids[:3], Request{}); err == nil {
		t.Fatal("a request with neither root nor check was accepted")
	}
}

// A peer that does not serve data (no handler: --no-serve-data) is
// skipped with its error; with no one serving, the error says so.
func TestNoServers(t *testing.T) {
	_, ts, ids := gossiptest.MemPeers(3)
	ds := mustDataset(t, testFiles(0))
	NewServer(ts[1], ds, nil)
	got, err := Fetch(context.Background(), ts[2], ids[:2], Request{Root: ds.Root()})
	if err != nil {
		t.Fatal(err)
	}
	if got.Failed[ids[0]] == nil || got.Chunks[ids[1]] != len(ds.Manifest().Chunks) {
		t.Fatalf("failed %v, chunks %v", got.Failed, got.Chunks)
	}
	if _, err := Fetch(context.Background(), ts[2], ids[:1], Request{Root: ds.Root()}); err == nil || !strings.Contains(err.Error(), "no peer serves the data") {
		t.Fatalf("got %v", err)
	}
}

// openData opens a raw data stream from tr to p and reads the manifest.
func openData(t *testing.T, tr gossip.Transport, p peer.ID) (gossip.Stream, answer) {
	t.Helper()
	s, err := tr.Open(context.Background(), p, gossip.ProtoData)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(request{})
	if err := s.Send(b); err != nil {
		t.Fatal(err)
	}
	mb, err := s.Recv(maxManifest)
	if err != nil {
		t.Fatal(err)
	}
	var a answer
	if err := json.Unmarshal(mb, &a); err != nil {
		t.Fatal(err)
	}
	return s, a
}

func askChunk(s gossip.Stream, k int) ([]byte, error) {
	b, _ := json.Marshal(chunkRequest{Chunk: k})
	if err := s.Send(b); err != nil {
		return nil, err
	}
	return s.Recv(ChunkSize)
}

// A server caps one peer's streams, serves each chunk about once per
// stream, and resets a stream that asks for a chunk it does not have.
func TestServerLimits(t *testing.T) {
	_, ts, ids := gossiptest.MemPeers(3)
	ds := mustDataset(t, testFiles(0))
	NewServer(ts[0], ds, nil)
	n := len(ds.Manifest().Chunks)

	var held []gossip.Stream
	for range maxStreamsPerPeer {
		s, a := openData(t, ts[1], ids[0])
		if a.Error != "" {
			t.Fatalf("stream refused: %s", a.Error)
		}
		held = append(held, s)
	}
	if _, a := openData(t, ts[1], ids[0]); !strings.Contains(a.Error, "busy") {
		t.Fatalf("stream %d of one peer was served: %+v", maxStreamsPerPeer+1, a.Error)
	}
	if _, a := openData(t, ts[2], ids[0]); a.Error != "" {
		t.Fatalf("another peer was refused: %s", a.Error)
	}

	// The budget: every byte once. Asking for the first chunk over and
	// over ends the stream once more than the dataset was taken.
	s := held[0]
	asked := 0
	for ; asked <= 2*n; asked++ {
		if _, err := askChunk(s, 0); err != nil {
			break
		}
	}
	if total := int64(asked) * ChunkSize; total > ds.Manifest().Size() {
		t.Fatalf("served %d bytes of chunk 0 on one stream; the dataset has %d", total, ds.Manifest().Size())
	}

	for _, k := range []int{-1, n} {
		s, _ := openData(t, ts[2], ids[0])
		if _, err := askChunk(s, k); err == nil {
			t.Fatalf("chunk %d of %d was answered", k, n)
		}
	}
}

// Manifests from a peer are checked before anything is allocated.
func TestManifestValidate(t *testing.T) {
	good := mustDataset(t, testFiles(0)).Manifest()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m *Manifest)) Manifest {
		m := Manifest{Files: append([]Entry(nil), good.Files...), Chunks: append([][]byte(nil), good.Chunks...)}
		f(&m)
		return m
	}
	for _, c := range []struct {
		name string
		m    Manifest
		want string
	}{
		{"no files", edit(func(m *Manifest) { m.Files = nil }), "0 files"},
		{"too many files", edit(func(m *Manifest) { m.Files = make([]Entry, MaxFiles+1) }), "files, want"},
		{"path", edit(func(m *Manifest) { m.Files[0].Name = "x/../../etc/passwd" }), "characters other than"},
		{"slash", edit(func(m *Manifest) { m.Files[0].Name = "a/b" }), "characters other than"},
		{"dot", edit(func(m *Manifest) { m.Files[0].Name = ".." }), "starts with '.'"},
		{"empty name", edit(func(m *Manifest) { m.Files[0].Name = "" }), "file name of 0 bytes"},
		{"long name", edit(func(m *Manifest) { m.Files[0].Name = strings.Repeat("a", 200) }), "file name of 200 bytes"},
		{"twice", edit(func(m *Manifest) { m.Files[1].Name = m.Files[0].Name }), "twice"},
		{"negative", edit(func(m *Manifest) { m.Files[0].Size = -1 }), "size -1"},
		{"huge", edit(func(m *Manifest) { m.Files[0].Size = MaxBytes }), "past"},
		{"overflow", edit(func(m *Manifest) { m.Files[0].Size, m.Files[2].Size = 1<<62, 1<<62 }), "past"},
		{"chunks short", edit(func(m *Manifest) { m.Chunks = m.Chunks[1:] }), "chunk hashes"},
		{"bad hash", edit(func(m *Manifest) { m.Chunks[1] = []byte{1, 2} }), "hash of 2 bytes"},
	} {
		err := c.m.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// The root covers names, sizes and every chunk: change any and it moves.
func TestRootCoversEverything(t *testing.T) {
	files := testFiles(0)
	base := mustDataset(t, files).Root()
	variants := map[string][]File{}
	renamed := append([]File(nil), files...)
	renamed[1].Name = "other"
	variants["name"] = renamed
	moved := append([]File(nil), files...)
	moved[0].Data, moved[1].Data = files[0].Data[:len(files[0].Data)-1], files[0].Data[len(files[0].Data)-1:]
	variants["boundary"] = moved
	flipped := append([]File(nil), files...)
	flipped[3].Data = append([]byte(nil), files[3].Data...)
	flipped[3].Data[len(flipped[3].Data)-1] ^= 1
	variants["last byte"] = flipped
	variants["order"] = []File{files[1], files[0], files[2], files[3]}
	for name, fs := range variants {
		if mustDataset(t, fs).Root() == base {
			t.Errorf("changing the %s left the root as it was", name)
		}
	}
	if got := mustDataset(t, testFiles(0)).Root(); got != base {
		t.Fatalf("the same files gave roots %s and %s", base, got)
	}
}

func FuzzManifest(f *testing.F) {
	b, _ := json.Marshal(mustDataset(&testing.T{}, []File{{Name: "a", Data: []byte("hello")}}).Manifest())
	f.Add(b)
	f.Add([]byte(`{"files":[{"name":"../x","size":1}],"chunks":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Manifest
		if json.Unmarshal(b, &m) != nil {
			return
		}
		if m.Validate() != nil {
			return
		}
		for _, e := range m.Files {
			if ValidName(e.Name) != nil || e.Size < 0 {
				t.Fatalf("validated a manifest with entry %+v", e)
			}
		}
		_ = m.Root()
		_ = fmt.Sprint(m.Size())
	})
}

// A stream that takes longer than the dataset at the slowest link served
// (plus slack) is cut, and its slot freed.
func TestStreamCutAtLifetime(t *testing.T) {
	_, ts, ids := gossiptest.MemPeers(2)
	ds := mustDataset(t, testFiles(0))
	clk := clock.NewMock()
	srv := NewServer(ts[0], ds, clk)
	s, a := openData(t, ts[1], ids[0])
	if a.Error != "" {
		t.Fatal(a.Error)
	}
	if _, err := askChunk(s, 0); err != nil {
		t.Fatal(err)
	}
	clk.Add(lifetime(ds.Manifest().Size()) - time.Second)
	if _, err := askChunk(s, 1); err != nil {
		t.Fatalf("cut before its lifetime: %v", err)
	}
	clk.Add(2 * time.Second)
	if _, err := askChunk(s, 2); err == nil {
		t.Fatal("a stream past its lifetime was still served")
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if len(srv.slots) != 0 {
			return fmt.Errorf("%d slots still held", len(srv.slots))
		}
		return nil
	})
}

// Identities that open streams and read nothing hold every slot only
// until they fall behind the minimum rate: then a newcomer takes the
// slot of the furthest behind. A stream that keeps up is never taken.
func TestSquattersLoseSlots(t *testing.T) {
	net := gossip.NewMemNetwork()
	var ts []*gossip.MemTransport
	var ids []peer.ID
	for i := range maxStreams/maxStreamsPerPeer + 2 {
		id := testutil.PeerID(i)
		ts, ids = append(ts, net.Add(id)), append(ids, id)
	}
	ds := mustDataset(t, testFiles(0))
	clk := clock.NewMock()
	NewServer(ts[0], ds, clk)
	// One honest downloader, then squatters fill the rest.
	honest, _ := openData(t, ts[1], ids[0])
	var squat []gossip.Stream
	for i := 0; len(squat)+1 < maxStreams; i++ {
		s, a := openData(t, ts[2+i/maxStreamsPerPeer], ids[0])
		if a.Error != "" {
			t.Fatalf("squatter %d refused: %s", len(squat), a.Error)
		}
		squat = append(squat, s)
	}
	late := ts[len(ts)-1]
	if _, a := openData(t, late, ids[0]); !strings.Contains(a.Error, "busy") {
		t.Fatalf("a newcomer took a slot while nobody lagged: %q", a.Error)
	}
	// Ten seconds past the grace: the honest stream has taken more than
	// its share (every chunk but the last), the squatters nothing.
	n := len(ds.Manifest().Chunks)
	for k := range n - 1 {
		if _, err := askChunk(honest, k); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(streamGrace + 10*time.Second)
	s, a := openData(t, late, ids[0])
	if a.Error != "" {
		t.Fatalf("the newcomer was refused with squatters lagging: %s", a.Error)
	}
	if _, err := askChunk(s, 0); err != nil {
		t.Fatalf("the newcomer was not served: %v", err)
	}
	cut := 0
	for _, q := range squat {
		if _, err := askChunk(q, 0); err != nil {
			cut++
		}
	}
	if cut != 1 {
		t.Fatalf("%d squatters lost their slot to one newcomer, want 1", cut)
	}
	if _, err := askChunk(honest, n-1); err != nil {
		t.Fatalf("the stream that kept up lost its slot: %v", err)
	}
}
