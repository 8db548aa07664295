package node

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/swarmtrain/swarmtrain/node/device"
)

// Status is the JSON served at /status.
type Status struct {
	Peer          string      `json:"peer"`
	Run           string      `json:"run"`
	Addrs         []string    `json:"addrs"`
	Phase         string      `json:"phase"`
	Step          uint64      `json:"step"`
	Steps         int         `json:"steps"`
	Hash          string      `json:"hash"`
	LivePeers     int         `json:"live_peers"`
	Loss          float64     `json:"loss"`
	SamplesPerSec float64     `json:"samples_per_sec"`
	Rounds        int         `json:"rounds"`
	FailedRounds  int         `json:"failed_rounds"`
	StateSyncs    int         `json:"state_syncs"`
	BytesIn       int64       `json:"bytes_in"`
	BytesOut      int64       `json:"bytes_out"`
	Device        device.Info `json:"device"`
}

// Status returns a consistent snapshot of what the node is doing.
func (n *Node) Status() Status {
	n.mu.Lock()
	s := Status{
		Peer: n.host.ID().String(), Run: n.run, Phase: n.phase, Step: n.step, Steps: n.cfg.Run.Steps, Hash: n.hash,
		Loss: n.loss, SamplesPerSec: n.samplesPerSec, Rounds: n.rounds, FailedRounds: n.failedRounds, StateSyncs: n.syncs,
	}
	n.mu.Unlock()
	s.Addrs = n.host.JoinAddrs()
	s.LivePeers = n.livePeers() + 1
	s.BytesIn, s.BytesOut = n.host.BytesIn(), n.host.BytesOut()
	s.Device = n.dev
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

// startHTTP serves /status (JSON) and /metrics (Prometheus) on addr.
func startHTTP(n *Node, addr string) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, f func(Status) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "swarmtrain_" + name, Help: help}, func() float64 { return f(n.Status()) }))
	}
	counter := func(name, help string, f func(Status) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "swarmtrain_" + name, Help: help}, func() float64 { return f(n.Status()) }))
	}
	gauge("step", "Optimizer steps applied to the replicated state.", func(s Status) float64 { return float64(s.Step) })
	gauge("live_peers", "Peers on the run seen alive, self included.", func(s Status) float64 { return float64(s.LivePeers) })
	gauge("loss", "Moving average of the local training loss.", func(s Status) float64 { return s.Loss })
	gauge("samples_per_second", "Local training throughput.", func(s Status) float64 { return s.SamplesPerSec })
	counter("rounds_total", "Averaging rounds completed.", func(s Status) float64 { return float64(s.Rounds) })
	counter("failed_rounds_total", "Matchmaking or all-reduce attempts that failed and were retried.", func(s Status) float64 { return float64(s.FailedRounds) })
	counter("state_syncs_total", "State downloads from peers.", func(s Status) float64 { return float64(s.StateSyncs) })
	counter("bytes_received_total", "Bytes received over libp2p.", func(s Status) float64 { return float64(s.BytesIn) })
	counter("bytes_sent_total", "Bytes sent over libp2p.", func(s Status) float64 { return float64(s.BytesOut) })
	reg.MustRegister(prometheus.NewGoCollector())

	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Status())
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http", "err", err)
		}
	}()
	return &httpServer{srv: srv, ln: ln}, nil
}
