package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// Distributed hyperparameter search: a coordinator holds the trials (run
// configs) and hands them to worker peers one at a time over a libp2p
// stream; each worker trains its trial as a one-node run and sends the
// result back. SweepQueue is the coordination, free of I/O; ServeSweep and
// SweepWorker put it on the network.

// SweepProtocol is the stream protocol between a sweep coordinator and its
// workers.
const SweepProtocol = "/swarmtrain/sweep/1.0.0"

// Sweep stream limits. Every message is a frame of at most maxSweepFrame
// (a trial carries its vocabulary: 65536 tokens of up to 100 bytes,
// base64 in JSON). While a trial trains, or while a worker waits for one,
// the side that has nothing to say sends a keepalive every sweepKeepalive;
// a side that hears nothing for sweepSilence gives up on the other (a
// worker's trial goes back to the queue).
const maxSweepFrame = 16 << 20

// Variables, not constants, so that tests can shorten them.
var (
	sweepKeepalive = 10 * time.Second
	sweepSilence   = 60 * time.Second
)

// DefaultMaxHold is how long a worker may hold one trial before the
// coordinator takes it back and hands it to another (SweepQueue.MaxHold):
// keepalives prove a worker alive, not that it will ever finish. A day is
// far beyond any trial we run on one machine. Longer: slow machines may
// finish long trials; shorter: a stalled or lying worker wastes less of
// the sweep.
const DefaultMaxHold = 24 * time.Hour

// maxHoldExpiries is how many workers may run out of MaxHold on one trial
// before it is given up (recorded with an error), so a trial no machine
// finishes in time does not circle forever.
const maxHoldExpiries = 2

// Trial is one point of a sweep: the run to train, a label for the results
// table, and for text runs the vocabulary file the run names.
type Trial struct {
	Index int       `json:"index"`
	Label string    `json:"label"`
	Run   RunConfig `json:"run"`
	Vocab []byte    `json:"vocab,omitempty"`
}

// TrialResult is what a worker reports for a trial. Setup marks a trial
// that never started training on that worker (its data or files are
// missing there): the trial goes back to the queue for another worker.
type TrialResult struct {
	Index    int     `json:"index"`
	Label    string  `json:"label"`
	Worker   string  `json:"worker"`
	Accuracy float64 `json:"accuracy"`
	TestLoss float64 `json:"test_loss"`
	Seconds  float64 `json:"seconds"`
	Error    string  `json:"error,omitempty"`
	Setup    bool    `json:"setup,omitempty"`
}

// SweepQueue hands trials to workers and collects results. A trial goes
// to one worker at a time; a worker that disappears gives its trial back
// (Release), so another takes it. Workers are opaque keys: the server uses
// one per stream ("peer#n"), so two streams of one peer never release each
// other's trials; results name the peer (the key up to '#'). Safe for
// concurrent use.
type SweepQueue struct {
	// MaxHold is how long ServeSweep lets one worker hold a trial
	// (DefaultMaxHold unless changed before serving).
	MaxHold time.Duration

	mu       sync.Mutex
	trials   []Trial
	owner    []string // "" while pending or done
	expiries []int    // workers that ran out of MaxHold on each trial
	results  []*TrialResult
	left     int
	changed  chan struct{} // closed and replaced on every change
}

// NewSweepQueue queues trials, numbering them by position.
func NewSweepQueue(trials []Trial) *SweepQueue {
	q := &SweepQueue{MaxHold: DefaultMaxHold, trials: trials, owner: make([]string, len(trials)), expiries: make([]int, len(trials)),
		results: make([]*TrialResult, len(trials)), left: len(trials), changed: make(chan struct{})}
	for i := range q.trials {
		q.trials[i].Index = i
	}
	return q
}

func (q *SweepQueue) notify() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Take gives worker the next pending trial. ok is false when none is
// pending; wait on the returned channel for a change (a trial released
// or finished) and ask again.
func (q *SweepQueue) Take(worker string) (t Trial, ok bool, changed <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range q.trials {
		if q.results[i] == nil && q.owner[i] == "" {
			q.owner[i] = worker
			return q.trials[i], true, q.changed
		}
	}
	return Trial{}, false, q.changed
}

