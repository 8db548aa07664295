package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// The all-reduce measured between processes, one per machine, so a user
// measures their own network: a leader (BenchLead) waits for the others
// to join it (BenchJoin), tells every member the plan (members in order,
// their addresses, the vector and codec), and every process then runs
// the same rounds as in BenchAllReduce, each timing its own, once every
// member has said it serves the all-reduce. Joiners send
// their figures back, so the leader reports them all.

// benchProto is the bench's control stream: a joiner's hello, the
// leader's plan, the joiner's result. Only bench processes speak it.
const benchProto = "/swarmtrain/bench-allreduce/1"

// benchControlTimeout bounds each control frame, the wait for the plan
// included (every member must have joined by then).
const benchControlTimeout = 10 * time.Minute

// maxBenchFrame caps a control frame: a plan lists at most 64 members
// with a few addresses each.
const maxBenchFrame = 1 << 20

// BenchPlan is what the leader tells every member.
type BenchPlan struct {
	Members []string            `json:"members"` // peer IDs; member i owns part i
	Addrs   map[string][]string `json:"addrs"`   // join addresses by peer ID
	Bench   AllReduceBench      `json:"bench"`
}

// BenchMember is one process's figures in a multi-process bench.
type BenchMember struct {
	Peer            string  `json:"peer"`
	SecondsPerRound float64 `json:"seconds_per_round"`
	BusBandwidth    float64 `json:"bus_bandwidth"` // 2(N−1)/N·S/t
	CPUSeconds      float64 `json:"cpu_seconds_per_round"`
	Error           string  `json:"error,omitempty"`
}

// benchHost starts a host for the bench on listen (nothing but TCP and
// QUIC: no NAT traversal, relays or port mapping).
func benchHost(listen []string) (*p2p.Host, error) {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	cfg := p2p.DefaultConfig()
	cfg.Identity = priv
	if len(listen) > 0 {
		cfg.ListenAddrs = listen
	}
	cfg.AutoNAT, cfg.HolePunching, cfg.PortMap, cfg.RelayService, cfg.AutoRelay = false, false, false, false, false
	return p2p.New(cfg)
}

// BenchLead runs the leader of a bench among cfg.Hosts processes: it
// listens on listen, calls ready with its join addresses, waits for
// cfg.Hosts−1 processes to BenchJoin, and returns every member's figures,
// its own first.
func BenchLead(ctx context.Context, cfg AllReduceBench, listen []string, ready func(addrs []string)) ([]BenchMember, error) {
	if err := checkBench(cfg); err != nil {
		return nil, err
	}
	h, err := benchHost(listen)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	av := benchAverager(h, cfg) // before anyone can know of us: a member may send at once
	joined := make(chan *p2p.Stream, cfg.Hosts)
	h.SetStreamHandler(benchProto, func(s network.Stream) {
		select {
		case joined <- p2p.NewStream(s, benchControlTimeout):
		default:
			s.Reset() // all have joined
		}
	})
	ready(h.JoinAddrs())
	plan := BenchPlan{Members: []string{h.ID().String()}, Addrs: map[string][]string{h.ID().String(): h.JoinAddrs()}, Bench: cfg}
	var streams []*p2p.Stream
	defer func() {
		for _, s := range streams {
			s.Reset()
		}
	}()
	for len(streams) < cfg.Hosts-1 {
		var s *p2p.Stream
		select {
		case s = <-joined:
		case <-ctx.Done():
			return nil, fmt.Errorf("bench: %d of %d processes joined: %w", len(streams)+1, cfg.Hosts, ctx.Err())
		}
		var hello struct {
			Addrs []string `json:"addrs"`
		}
		b, err := s.Recv(maxBenchFrame)
		if err != nil || json.Unmarshal(b, &hello) != nil {
			s.Reset()
			continue
		}
		id := s.RemotePeer().String()
		if slices.Contains(plan.Members, id) {
			s.Reset()
			continue
		}
		plan.Members = append(plan.Members, id)
		plan.Addrs[id] = hello.Addrs
		streams = append(streams, s)
	}
	b, _ := json.Marshal(plan)
	for _, s := range streams {
		if err := s.Send(b); err != nil {
			return nil, fmt.Errorf("bench: sending the plan to %s: %w", s.RemotePeer().ShortString(), err)
		}
	}
	// Every member serves the all-reduce before anyone starts: a member
	// that opened a stream to one still setting up would fail its round.
	for _, s := range streams {
		if _, err := s.Recv(1); err != nil {
			return nil, fmt.Errorf("bench: waiting for %s to be ready: %w", s.RemotePeer().ShortString(), err)
		}
	}
	for _, s := range streams {
		if err := s.Send([]byte{1}); err != nil {
			return nil, fmt.Errorf("bench: starting %s: %w", s.RemotePeer().ShortString(), err)
		}
	}
	out := []BenchMember{runBenchMember(ctx, h, av, plan)}
	for _, s := range streams {
		m := BenchMember{Peer: s.RemotePeer().String()}
		if b, err := s.Recv(maxBenchFrame); err != nil {
			m.Error = err.Error()
		} else if err := json.Unmarshal(b, &m); err != nil {
			m.Error = err.Error()
		}
		out = append(out, m)
		s.Close()
	}
	streams = nil
	return out, nil
}

