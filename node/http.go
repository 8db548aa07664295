package node

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/swarmtrain/swarmtrain/node/device"
)

// Status is the JSON served at /status.
type Status struct {
	Peer          string   `json:"peer"`
	Run           string   `json:"run"`
	Addrs         []string `json:"addrs"`
	Phase         string   `json:"phase"`
	Step          uint64   `json:"step"`
	Steps         int      `json:"steps"`
	Hash          string   `json:"hash"`
	LivePeers     int      `json:"live_peers"`
	Loss          float64  `json:"loss"`
	SamplesPerSec float64  `json:"samples_per_sec"`
	Samples       int64    `json:"samples"` // training samples computed since start
	// ComputeUtilisation is the fraction of the time since training began
	// spent computing rather than waiting (see Result).
	ComputeUtilisation float64 `json:"compute_utilisation"`
	Rounds             int     `json:"rounds"`
	FailedRounds       int     `json:"failed_rounds"`
	StateSyncs         int     `json:"state_syncs"`
	GroupSize          int     `json:"group_size"` // members of the last round applied
	// Deterministic is "on", "voided (why)", or absent: not a deterministic run.
	Deterministic string `json:"deterministic,omitempty"`
	// Uplink is how fast this node's all-reduce parts reach their owners
	// (bytes/s; 0 until measured); the assembler sizes parts by it.
	Uplink float64 `json:"uplink_bytes_per_sec"`
	// RoundDeadline is the time the latest all-reduce round was given.
	RoundDeadline float64     `json:"round_deadline_seconds"`
	BytesIn       int64       `json:"bytes_in"`
	BytesOut      int64       `json:"bytes_out"`
	Device        device.Info `json:"device"`

	// Reachability is AutoNAT's verdict: public, private or unknown.
	Reachability string `json:"reachability"`
	// Mode is owner or client (see ClientMode); ModeWhy says why.
	Mode    string `json:"mode"`
	ModeWhy string `json:"mode_why"`
	// ObservedAddrs are the public addresses peers see this node at.
	ObservedAddrs []string `json:"observed_addrs"`
	// Conns lists the open connections, one per peer.
	Conns []PeerConn `json:"conns"`
}

// PeerConn is one peer this node is connected to, and how.
type PeerConn struct {
	Peer string `json:"peer"`
	Addr string `json:"addr"`
	// Relayed: the only path to the peer goes through a relay (a
	// /p2p-circuit address), which carries control traffic only.
	Relayed bool `json:"relayed"`
}

// Status returns a consistent snapshot of what the node is doing.
func (n *Node) Status() Status {
	n.mu.Lock()
	s := Status{
		Peer: n.ID().String(), Run: n.run, Phase: n.stats.phase, Step: n.rep.step, Steps: n.cfg.Run.Optimizer.Steps, Hash: n.rep.hash,
		Loss: n.stats.loss, SamplesPerSec: n.stats.samplesPerSec, Samples: n.stats.samples, Rounds: n.stats.rounds, FailedRounds: n.stats.failedRounds, StateSyncs: n.stats.syncs,
		GroupSize: n.stats.groupSize, ComputeUtilisation: n.utilisationLocked(n.clock.Now()),
	}
	s.Uplink = n.av.Uplink()
	s.RoundDeadline = n.av.Deadline().Seconds()
	n.mu.Unlock()
	s.Addrs = n.net.JoinAddrs()
	s.LivePeers = n.livePeers() + 1
	s.BytesIn, s.BytesOut = n.net.BytesIn(), n.net.BytesOut()
	s.Device = n.dev
	s.Deterministic = n.det.String()
	reach := n.reachability()
	s.Reachability = ReachabilityName(reach)
	client, why := ClientMode(reach, n.cfg.Client)
	s.Mode, s.ModeWhy = "owner", why
	if client {
		s.Mode = "client"
	}
	s.ObservedAddrs, s.Conns = []string{}, []PeerConn{}
	if n.outside != nil {
		s.ObservedAddrs, s.Conns = n.outside.ObservedAddrs(), n.outside.Conns()
	}
	return s
}

type httpServer struct {
	srv *http.Server
	ln  net.Listener
}

func (h *httpServer) Addr() string { return h.ln.Addr().String() }

func (h *httpServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	h.srv.Shutdown(ctx)
}

// startHTTP serves the dashboard (/ and /api/dash), /status (JSON) and
// /metrics (Prometheus) on addr.
func startHTTP(n *Node, addr string) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(newRegistry(n), promhttp.HandlerOpts{}))
	dashHandlers(n, mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http", "err", err)
		}
	}()
	return &httpServer{srv: srv, ln: ln}, nil
}
