package node

import (
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmtrain/swarmtrain/trainer"
)

// The dashboard: the page at / of --http, its JSON at /api/dash, and the
// history behind its curves. The page polls /api/dash?after=SEQ&gen=GEN
// every two seconds and gets the points it lacks; peers' rows come from
// their heartbeats, so any node shows the whole swarm.

//go:embed web
var webFS embed.FS

// HistoryFile is the node directory's log of the run, one Point a row.
const HistoryFile = "metrics.jsonl"

// evalEvery paces the dashboard's accuracy: a sample of evalRows test
// rows, evaluated on the training loop at most this often.
const (
	evalEvery = 5 * time.Second
	evalRows  = 512
)

// dash is what the dashboard and /metrics keep beyond Status. The
// training loop writes it; handlers read it. A nil *dash does nothing.
type dash struct {
	log    *slog.Logger
	rounds prometheus.Histogram

	mu       sync.Mutex
	hist     *history
	file     *historyFile // nil: not persisted (the file could not be opened)
	roundSum float64      // seconds of the rounds since the last point
	roundN   int

	// Training loop only.
	evalSet  *trainer.Dataset
	lastEval time.Time
	// beside: the sync loop evaluates while its rounds run (evalBeside),
	// so logStep evaluates only at the run's last step.
	beside bool
}

// openDash loads the history an earlier run of this node left in dir and
// opens it for appending. Failing that, the dashboard still runs, from
// memory.
func openDash(dir string, log *slog.Logger) *dash {
	d := &dash{log: log, hist: newHistory(historyCap, historyEvery),
		rounds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "swarmtrain_round_duration_seconds",
			Help: "Time from a ready gradient to the averaged result, for the averaging rounds that completed.",
			// 10 ms (a LAN, a small model) to about 80 s (a large model over the internet).
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		})}
	path := filepath.Join(dir, HistoryFile)
	skipped, err := loadHistory(path, d.hist)
	if err != nil {
		log.Warn("dashboard history not read back", "file", path, "err", err)
	}
	if skipped > 0 {
		log.Warn("dashboard history: skipped corrupt lines", "file", path, "lines", skipped)
	}
	if d.file, err = openHistoryFile(path); err != nil {
		log.Warn("dashboard history kept in memory only", "err", err)
	}
	return d
}

func (d *dash) close() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file != nil {
		d.file.Close()
		d.file = nil
	}
}

// roundDone records a completed averaging round's duration.
func (d *dash) roundDone(took time.Duration) {
	if d == nil {
		return
	}
	d.rounds.Observe(took.Seconds())
	d.mu.Lock()
	d.roundSum += took.Seconds()
	d.roundN++
	d.mu.Unlock()
}

// logStep adds a point for the state just committed, when one is due
// (always at the run's last step), and every evalEvery evaluates the
// model on a sample of the test set for it. Training loop only.
func (n *Node) logStep() {
	d := n.dash
	if d == nil {
		return
	}
	now := n.clock.Now()
	final := n.currentStep() >= uint64(n.cfg.Run.Optimizer.Steps)
	d.mu.Lock()
	due := d.hist.due(now)
	d.mu.Unlock()
	if !due && !final {
		return
	}
	var acc *float64
	if final || (!d.beside && now.Sub(d.lastEval) >= evalEvery) {
		acc = n.evalSample()
		d.lastEval = now
	}
	n.addPoint(now, acc)
}

// evalBeside starts the dashboard's accuracy sample of the committed
// state, when one is due, to run while the training loop waits on a
// round, which reads the gradient and never the model. On a model of
// millions of parameters the sample (evalRows forward passes) costs more
// than a step's compute, and between rounds every member paid it with
// the swarm waiting on the slowest. The returned func waits for it and
// adds its point, of the state it evaluated. Training loop only.
func (n *Node) evalBeside() (wait func()) {
	d := n.dash
	if d == nil {
		return func() {}
	}
	d.beside = true
	now := n.clock.Now()
	d.mu.Lock()
	due := d.hist.due(now)
	d.mu.Unlock()
	if !due || now.Sub(d.lastEval) < evalEvery {
		return func() {}
	}
	d.lastEval = now
	acc := make(chan *float64, 1)
	go func() { acc <- n.evalSample() }()
	return func() { n.addPoint(now, <-acc) }
}

// addPoint adds the dashboard's point for the committed state, as of now.
func (n *Node) addPoint(now time.Time, acc *float64) {
	d := n.dash
	s := n.Status()
	p := Point{Step: s.Step, Time: now.UnixMilli(), Loss: finite(s.Loss), Acc: acc, SamplesPerSec: finite(s.SamplesPerSec),
		Rounds: s.Rounds, Failed: s.FailedRounds, Syncs: s.StateSyncs, BytesIn: s.BytesIn, BytesOut: s.BytesOut, Peers: s.LivePeers}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.roundN > 0 {
		p.RoundSeconds = d.roundSum / float64(d.roundN)
		d.roundSum, d.roundN = 0, 0
	}
	d.hist.add(p)
	if d.file != nil {
		if err := d.file.append(p, d.hist); err != nil {
			d.log.Warn("dashboard history kept in memory only", "err", err)
			d.file.Close()
			d.file = nil
		}
	}
}