// Finish records worker's result for the trial it holds; a result for a
// trial it does not hold (a stale or forged report) is refused.
func (q *SweepQueue) Finish(worker string, r TrialResult) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r.Index < 0 || r.Index >= len(q.trials) || q.owner[r.Index] != worker {
		return fmt.Errorf("sweep: %s reported trial %d, which it does not hold", worker, r.Index)
	}
	if math.IsNaN(r.Accuracy) || r.Accuracy < 0 || r.Accuracy > 1 {
		return fmt.Errorf("sweep: %s reported accuracy %v for trial %d", worker, r.Accuracy, r.Index)
	}
	r.Label = q.trials[r.Index].Label
	r.Worker, _, _ = strings.Cut(worker, "#")
	q.owner[r.Index] = ""
	q.results[r.Index] = &r
	q.left--
	q.notify()
	return nil
}

// Release returns the trials worker holds to the queue.
func (q *SweepQueue) Release(worker string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, o := range q.owner {
		if o == worker {
			q.owner[i] = ""
			q.notify()
		}
	}
}

// Expire takes trial index back from worker, which held it past
// MaxHold; its late result will be refused. After maxHoldExpiries
// workers, the trial is given up: its result is an error.
func (q *SweepQueue) Expire(worker string, index int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if index < 0 || index >= len(q.trials) || q.owner[index] != worker {
		return
	}
	q.owner[index] = ""
	if q.expiries[index]++; q.expiries[index] >= maxHoldExpiries {
		q.results[index] = &TrialResult{Index: index, Label: q.trials[index].Label,
			Error: fmt.Sprintf("%d workers held it longer than %v", q.expiries[index], q.MaxHold)}
		q.left--
	}
	q.notify()
}

// Left is the number of trials without a result.
func (q *SweepQueue) Left() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.left
}