// BenchJoin joins the bench led at addr, listening on listen, runs the
// leader's plan, and returns this process's figures (also sent to the
// leader).
func BenchJoin(ctx context.Context, addr string, listen []string) (BenchMember, error) {
	h, err := benchHost(listen)
	if err != nil {
		return BenchMember{}, err
	}
	defer h.Close()
	leader, err := h.Connect(ctx, addr)
	if err != nil {
		return BenchMember{}, fmt.Errorf("bench: joining %s: %w", addr, err)
	}
	raw, err := h.NewStream(ctx, leader, benchProto)
	if err != nil {
		return BenchMember{}, fmt.Errorf("bench: joining %s: %w", addr, err)
	}
	s := p2p.NewStream(raw, benchControlTimeout)
	hello, _ := json.Marshal(map[string][]string{"addrs": h.JoinAddrs()})
	if err := s.Send(hello); err != nil {
		s.Reset()
		return BenchMember{}, err
	}
	b, err := s.Recv(maxBenchFrame)
	if err != nil {
		s.Reset()
		return BenchMember{}, fmt.Errorf("bench: waiting for the plan: %w", err)
	}
	var plan BenchPlan
	if err := json.Unmarshal(b, &plan); err != nil {
		s.Reset()
		return BenchMember{}, fmt.Errorf("bench: the leader's plan: %w", err)
	}
	if err := checkBench(plan.Bench); err != nil || len(plan.Members) != plan.Bench.Hosts {
		s.Reset()
		return BenchMember{}, fmt.Errorf("bench: the leader's plan: %d members, %v", len(plan.Members), err)
	}
	av := benchAverager(h, plan.Bench)
	if err := s.Send([]byte{1}); err != nil { // ready
		s.Reset()
		return BenchMember{}, err
	}
	if _, err := s.Recv(1); err != nil { // go: every member is ready
		s.Reset()
		return BenchMember{}, fmt.Errorf("bench: waiting for the start: %w", err)
	}
	m := runBenchMember(ctx, h, av, plan)
	b, _ = json.Marshal(m)
	if err := s.Send(b); err != nil {
		s.Reset()
		return m, err
	}
	// Our host closes when we return: wait until the leader has read the
	// result (it closes its end then), or it could be lost on the way.
	s.CloseWrite()
	s.Recv(0)
	s.Close()
	if m.Error != "" {
		return m, errors.New(m.Error)
	}
	return m, nil
}

// checkBench refuses a bench no process can run.
func checkBench(cfg AllReduceBench) error {
	if cfg.Hosts < 2 || cfg.Hosts > 64 || cfg.Floats < cfg.Hosts || cfg.Floats > compression.MaxCount || cfg.Rounds < 1 {
		return fmt.Errorf("bench: hosts %d (2..64), floats %d (hosts..%d), rounds %d (>= 1)", cfg.Hosts, cfg.Floats, compression.MaxCount, cfg.Rounds)
	}
	if _, err := compression.ParseCodec(cfg.Codec); err != nil {
		return err
	}
	if _, err := compression.LosslessByName(cfg.Lossless); err != nil {
		return err
	}
	_, err := allreduce.ParseAggregate(cfg.Aggregate)
	return err
}

// benchAverager registers the all-reduce on h as cfg (checked) says.
func benchAverager(h *p2p.Host, cfg AllReduceBench) *allreduce.Averager {
	codec, _ := compression.ParseCodec(cfg.Codec)
	lossless, _ := compression.LosslessByName(cfg.Lossless)
	agg, _ := allreduce.ParseAggregate(cfg.Aggregate)
	return allreduce.NewAverager(&hostNetwork{h: h, timeout: time.Minute}, allreduce.AveragerConfig{Codec: codec, Lossless: lossless, Aggregate: agg, RoundTimeout: 5 * time.Minute})
}

// runBenchMember runs plan's rounds as this host's member, on av.
func runBenchMember(ctx context.Context, h *p2p.Host, av *allreduce.Averager, plan BenchPlan) BenchMember {
	m := BenchMember{Peer: h.ID().String()}
	fail := func(err error) BenchMember { m.Error = err.Error(); return m }
	cfg := plan.Bench
	members := make([]peer.ID, len(plan.Members))
	me := -1
	for i, s := range plan.Members {
		id, err := peer.Decode(s)
		if err != nil {
			return fail(fmt.Errorf("member %d: %w", i, err))
		}
		members[i] = id
		if id == h.ID() {
			me = i
			continue
		}
		for _, a := range plan.Addrs[s] {
			if addr, err := ma.NewMultiaddr(a); err == nil {
				h.Peerstore().AddAddr(id, addr, time.Hour)
			}
		}
	}
	if me < 0 {
		return fail(errors.New("this process is not in the plan"))
	}
	// Each member dials those before it, and waits for those after it
	// to dial: two members dialling each other at once would cross, and
	// a stream on the connection that loses is reset.
	for _, p := range members[:me] {
		if err := h.Host.Connect(ctx, peer.AddrInfo{ID: p}); err != nil {
			return fail(fmt.Errorf("dialling member %s: %w", p.ShortString(), err))
		}
	}
	for _, p := range members[me+1:] {
		for h.Network().Connectedness(p) != network.Connected {
			select {
			case <-ctx.Done():
				return fail(fmt.Errorf("waiting for member %s to dial: %w", p.ShortString(), ctx.Err()))
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	rng := rand.New(rand.NewPCG(uint64(me), 2))
	vec, out := make([]float32, cfg.Floats), make([]float32, cfg.Floats)
	for e := range vec {
		vec[e] = float32(rng.NormFloat64())
	}
	samples := make([]int, len(members))
	for i := range samples {
		samples[i] = 1
	}
	wall, cpu, err := timeRounds(cfg.Rounds, members, samples, func(r allreduce.Round) error {
		return av.AllReduce(ctx, r, vec, out)
	})
	if err != nil {
		return fail(err)
	}
	n := float64(cfg.Hosts)
	m.SecondsPerRound, m.CPUSeconds = wall, cpu
	m.BusBandwidth = 2 * (n - 1) / n * float64(4*cfg.Floats) / m.SecondsPerRound
	return m
}
