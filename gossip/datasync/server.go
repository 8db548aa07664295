package datasync

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// The wire: the downloader sends a request; the server answers with its
// manifest (or an error); then each chunk request is answered with the
// chunk's bytes, one frame each, until the downloader closes.

type request struct {
	// Root is the dataset wanted; empty: whatever the server serves
	// (the downloader checks the files itself).
	Root string `json:"root"`
}

type answer struct {
	Manifest
	Error string `json:"error,omitempty"`
}

type chunkRequest struct {
	Chunk int `json:"chunk"`
}

// maxRequest bounds a request frame: a root is 64 hex digits.
const maxRequest = 1 << 10

// Server serves one dataset over gossip.ProtoData. The transport decides
// who may open a stream (the node's gate: admitted peers only).
type Server struct {
	clk clock.Clock
	ds  *Dataset

	mu     sync.Mutex
	slots  map[*slot]struct{} // the streams being served, at most maxStreams
	byPeer map[peer.ID]int
}

// slot is one stream holding one of the serving slots.
type slot struct {
	peer  peer.ID
	st    gossip.Stream
	start time.Time
	sent  int64 // chunk bytes sent
}

// SlotState is what the pool needs of sl.
func (sl *slot) SlotState() (peer.ID, time.Time, int64) { return sl.peer, sl.start, sl.sent }

var slotLimits = gossip.SlotLimits{Total: maxStreams, PerPeer: maxStreamsPerPeer, Grace: streamGrace, MinRate: minLinkRate}

// pool is the slot bookkeeping over s's maps; s.mu must be held.
func (s *Server) pool() gossip.SlotPool[*slot] {
	return gossip.SlotPool[*slot]{Limits: slotLimits, Held: s.slots, ByPeer: s.byPeer}
}

// NewServer registers the data protocol on t, serving ds. clk times each
// stream's lifetime (nil: the wall clock).
func NewServer(t gossip.Transport, ds *Dataset, clk clock.Clock) *Server {
	s := &Server{clk: gossip.OrWall(clk), ds: ds, slots: map[*slot]struct{}{}, byPeer: map[peer.ID]int{}}
	t.Handle(gossip.ProtoData, s.serve)
	return s
}

// acquire gives st a slot, or nil: busy. When every slot is taken, the
// stream furthest behind minLinkRate loses its slot to st (it is reset):
// streams that hold a slot without reading lose it to anyone who would
// use it, however many identities hold them, while downloaders that keep
// up are never displaced.
func (s *Server) acquire(st gossip.Stream) *slot {
	p := st.RemotePeer()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	victim, ok := s.pool().Room(p, now)
	if !ok {
		return nil
	}
	if victim != nil {
		s.pool().Free(victim)
		victim.st.Reset()
	}
	sl := &slot{peer: p, st: st, start: now}
	s.pool().Add(sl)
	return sl
}

func (s *Server) free(sl *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pool().Free(sl)
}

func (s *Server) serve(st gossip.Stream) {
	b, err := st.Recv(maxRequest)
	if err != nil {
		st.Reset()
		return
	}
	var req request
	if json.Unmarshal(b, &req) != nil {
		st.Reset()
		return
	}
	sl := s.acquire(st)
	if sl == nil {
		s.refuse(st, "busy serving other peers")
		return
	}
	defer s.free(sl)
	if req.Root != "" && req.Root != s.ds.root {
		s.refuse(st, "this peer serves dataset "+s.ds.root+", not "+truncate(req.Root, 64))
		return
	}
	// The stream lives as long as the whole dataset takes at the slowest
	// link served, and may take every chunk once: a peer that never
	// reads, or asks again and again, loses it. The clock starts before
	// the manifest goes out.
	size := int64(len(s.ds.data))
	timer := s.clk.AfterFunc(lifetime(size), func() { st.Reset() })
	defer timer.Stop()
	mb, _ := json.Marshal(answer{Manifest: s.ds.m})
	if st.Send(mb) != nil {
		st.Reset()
		return
	}
	budget := size
	n := len(s.ds.m.Chunks)
	for {
		b, err := st.Recv(maxRequest)
		if err != nil {
			st.Close() // the downloader is done, or gone
			return
		}
		var cr chunkRequest
		if json.Unmarshal(b, &cr) != nil || cr.Chunk < 0 || cr.Chunk >= n {
			st.Reset()
			return
		}
		c := s.ds.chunk(cr.Chunk)
		if budget -= int64(len(c)); budget < 0 {
			st.Reset()
			return
		}
		if st.Send(c) != nil {
			st.Reset()
			return
		}
		s.mu.Lock()
		sl.sent += int64(len(c))
		s.mu.Unlock()
	}
}

// lifetime is how long a stream may take for a dataset of size bytes.
func lifetime(size int64) time.Duration {
	return time.Duration(float64(size)/minLinkRate*float64(time.Second)) + lifetimeSlack
}

func (s *Server) refuse(st gossip.Stream, why string) {
	mb, _ := json.Marshal(answer{Error: why})
	st.Send(mb)
	st.Close()
}