// evalSample is the model's accuracy on a fixed sample of the test set
// (nil when it cannot be had).
func (n *Node) evalSample() *float64 {
	d := n.dash
	if d.evalSet == nil {
		test := n.local.test
		if test == nil || test.N == 0 {
			return nil
		}
		var err error
		if d.evalSet, err = test.Sample(n.cfg.Run.Seed, min(evalRows, test.N)); err != nil {
			return nil
		}
	}
	acc, _, err := n.local.model.Evaluate(d.evalSet)
	if err != nil || !(acc >= 0 && acc <= 1) {
		return nil
	}
	return &acc
}

// SwarmPeer is one row of the dashboard's peer table: this node from its
// own figures, the others from their latest heartbeats.
type SwarmPeer struct {
	Peer          string  `json:"peer"`
	Self          bool    `json:"self,omitempty"`
	Device        string  `json:"device"`
	Step          uint64  `json:"step"`
	Loss          float64 `json:"loss"`
	SamplesPerSec float64 `json:"samples_per_sec"`
	Reachability  string  `json:"reachability"`
	Mode          string  `json:"mode"` // owner or client
	Syncing       bool    `json:"syncing,omitempty"`
	// Path is how this node reaches the peer: direct, relayed, or
	// gossip (no connection of ours: heard through others).
	Path     string  `json:"path"`
	LastSeen float64 `json:"last_seen_seconds"` // seconds since its last heartbeat or progress
	BytesIn  int64   `json:"bytes_in"`
	BytesOut int64   `json:"bytes_out"`
}

// Swarm lists this node and every live peer it knows of.
func (n *Node) Swarm(s Status, now time.Time) []SwarmPeer {
	out := []SwarmPeer{{Peer: s.Peer, Self: true, Device: s.Device.Summary(), Step: s.Step, Loss: finite(s.Loss), SamplesPerSec: finite(s.SamplesPerSec),
		Reachability: s.Reachability, Mode: s.Mode, Syncing: s.Phase == "syncing state", Path: "self", BytesIn: s.BytesIn, BytesOut: s.BytesOut}}
	paths := map[string]string{}
	for _, c := range s.Conns {
		paths[c.Peer] = "direct"
		if c.Relayed {
			paths[c.Peer] = "relayed"
		}
	}
	for _, m := range n.view.Live(now) {
		p := SwarmPeer{Peer: m.Peer.String(), Device: m.Device, Step: m.Step, Loss: m.Loss, SamplesPerSec: m.SamplesPerSec,
			Reachability: m.Reach, Mode: "owner", Syncing: m.Syncing, Path: paths[m.Peer.String()],
			LastSeen: now.Sub(m.LastSeen).Seconds(), BytesIn: m.BytesIn, BytesOut: m.BytesOut}
		if m.Client {
			p.Mode = "client"
		}
		if p.Reachability == "" {
			p.Reachability = "unknown"
		}
		if p.Path == "" {
			p.Path = "gossip"
			if n.outside == nil {
				p.Path = "direct" // the in-memory network: every peer is one hop
			}
		}
		out = append(out, p)
	}
	return out
}

// DashData is the JSON at /api/dash.
type DashData struct {
	Status Status      `json:"status"`
	Peers  []SwarmPeer `json:"peers"`
	// Gen and Seq say where History ends: the page asks for the points
	// after Seq of generation Gen next; a new generation (older points
	// were thinned out) sends the whole history again.
	Gen     uint64  `json:"gen"`
	Seq     uint64  `json:"seq"`
	Reset   bool    `json:"reset"` // History replaces what the page has
	History []Point `json:"history"`
	Uptime  float64 `json:"uptime_seconds"`
}

// dashData answers a page that has the points up to after of generation
// gen (known false: none yet).
func (n *Node) dashData(after, gen uint64, known bool) DashData {
	now := n.clock.Now()
	s := n.Status()
	out := DashData{Status: s, Peers: n.Swarm(s, now), History: []Point{}}
	if !n.started.IsZero() {
		out.Uptime = now.Sub(n.started).Seconds()
	}
	if d := n.dash; d != nil {
		d.mu.Lock()
		pts, g := d.hist.after(after)
		if !known || g != gen {
			pts, _ = d.hist.after(0)
			out.Reset = true
		}
		out.History, out.Gen, out.Seq = pts, g, d.hist.seq
		d.mu.Unlock()
	}
	return out
}

// dashHandlers serves the page, its assets and its data.
func dashHandlers(n *Node, mux *http.ServeMux) {
	web, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(web)
	mux.Handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The page and its assets, nothing from anywhere else.
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /api/dash", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		after, gen, known := uint64(0), uint64(0), false
		var err error
		if v := q.Get("after"); v != "" {
			if after, err = strconv.ParseUint(v, 10, 64); err != nil {
				http.Error(w, "after: want a point's sequence number", http.StatusBadRequest)
				return
			}
		}
		if v := q.Get("gen"); v != "" {
			known = true
			if gen, err = strconv.ParseUint(v, 10, 64); err != nil {
				http.Error(w, "gen: want a history generation", http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(n.dashData(after, gen, known))
	})
}