// Wait blocks until every trial has a result or ctx ends.
func (q *SweepQueue) Wait(ctx context.Context) error {
	for {
		q.mu.Lock()
		left, changed := q.left, q.changed
		q.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Results lists the results received, in trial order.
func (q *SweepQueue) Results() []TrialResult {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []TrialResult
	for _, r := range q.results {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out
}

// sweepMsg is the coordinator's message: a trial, done, or a keepalive
// (none of them set).
type sweepMsg struct {
	Trial *Trial `json:"trial,omitempty"`
	Done  bool   `json:"done,omitempty"`
}

// workerMsg is the worker's message: a result, or a keepalive (nil).
type workerMsg struct {
	Result *TrialResult `json:"result,omitempty"`
}

// ServeSweep makes h the coordinator of q: every worker stream gets
// trials one by one until none is left, then "done". It returns at once;
// the handler stays until the host closes. Call the returned function
// before closing the host: it waits (at most d) until every connected
// worker has been told it is done.
func ServeSweep(ctx context.Context, h *p2p.Host, q *SweepQueue, log func(string, ...any)) (drain func(d time.Duration)) {
	var active sync.WaitGroup
	var streams atomic.Int64
	keepalive, _ := json.Marshal(sweepMsg{})
	every, silence, maxHold := sweepKeepalive, sweepSilence, q.MaxHold
	// One stream per worker peer: a new stream replaces the peer's
	// current one (a restarted worker's old stream may look alive until
	// its silence runs out), whose trial goes back to the queue. So one
	// peer holds at most one trial however many streams it opens.
	var mu sync.Mutex
	current := map[string]*context.CancelFunc{} // peer → kicks its stream
	// Workers are authenticated below us: the coordinator's host holds the
	// sweep's key (a libp2p private network), so only key holders connect.
	h.SetStreamHandler(SweepProtocol, func(raw network.Stream) {
		active.Add(1)
		defer active.Done()
		peer := raw.Conn().RemotePeer().String()
		worker := fmt.Sprintf("%s#%d", peer, streams.Add(1))
		s := p2p.NewStream(raw, silence)
		kctx, kick := context.WithCancel(context.Background())
		mu.Lock()
		if old := current[peer]; old != nil {
			(*old)()
		}
		current[peer] = &kick
		mu.Unlock()
		defer func() {
			mu.Lock()
			if current[peer] == &kick {
				delete(current, peer)
			}
			mu.Unlock()
			kick()
		}()
		kicked := kctx.Done()
		stop := context.AfterFunc(kctx, func() { s.Reset() })
		defer stop()
		defer q.Release(worker)
		for {
			t, ok, changed := q.Take(worker)
			if !ok {
				if q.Left() == 0 {
					b, _ := json.Marshal(sweepMsg{Done: true})
					if s.Send(b) == nil && s.CloseWrite() == nil {
						// Wait (bounded by the silence timeout) until the
						// worker hangs up, which it does on reading
						// "done": the caller closes the host after drain,
						// which would otherwise cut "done" off in flight.
						s.Recv(maxSweepFrame)
					}
					s.Reset()
					return
				}
				select { // others hold the rest; one may come back
				case <-changed:
					continue
				case <-kicked:
					log("worker opened another stream; this one closed", "worker", peer)
					return
				case <-time.After(every):
					if err := s.Send(keepalive); err != nil {
						s.Reset()
						return
					}
					continue
				case <-ctx.Done():
					s.Reset()
					return
				}
			}
			b, _ := json.Marshal(sweepMsg{Trial: &t})
			if err := s.Send(b); err != nil {
				s.Reset()
				return
			}
			log("trial sent", "trial", t.Index, "label", t.Label, "worker", peer)
			var expired atomic.Bool
			hold := time.AfterFunc(maxHold, func() {
				expired.Store(true)
				q.Expire(worker, t.Index)
				s.Reset()
			})
			r, err := awaitResult(s)
			hold.Stop()
			if expired.Load() {
				log("worker held the trial too long; trial back in the queue", "trial", t.Index, "worker", peer, "max_hold", maxHold)
				return
			}
			if err != nil {
				log("worker gone, trial back in the queue", "trial", t.Index, "worker", peer, "err", err)
				s.Reset()
				return
			}
			if r.Setup { // this worker cannot run trials: let others
				log("worker cannot run trials, dropped; trial back in the queue", "trial", t.Index, "worker", peer, "err", r.Error)
				s.Reset()
				return
			}
			if err := q.Finish(worker, *r); err != nil {
				log("result refused, worker dropped", "err", err)
				s.Reset()
				return
			}
			log("trial done", "trial", r.Index, "label", t.Label, "accuracy", r.Accuracy, "worker", peer)
		}
	})
	return func(d time.Duration) {
		done := make(chan struct{})
		go func() { active.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(d):
		}
	}
}

// awaitResult reads a worker's frames, keepalives skipped, until its
// result; silence longer than sweepSilence is an error.
func awaitResult(s *p2p.Stream) (*TrialResult, error) {
	for {
		b, err := s.Recv(maxSweepFrame)
		if err != nil {
			return nil, err
		}
		var m workerMsg
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("malformed message: %w", err)
		}
		if m.Result != nil {
			return m.Result, nil
		}
	}
}

// CheckTrialSize refuses a trial too large for one sweep message (a huge
// vocabulary), before any worker would choke on it.
func CheckTrialSize(t Trial) error {
	b, err := json.Marshal(sweepMsg{Trial: &t})
	if err != nil {
		return err
	}
	if len(b) > maxSweepFrame {
		return fmt.Errorf("sweep: a trial is %d bytes as a message, more than %d (the vocabulary?)", len(b), maxSweepFrame)
	}
	return nil
}

// SweepWorker trains the trials a coordinator hands out until it says
// done. base is this machine's node config (folder, data paths); each
// trial runs as a one-node run in its own folder under base.Dir. A trial
// that cannot run (a bad run config, a missing file) is reported with its
// error, not fatal. It returns how many trials it ran.
func SweepWorker(ctx context.Context, h *p2p.Host, coordinator string, base Config) (int, error) {
	pid, err := h.Connect(ctx, coordinator)
	if err != nil {
		return 0, err
	}
	raw, err := h.NewStream(ctx, pid, SweepProtocol)
	if err != nil {
		return 0, fmt.Errorf("sweep: opening a stream to the coordinator: %w", err)
	}
	every := sweepKeepalive
	s := p2p.NewStream(raw, sweepSilence)
	defer s.Reset()
	ran := 0
	for {
		b, err := s.Recv(maxSweepFrame)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return ran, errors.New("sweep: the coordinator closed the stream")
			}
			return ran, fmt.Errorf("sweep: %w", err)
		}
		var m sweepMsg
		if err := json.Unmarshal(b, &m); err != nil {
			return ran, fmt.Errorf("sweep: malformed message from the coordinator: %w", err)
		}
		switch {
		case m.Done:
			return ran, nil
		case m.Trial == nil:
			continue // keepalive
		}
		r, err := trainWithKeepalive(ctx, s, *m.Trial, base, every)
		if err != nil {
			return ran, err
		}
		if !r.Setup {
			ran++
		}
		out, err := json.Marshal(workerMsg{Result: &r})
		if err != nil {
			return ran, fmt.Errorf("sweep: encoding the result of trial %d: %w", r.Index, err)
		}
		if err := s.Send(out); err != nil {
			return ran, fmt.Errorf("sweep: sending the result of trial %d: %w", r.Index, err)
		}
		if r.Setup {
			return ran, fmt.Errorf("sweep: this machine cannot run the sweep's trials: %s", r.Error)
		}
	}
}

