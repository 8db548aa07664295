package statesync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
)

// State sync. A joiner pins one step of the state at several donors at
// once; since every replica holds bit-identical state at a given step,
// they all pin the same bytes. Each donor answers with a manifest (step,
// sizes, one hash per chunk) whose hash must be the state hash; then the
// joiner pulls chunks from all of them in parallel, checks each chunk's
// hash as it arrives, and hands the chunks of a donor that dies or lies to
// the others. Donors serve from a frozen copy taken when they reached the
// pinned step, so serving never holds up their own training.

type stateRequest struct {
	Run    string `json:"run"`
	Step   uint64 `json:"step"`    // the step to pin
	WaitMS int64  `json:"wait_ms"` // how long a donor behind Step may take to reach it
}

type stateManifest struct {
	Step    uint64    `json:"step"`
	Hash    string    `json:"hash"`
	NParams int       `json:"n_params"`
	NOpt    int       `json:"n_opt"`
	Chunks  [][]byte  `json:"chunks"` // SHA-256 of each chunk
	Group   []peer.ID `json:"group,omitempty"`
	// At is the donor's step when it could not pin the requested one.
	At    uint64 `json:"at,omitempty"`
	Error string `json:"error,omitempty"`
}

type chunkRequest struct {
	Chunk int `json:"chunk"`
}

var (
	errMovedPast = errors.New("moved past the requested step")
	errNotYet    = errors.New("has not reached the requested step")
)

// Server serves this peer's state to joiners over ProtoState.
type Server struct {
	clk      clock.Clock
	run      string
	current  func() (uint64, error) // the local step, cheaply
	snapshot func() (Snapshot, error)

	mu      sync.Mutex
	pinned  map[uint64]*pinnedState
	waiters map[uint64][]chan *pinnedState
	slots   map[*slot]struct{} // the streams being served, at most maxStateStreams
	byPeer  map[peer.ID]int    // streams per joiner: one peer cannot take every slot
}

// slot is one joiner's stream holding one of the serving slots. A
// stream's peer is the one its connection authenticated, so a second
// identity costs a second connection (and handshake): byPeer cannot be
// bypassed with many keys on one connection. The Transport does not tell
// the remote address, so there is no per-IP cap here; the libp2p
// resource manager caps connections per IP (package p2p).
type slot struct {
	peer  peer.ID
	st    gossip.Stream
	start time.Time // when the slot was taken
	sent  int64     // chunk bytes sent on the stream
	cut   string    // why the server took the slot back; "" while held
	timer *clock.Timer
}

// SlotState is what the pool needs of sl.
func (sl *slot) SlotState() (peer.ID, time.Time, int64) { return sl.peer, sl.start, sl.sent }

var slotLimits = gossip.SlotLimits{Total: maxStateStreams, PerPeer: maxStateStreamsPerPeer, Grace: streamGrace, MinRate: minLinkRate}

// pool is the slot bookkeeping over s's maps; s.mu must be held.
func (s *Server) pool() gossip.SlotPool[*slot] {
	return gossip.SlotPool[*slot]{Limits: slotLimits, Held: s.slots, ByPeer: s.byPeer}
}

// pinnedState is a frozen copy of the state at one step.
type pinnedState struct {
	step        uint64
	params, opt []float32 // the snapshot's own copies
	hash        string
	chunks      [][32]byte
	group       []peer.ID
	refs        int
}

// NewServer registers the state protocol on t. current returns the
// local step (an error: nothing to serve, e.g. while syncing); snapshot
// returns the current state, a copy the server may keep. Requests check
// the step with current; only a pin takes a snapshot. clk times how long
// a joiner's request may wait for a step (nil: the wall clock).
func NewServer(t gossip.Transport, run string, current func() (uint64, error), snapshot func() (Snapshot, error), clk clock.Clock) *Server {
	s := &Server{clk: gossip.OrWall(clk), run: run, current: current, snapshot: snapshot, pinned: map[uint64]*pinnedState{}, waiters: map[uint64][]chan *pinnedState{}, slots: map[*slot]struct{}{}, byPeer: map[peer.ID]int{}}
	t.Handle(gossip.ProtoState, s.serve)
	return s
}

// Advanced tells the server the local state just reached step. Call it
// from the goroutine that changes the state, before the next change:
// joiners waiting for step get their copy now.
func (s *Server) Advanced(step uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st, ws := range s.waiters {
		if st > step {
			continue
		}
		var p *pinnedState
		if st == step {
			p = s.pinLocked(step)
		}
		for _, w := range ws {
			if p != nil {
				p.refs++
			}
			w <- p // nil: the step was skipped (a sync jumped past it)
		}
		delete(s.waiters, st)
	}
}