// trainWithKeepalive runs a trial while telling the coordinator, every
// interval, that this worker is alive.
func trainWithKeepalive(ctx context.Context, s *p2p.Stream, t Trial, base Config, every time.Duration) (TrialResult, error) {
	done := make(chan TrialResult, 1)
	go func() { done <- runTrial(ctx, t, base) }()
	keepalive, _ := json.Marshal(workerMsg{})
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			return r, nil
		case <-tick.C:
			if err := s.Send(keepalive); err != nil {
				<-done
				return TrialResult{}, fmt.Errorf("sweep: coordinator unreachable during trial %d: %w", t.Index, err)
			}
		}
	}
}

// runTrial trains one trial locally; any failure becomes the result's
// Error.
func runTrial(ctx context.Context, t Trial, base Config) TrialResult {
	start := time.Now()
	res := TrialResult{Index: t.Index}
	fail := func(err error) TrialResult {
		res.Error, res.Seconds = err.Error(), time.Since(start).Seconds()
		return res
	}
	setup := func(err error) TrialResult { // the trial never started here
		res.Setup = true
		return fail(err)
	}
	cfg := base
	cfg.Run = t.Run
	cfg.Dir = filepath.Join(base.Dir, fmt.Sprintf("trial-%d", t.Index))
	cfg.Join, cfg.MinPeers, cfg.Shards = nil, 1, 0
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return setup(err)
	}
	if t.Run.Data.Dataset == DatasetCSV {
		return setup(errors.New("csv trials need the CSV files on this machine: run that sweep locally"))
	}
	if t.Run.IsText() { // New checks the file against the run's hash, as for any node
		cfg.VocabPath = filepath.Join(cfg.Dir, "vocab.txt")
		if err := atomicfile.Write(cfg.VocabPath, t.Vocab); err != nil {
			return setup(err)
		}
	}
	r, started, err := TrainTrial(ctx, cfg)
	switch {
	case !started:
		return setup(err) // data missing here, or a model this machine cannot build
	case err != nil:
		return fail(err) // a trial that diverges is a result, not a worker problem
	}
	res.Accuracy, res.TestLoss, res.Seconds = r.Accuracy, r.TestLoss, time.Since(start).Seconds()
	return res
}

// TrainTrial trains cfg as one run on this machine, for a sweep. A run
// that ends with a test loss that is not a finite number is an error: it
// diverged (and NaN has no JSON). started is false when the node never
// came up (cfg invalid, data missing, a model this machine cannot build).
func TrainTrial(ctx context.Context, cfg Config) (r *Result, started bool, err error) {
	// A trial folder is scratch: the checkpoint a trial of an earlier
	// sweep left there is no run to resume.
	if err := os.Remove(filepath.Join(cfg.Dir, CheckpointFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	n, err := New(cfg)
	if err != nil {
		return nil, false, err
	}
	if r, err = n.Run(ctx); err != nil {
		return nil, true, err
	}
	if math.IsNaN(r.TestLoss) || math.IsInf(r.TestLoss, 0) || math.IsNaN(r.Accuracy) {
		return nil, true, fmt.Errorf("training ended with test loss %v", r.TestLoss)
	}
	return r, true, nil
}

// VocabBytes reads a text run's vocabulary file for its trials (nil for
// other runs).
func VocabBytes(cfg Config) ([]byte, error) {
	if !cfg.Run.IsText() {
		return nil, nil
	}
	return readVocab(cfg)
}