// pinLocked freezes the current state, which must be at step.
func (s *Server) pinLocked(step uint64) *pinnedState {
	if p := s.pinned[step]; p != nil {
		return p
	}
	if len(s.pinned) >= maxPinnedSteps {
		return nil
	}
	snap, err := s.snapshot()
	if err != nil || snap.Step != step {
		return nil
	}
	p := &pinnedState{step: step, params: snap.Params, opt: snap.Opt, group: snap.Group}
	p.chunks = ChunkHashes(p.params, p.opt)
	p.hash = hashManifest(step, len(p.params), len(p.opt), p.chunks, p.group)
	s.pinned[step] = p
	return p
}

// pin returns the state at step, waiting up to wait for the local state
// to get there. On failure it reports the local step.
func (s *Server) pin(ctx context.Context, step uint64, wait time.Duration) (*pinnedState, uint64, error) {
	s.mu.Lock()
	if p := s.pinned[step]; p != nil {
		p.refs++
		s.mu.Unlock()
		return p, step, nil
	}
	cur, err := s.current()
	if err != nil {
		s.mu.Unlock()
		return nil, 0, err
	}
	switch {
	case cur > step:
		s.mu.Unlock()
		return nil, cur, errMovedPast
	case cur == step:
		p := s.pinLocked(step)
		if p == nil {
			s.mu.Unlock()
			return nil, cur, errors.New("busy serving other joiners")
		}
		p.refs++
		s.mu.Unlock()
		return p, step, nil
	}
	w := make(chan *pinnedState, 1)
	s.waiters[step] = append(s.waiters[step], w)
	// The wait starts before the waiter is visible (to a test driving a
	// mock clock, too).
	timer := s.clk.Timer(wait)
	defer timer.Stop()
	s.mu.Unlock()
	select {
	case p := <-w:
		if p == nil {
			return nil, s.step(), errMovedPast
		}
		return p, step, nil
	case <-timer.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	if i := indexChan(s.waiters[step], w); i >= 0 {
		s.waiters[step] = append(s.waiters[step][:i], s.waiters[step][i+1:]...)
		s.mu.Unlock()
		return nil, s.step(), errNotYet
	}
	s.mu.Unlock()
	// Advanced got there first: take what it sent, and give it back.
	if p := <-w; p != nil {
		s.release(p)
	}
	return nil, s.step(), errNotYet
}

func indexChan(ws []chan *pinnedState, w chan *pinnedState) int {
	for i, x := range ws {
		if x == w {
			return i
		}
	}
	return -1
}

func (s *Server) step() uint64 {
	cur, err := s.current()
	if err != nil {
		return 0
	}
	return cur
}

func (s *Server) release(p *pinnedState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.refs--
	if p.refs <= 0 && s.pinned[p.step] == p {
		delete(s.pinned, p.step)
	}
}

func (s *Server) serve(st gossip.Stream) {
	b, err := st.Recv(gossip.MaxMessageSize)
	if err != nil {
		st.Reset()
		return
	}
	var req stateRequest
	if json.Unmarshal(b, &req) != nil {
		st.Reset()
		return
	}
	sl := s.acquire(st)
	if sl == nil {
		s.answer(st, stateManifest{Error: "busy serving other joiners"})
		return
	}
	defer s.free(sl, "")
	if req.Run != s.run {
		s.answer(st, stateManifest{Error: "not on this run"})
		return
	}
	wait := min(max(time.Duration(req.WaitMS)*time.Millisecond, 0), maxDonorWait)
	ctx, cancel := s.clk.WithTimeout(context.Background(), wait+pinSlack)
	p, at, err := s.pin(ctx, req.Step, wait)
	cancel()
	if err != nil {
		s.answer(st, stateManifest{At: at, Error: err.Error()})
		return
	}
	defer s.release(p)
	m := stateManifest{Step: p.step, Hash: p.hash, NParams: len(p.params), NOpt: len(p.opt), Group: p.group, Chunks: make([][]byte, len(p.chunks))}
	for i := range p.chunks {
		m.Chunks[i] = p.chunks[i][:]
	}
	mb, _ := json.Marshal(m)
	if st.Send(mb) != nil {
		st.Reset()
		return
	}
	n := len(p.params) + len(p.opt)
	budget := streamBudget(n)
	s.mu.Lock()
	if sl.cut == "" { // from here on the transfer, not the pin, bounds the slot
		sl.timer = s.clk.AfterFunc(streamLifetime(n), func() { s.free(sl, "held past its lifetime") })
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if sl.timer != nil {
			sl.timer.Stop()
		}
		s.mu.Unlock()
	}()
	var frame []byte
	var scratch []float32
	for {
		b, err := st.Recv(gossip.MaxMessageSize)
		if err != nil {
			st.Close() // the joiner is done (or gone)
			return
		}
		var cr chunkRequest
		if json.Unmarshal(b, &cr) != nil || cr.Chunk < 0 || cr.Chunk >= len(p.chunks) {
			st.Reset()
			return
		}
		var vals []float32
		vals, scratch = chunkValues(p.params, p.opt, cr.Chunk, scratch)
		frame, err = compression.EncodePart(frame[:0], compression.FP32{}, compression.LosslessNone, vals)
		if err != nil {
			st.Reset()
			return
		}
		s.mu.Lock()
		over := sl.sent+int64(len(frame)) > budget
		s.mu.Unlock()
		if over {
			s.free(sl, "asked for more than the state")
			return
		}
		if st.Send(frame) != nil {
			st.Reset()
			return
		}
		s.mu.Lock()
		sl.sent += int64(len(frame))
		s.mu.Unlock()
	}
}

// acquire gives st a serving slot, or nil when it must be told "busy".
// When every slot is taken, a joiner with slots to spare takes the one of
// the stream furthest behind minLinkRate: streams that hold a slot
// without reading (or read a byte a second) lose it to anyone who would
// use it, however many identities hold them, while joiners that keep up
// are never displaced.
func (s *Server) acquire(st gossip.Stream) *slot {
	from := st.RemotePeer()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	victim, ok := s.pool().Room(from, now)
	if !ok {
		return nil
	}
	if victim != nil {
		s.freeLocked(victim, "fell behind the minimum link rate")
	}
	sl := &slot{peer: from, st: st, start: now}
	s.pool().Add(sl)
	return sl
}

// free gives sl's slot back. With a reason, the server is taking it
// away: the stream is reset, so its joiner learns at once.
func (s *Server) free(sl *slot, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.freeLocked(sl, reason)
}

func (s *Server) freeLocked(sl *slot, reason string) {
	if !s.pool().Free(sl) {
		return
	}
	if reason != "" {
		sl.cut = reason
		sl.st.Reset()
	}
}

// streamLifetime is how long a stream may take to fetch a state of n
// values once it has its manifest: the whole state at minLinkRate, plus
// slack. An honest joiner on the slowest link we serve finishes even
// from this donor alone.
func streamLifetime(n int) time.Duration {
	return time.Duration(float64(4*n)/minLinkRate*float64(time.Second)) + lifetimeSlack
}

// streamBudget is how many chunk bytes one stream may take for a state
// of n values: every chunk once (fp32 plus frame headers), with an eighth
// to spare. A joiner never asks for a chunk twice on one stream.
func streamBudget(n int) int64 {
	return int64(4*n)*9/8 + int64(maxChunkFrame(StateChunk))
}

func (s *Server) answer(st gossip.Stream, m stateManifest) {
	mb, _ := json.Marshal(m)
	st.Send(mb)
	st.Close()
}

// Request says what state a joiner wants.
type Request struct {
	Run           string
	NParams, NOpt int // what the local model holds; donors must match
	// Step is the step to download, normally the newest the swarm
	// gossips; donors not there yet wait up to Wait for it.
	Step uint64
	Wait time.Duration
	// Want is the hash the swarm agrees on at Step, when known: donors
	// announcing another state are not used. Empty: the donors' majority.
	Want string
	// MinVouch is how many donors must announce the chosen state (at
	// least one): a state one donor alone announces is not downloaded
	// when the swarm asks for two.
	MinVouch int
	// Clock times the wait for each donor's manifest (nil: the wall
	// clock); tests pass a clock.Mock.
	Clock clock.Clock
}

// Fetched is a downloaded, verified state and where it came from.
type Fetched struct {
	Snapshot
	Hash   string
	Chunks map[peer.ID]int   // chunks each donor delivered
	Failed map[peer.ID]error // donors dropped along the way, and why
}

// Fetch downloads the state from up to four of donors (best first)
// in parallel; see Download.Fetch.
func Fetch(ctx context.Context, t gossip.Transport, donors []peer.ID, req Request) (*Fetched, error) {
	var d Download
	return d.Fetch(ctx, t, donors, req)
}

// Download keeps the verified chunks of a state across attempts: when
// every donor of an attempt dies, the next attempt that pins the same
// state fetches only what is missing. The zero value is ready to use.
type Download struct {
	hash string
	vals []float32
	have []bool
}

// Fetch downloads the state from up to four of donors (best first) in
// parallel. It succeeds only with a state whose chunks all match the
// manifest and whose manifest matches the state hash; a donor that dies
// or sends a bad chunk is dropped and its chunks go to the others.
func (d *Download) Fetch(ctx context.Context, t gossip.Transport, donors []peer.ID, req Request) (*Fetched, error) {
	if len(donors) == 0 {
		return nil, errors.New("no donors")
	}
	if len(donors) > maxFetchDonors {
		donors = donors[:maxFetchDonors]
	}
	f := &Fetched{Chunks: map[peer.ID]int{}, Failed: map[peer.ID]error{}}
	var lastErr error
	for range maxFetchAttempts {
		conns, at := pinAll(ctx, t, donors, req, f.Failed)
		if len(conns) == 0 {
			lastErr = fmt.Errorf("no donor could pin step %d: %w", req.Step, gossip.JoinFailures(f.Failed))
			if at == 0 || at == req.Step {
				return nil, lastErr
			}
			// The swarm moved on while we asked, or has not reached the
			// step yet (it stalled): pin where it is now.
			req.Step, req.Want = at, ""
			continue
		}
		err := d.download(ctx, conns, f)
		for _, c := range conns {
			c.s.CloseWrite()
			c.s.Close()
		}
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	return nil, lastErr
}

type donorConn struct {
	p peer.ID
	s gossip.Stream
	m stateManifest
}

// Source is what gossip.PullChunks needs of c.
func (c donorConn) Source() (peer.ID, gossip.Stream) { return c.p, c.s }

// pinAll asks every donor to pin req.Step and keeps those announcing the
// chosen state: Want if given, else the state most donors announced; none
// when fewer than req.MinVouch announced it. It also reports the newest
// step of the donors that could not pin it.
func pinAll(ctx context.Context, t gossip.Transport, donors []peer.ID, req Request, failed map[peer.ID]error) ([]donorConn, uint64) {
	conns, errs := gossip.AskEach(donors, func(p peer.ID) (donorConn, error) { return pinOne(ctx, t, p, req) })
	votes := map[string]int{}
	var at uint64 // the newest step the donors that could not pin are at
	for i, c := range conns {
		if errs[i] == nil {
			votes[c.m.Hash]++
		} else {
			at = max(at, c.m.At)
		}
	}
	chosen := req.Want // when nobody has it, no donor is used
	if chosen == "" {
		chosen = gossip.Consensus(votes)
	}
	few := votes[chosen] < req.MinVouch
	var out []donorConn
	for i, c := range conns {
		switch {
		case errs[i] != nil:
			failed[donors[i]] = errs[i]
		case few:
			failed[donors[i]] = fmt.Errorf("announced state %s, which %d donors vouch for, fewer than the %d needed", c.m.Hash, votes[c.m.Hash], req.MinVouch)
			c.s.Reset()
		case c.m.Hash != chosen:
			failed[donors[i]] = fmt.Errorf("announced state %s, not the chosen %s", c.m.Hash, chosen)
			c.s.Reset()
		default:
			delete(failed, donors[i]) // it may have failed an earlier attempt
			out = append(out, c)
		}
	}
	return out, at
}

// pinOne asks p to pin req.Step and checks its manifest.
func pinOne(ctx context.Context, t gossip.Transport, p peer.ID, req Request) (donorConn, error) {
	c := donorConn{p: p}
	s, err := t.Open(ctx, p, gossip.ProtoState)
	if err != nil {
		return c, err
	}
	ctx, cancel := gossip.OrWall(req.Clock).WithTimeout(ctx, req.Wait+manifestSlack)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	b, _ := json.Marshal(stateRequest{Run: req.Run, Step: req.Step, WaitMS: req.Wait.Milliseconds()})
	if err := s.Send(b); err != nil {
		s.Reset()
		return c, err
	}
	n := numChunks(req.NParams + req.NOpt)
	mb, err := s.Recv(gossip.MaxMessageSize + 64*n)
	if err != nil {
		s.Reset()
		return c, err
	}
	if err := json.Unmarshal(mb, &c.m); err != nil {
		s.Reset()
		return c, fmt.Errorf("bad manifest: %w", err)
	}
	fail := func(err error) (donorConn, error) {
		s.Reset()
		return c, err
	}
	switch {
	case c.m.Error != "":
		return fail(errors.New(truncate(c.m.Error, 200)))
	case c.m.NParams != req.NParams || c.m.NOpt != req.NOpt:
		return fail(fmt.Errorf("donor holds %d params + %d optimizer values, this model has %d + %d", c.m.NParams, c.m.NOpt, req.NParams, req.NOpt))
	case c.m.Step != req.Step:
		return fail(fmt.Errorf("donor pinned step %d, asked for %d", c.m.Step, req.Step))
	case len(c.m.Chunks) != n:
		return fail(fmt.Errorf("manifest lists %d chunks, want %d", len(c.m.Chunks), n))
	case len(c.m.Group) > gossip.MaxMembers:
		return fail(fmt.Errorf("donor lists a group of %d members", len(c.m.Group)))
	}
	chunks := make([][32]byte, n)
	for i, h := range c.m.Chunks {
		if len(h) != 32 {
			return fail(errors.New("manifest has a malformed chunk hash"))
		}
		copy(chunks[i][:], h)
	}
	if got := hashManifest(c.m.Step, c.m.NParams, c.m.NOpt, chunks, c.m.Group); got != c.m.Hash {
		return fail(fmt.Errorf("manifest hashes to %s, not the announced %s", got, c.m.Hash))
	}
	c.s = s
	return c, nil
}

// download pulls every chunk from the donors in parallel and verifies
// each; a donor's failure hands its chunk back to the others.
func (d *Download) download(ctx context.Context, conns []donorConn, f *Fetched) error {
	m := conns[0].m
	n := len(m.Chunks)
	if d.hash != m.Hash {
		d.hash, d.vals, d.have = m.Hash, make([]float32, m.NParams+m.NOpt), make([]bool, n)
	}
	vals := d.vals
	var todo []int
	for k := range n {
		if !d.have[k] { // else verified in an earlier attempt
			todo = append(todo, k)
		}
	}
	pull := &gossip.Pull{Chunks: f.Chunks, Failed: f.Failed, Got: func(k int) { d.have[k] = true }}
	left, err := gossip.PullChunks(ctx, pull, conns, todo, func(c donorConn) func(int) error {
		buf := make([]byte, 0, 4*StateChunk)
		return func(k int) error { return fetchChunk(c, k, vals, buf) }
	})
	if err != nil {
		return err
	}
	if left > 0 {
		return fmt.Errorf("every donor failed with %d of %d chunks left: %w", left, n, gossip.JoinFailures(f.Failed))
	}
	*d = Download{} // the caller owns vals now
	f.Snapshot = Snapshot{Step: m.Step, Params: vals[:m.NParams:m.NParams], Opt: vals[m.NParams:], Group: m.Group}
	f.Hash = HashState(m.Step, f.Params, f.Opt, m.Group)
	if f.Hash != m.Hash { // cannot happen when every chunk matched; cheap to be sure
		return fmt.Errorf("downloaded state hashes to %s, not %s", f.Hash, m.Hash)
	}
	return nil
}

// fetchChunk requests chunk k from c and decodes it into vals after
// checking its hash against the manifest.
func fetchChunk(c donorConn, k int, vals []float32, buf []byte) error {
	b, _ := json.Marshal(chunkRequest{Chunk: k})
	if err := c.s.Send(b); err != nil {
		return err
	}
	lo, hi := k*StateChunk, min((k+1)*StateChunk, len(vals))
	frame, err := c.s.Recv(maxChunkFrame(hi - lo))
	if err != nil {
		return err
	}
	if err := compression.DecodePart(vals[lo:hi], frame); err != nil {
		return err
	}
	h := sha256.New()
	writeBits(h, buf, vals[lo:hi])
	if sum := h.Sum(nil); !bytes.Equal(sum, c.m.Chunks[k]) {
		clear(vals[lo:hi])
		return fmt.Errorf("hash %s does not match the manifest", hex.EncodeToString(sum[:8]))
	}
	return nil
}

// maxChunkFrame bounds the frame of a chunk of count values: fp32
// payload plus room for headers and a lossless stage that failed to
// shrink (as package allreduce bounds an fp32 part).
func maxChunkFrame(count int) int {
	return compression.FP32{}.MaxEncodedLen(count) + count/16 + compression.FrameOverhead + 1024
}

// truncate shortens s to n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
