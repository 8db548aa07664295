package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
	"github.com/swarmtrain/swarmtrain/p2p"
	"github.com/swarmtrain/swarmtrain/trainer/text"
)

func TestSweepQueue(t *testing.T) {
	q := NewSweepQueue([]Trial{{Label: "first"}, {Label: "second"}})
	a, ok, _ := q.Take("w1#7")
	b, ok2, _ := q.Take("w2")
	if !ok || !ok2 || a.Index == b.Index {
		t.Fatalf("two takes gave %d and %d (%v %v)", a.Index, b.Index, ok, ok2)
	}
	_, ok, changed := q.Take("w3")
	if ok {
		t.Fatal("a third trial out of two")
	}
	if err := q.Finish("w2", TrialResult{Index: a.Index, Accuracy: 0.5}); err == nil {
		t.Error("w2 finished w1's trial")
	}
	if err := q.Finish("w1#8", TrialResult{Index: a.Index, Accuracy: 0.5}); err == nil {
		t.Error("another stream of w1 finished the trial of stream #7")
	}
	if err := q.Finish("w1#7", TrialResult{Index: a.Index, Accuracy: 2}); err == nil {
		t.Error("accuracy 2 accepted")
	}
	q.Release("w2") // w2 died holding b
	select {
	case <-changed:
	default:
		t.Fatal("a release did not wake the waiters")
	}
	again, ok, _ := q.Take("w3")
	if !ok || again.Index != b.Index {
		t.Fatalf("after the release w3 got %d (%v), want trial %d", again.Index, ok, b.Index)
	}
	if err := q.Finish("w2", TrialResult{Index: b.Index}); err == nil {
		t.Error("the dead worker's late result was accepted")
	}
	q.Finish("w1#7", TrialResult{Index: a.Index, Accuracy: 0.9})
	q.Finish("w3", TrialResult{Index: b.Index, Accuracy: 0.8})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := q.Wait(ctx); err != nil || q.Left() != 0 {
		t.Fatalf("Wait: %v, %d left", err, q.Left())
	}
	if r := q.Results(); len(r) != 2 || r[0].Worker != "w1" || r[1].Worker != "w3" || r[0].Label != "first" {
		t.Errorf("results %+v", r)
	}
}

// A coordinator and two worker peers over libp2p on loopback: every trial
// comes back, trained, and a worker that vanishes mid-trial loses nothing:
// its trial goes to another. (Trials are tiny: trained means better than
// chance, 10% and a loss of ln 10 = 2.30.)
func TestDistributedSweep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hosts := sweepHosts(t, ctx, 4)
	var trials []Trial
	for _, lr := range []float32{1e-3, 3e-3, 1e-2} {
		rc := DefaultRunConfig()
		rc.Model.Hidden, rc.Compute.Batch, rc.Optimizer.TargetBatch, rc.Optimizer.Steps, rc.Optimizer.Warmup, rc.Optimizer.LR = []int{16}, 32, 32, 60, 0, lr
		trials = append(trials, Trial{Label: fmt.Sprintf("lr=%g", lr), Run: rc})
	}
	q := NewSweepQueue(trials)
	ServeSweep(ctx, hosts[0], q, func(string, ...any) {})
	coord := hosts[0].JoinAddrs()[0]

	// A stream that takes a trial and dies later, from the same peer as
	// the first real worker: its death must not take that worker's trial.
	raw, err := hosts[1].NewStream(ctx, hosts[0].ID(), SweepProtocol)
	if err != nil {
		t.Fatal(err)
	}
	s := p2p.NewStream(raw, 10*time.Second)
	b, err := s.Recv(maxSweepFrame)
	var m sweepMsg
	if err != nil || json.Unmarshal(b, &m) != nil || m.Trial == nil {
		t.Fatalf("the first worker got %q, %v", b, err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond) // the real workers are training by then
		s.Reset()
	}()

	var wg sync.WaitGroup
	ran := make([]int, 2)
	errs := make([]error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := DefaultConfig()
			cfg.Dir = t.TempDir()
			ran[w], errs[w] = SweepWorker(ctx, hosts[1+w], coord, cfg)
		}()
	}
	if err := q.Wait(ctx); err != nil {
		t.Fatalf("sweep did not finish: %v (%d left)", err, q.Left())
	}
	wg.Wait()
	for w := range 2 {
		if errs[w] != nil {
			t.Errorf("worker %d: %v", w, errs[w])
		}
	}
	if ran[0]+ran[1] != 3 || ran[0] == 0 || ran[1] == 0 {
		t.Errorf("workers ran %v trials, want 3 shared by both", ran)
	}
	res := q.Results()
	if len(res) != 3 {
		t.Fatalf("%d results, want 3", len(res))
	}
	for _, r := range res {
		if r.Error != "" || r.Accuracy < 0.12 || r.TestLoss > 2.25 || !strings.HasPrefix(r.Label, "lr=") || strings.Contains(r.Worker, "#") {
			t.Errorf("result %+v", r)
		}
	}
}

// A text trial carries its vocabulary: a worker writes it, checks it
// against the run's hash, and trains; bytes that do not match the hash
// are a setup failure (the trial goes back to the queue), not a result.
func TestRunTextTrial(t *testing.T) {
	vocab := []byte(strings.Join(append(slices.Clone(text.Specials), "the", "of", "light", "and", "rays", "."), "\n") + "\n")
	sum := sha256.Sum256(vocab)
	rc := DefaultRunConfig()
	rc.Model.Kind, rc.Data.Dataset, rc.Model.Seq, rc.Model.Width, rc.Model.Heads, rc.Model.Layers = "bert", DatasetMLM, 16, 8, 2, 1
	rc.Compute.Batch, rc.Optimizer.TargetBatch, rc.Optimizer.Steps, rc.Optimizer.Warmup = 8, 8, 3, 0
	rc.Data.Vocab = hex.EncodeToString(sum[:])
	base := DefaultConfig()
	base.Run = rc // the default corpus, Opticks
	var err error
	if _, _, rc.Data.Files, err = base.readTextFiles(); err != nil {
		t.Skip(err)
	}
	base.Dir = t.TempDir()
	r := runTrial(context.Background(), Trial{Index: 3, Run: rc, Vocab: vocab}, base)
	if r.Error != "" || r.Setup || r.Index != 3 || r.TestLoss <= 0 {
		t.Errorf("text trial: %+v", r)
	}
	r = runTrial(context.Background(), Trial{Index: 4, Run: rc, Vocab: append(vocab, "x\n"...)}, base)
	if !r.Setup || !strings.Contains(r.Error, "--vocab") || !strings.Contains(r.Error, "the run names") {
		t.Errorf("a vocabulary that does not match its hash: %+v", r)
	}
}

// A worker that takes a trial and then goes silent (its connection still
// up) loses the trial after the silence limit; another worker trains it.
func TestSweepSilentWorker(t *testing.T) {
	defer func(k, s time.Duration) { sweepKeepalive, sweepSilence = k, s }(sweepKeepalive, sweepSilence)
	// 20 keepalives of silence: a loaded 2-core machine (MNIST loading in
	// the live worker, GC) delayed one by 700 ms once.
	sweepKeepalive, sweepSilence = 100*time.Millisecond, 2*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hosts := sweepHosts(t, ctx, 3)
	q := oneTinyTrial()
	ServeSweep(ctx, hosts[0], q, func(string, ...any) {})

	raw, err := hosts[2].NewStream(ctx, hosts[0].ID(), SweepProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Reset()
	if b, err := p2p.NewStream(raw, 0).Recv(maxSweepFrame); err != nil || !strings.Contains(string(b), "only") {
		t.Fatalf("the silent worker got %q, %v", b, err)
	} // …and says nothing from now on.

	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	ran, err := SweepWorker(ctx, hosts[1], hosts[0].JoinAddrs()[0], cfg)
	if err != nil || ran != 1 {
		t.Fatalf("the live worker ran %d trials: %v", ran, err)
	}
	if r := q.Results(); len(r) != 1 || r[0].Worker != hosts[1].ID().String() {
		t.Errorf("results %+v, want the one trial from the live worker", r)
	}
}

// A worker that holds a trial past MaxHold loses it (its late result is
// refused) and another takes it; a trial that runs out of time with
// maxHoldExpiries workers is given up with an error instead of circling.
func TestSweepQueueExpire(t *testing.T) {
	q := NewSweepQueue([]Trial{{Label: "slow"}})
	a, _, _ := q.Take("w1#1")
	q.Expire("w2#1", a.Index) // not its holder: nothing happens
	if _, ok, _ := q.Take("w2#1"); ok {
		t.Fatal("a trial was handed out twice after a stranger's expiry")
	}
	q.Expire("w1#1", a.Index)
	b, ok, _ := q.Take("w2#1")
	if !ok || b.Index != a.Index {
		t.Fatal("an expired trial was not handed to another worker")
	}
	if err := q.Finish("w1#1", TrialResult{Index: a.Index, Accuracy: 0.5}); err == nil {
		t.Error("the expired worker's late result was accepted")
	}
	q.Expire("w2#1", b.Index)
	if q.Left() != 0 {
		t.Fatalf("%d trials left after %d expiries, want the trial given up", q.Left(), maxHoldExpiries)
	}
	if r := q.Results(); len(r) != 1 || !strings.Contains(r[0].Error, "longer than") {
		t.Fatalf("results %+v, want the trial with an error", r)
	}
}

// openSweep opens a sweep stream from h to the coordinator and reads its
// first trial.
func openSweep(ctx context.Context, t *testing.T, h, coord *p2p.Host) (*p2p.Stream, Trial) {
	t.Helper()
	raw, err := h.NewStream(ctx, coord.ID(), SweepProtocol)
	if err != nil {
		t.Fatal(err)
	}
	s := p2p.NewStream(raw, 10*time.Second)
	b, err := s.Recv(maxSweepFrame)
	var m sweepMsg
	if err != nil || json.Unmarshal(b, &m) != nil || m.Trial == nil {
		t.Fatalf("no trial: %q, %v", b, err)
	}
	return s, *m.Trial
}

// heldBy counts the trials held by streams of peer.
func (q *SweepQueue) heldBy(peer string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, o := range q.owner {
		if o != "" && strings.HasPrefix(o, peer+"#") {
			n++
		}
	}
	return n
}

// One stream per worker: a peer's second stream replaces its first,
// whose trial goes back, so a peer never holds two trials at once.
func TestSweepOneStreamPerWorker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hosts := sweepHosts(t, ctx, 2)
	rc := DefaultRunConfig()
	q := NewSweepQueue([]Trial{{Label: "a", Run: rc}, {Label: "b", Run: rc}, {Label: "c", Run: rc}})
	ServeSweep(ctx, hosts[0], q, func(string, ...any) {})
	first, _ := openSweep(ctx, t, hosts[1], hosts[0])
	defer first.Reset()
	second, _ := openSweep(ctx, t, hosts[1], hosts[0])
	defer second.Reset()
	if _, err := first.Recv(maxSweepFrame); err == nil {
		t.Fatal("the first stream still works after the peer opened a second")
	}
	peer := hosts[1].ID().String()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := q.heldBy(peer); n != 1 {
			return fmt.Errorf("one peer holds %d trials", n)
		}
		return nil
	})
}

// A worker that keeps its stream alive with keepalives but never
// finishes loses its trial after MaxHold, and another worker trains it.
func TestSweepMaxHold(t *testing.T) {
	defer func(k time.Duration) { sweepKeepalive = k }(sweepKeepalive)
	sweepKeepalive = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hosts := sweepHosts(t, ctx, 3)
	q := oneTinyTrial()
	// Time for the live worker to load MNIST and train five steps on a
	// loaded machine, while the stalled one waits it out.
	q.MaxHold = 12 * time.Second
	ServeSweep(ctx, hosts[0], q, func(string, ...any) {})

	stalled, _ := openSweep(ctx, t, hosts[2], hosts[0])
	defer stalled.Reset()
	go func() { // alive, never done
		keepalive, _ := json.Marshal(workerMsg{})
		for stalled.Send(keepalive) == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}()
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	ran, err := SweepWorker(ctx, hosts[1], hosts[0].JoinAddrs()[0], cfg)
	if err != nil || ran != 1 {
		t.Fatalf("the live worker ran %d trials: %v", ran, err)
	}
	if r := q.Results(); len(r) != 1 || r[0].Worker != hosts[1].ID().String() || r[0].Error != "" {
		t.Errorf("results %+v, want the one trial from the live worker", r)
	}
}

// sweepHosts starts n connected loopback hosts, closed when the test ends
// (after the test's own defers, so after the context is cancelled).
func sweepHosts(t *testing.T, ctx context.Context, n int) []*p2p.Host {
	t.Helper()
	hosts, err := loopbackHosts(ctx, n)
	t.Cleanup(func() {
		for _, h := range hosts {
			h.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return hosts
}

// oneTinyTrial is a queue of one trial of five steps of a tiny MLP.
func oneTinyTrial() *SweepQueue {
	rc := DefaultRunConfig()
	rc.Model.Hidden, rc.Compute.Batch, rc.Optimizer.TargetBatch, rc.Optimizer.Steps, rc.Optimizer.Warmup = []int{8}, 32, 32, 5, 0
	return NewSweepQueue([]Trial{{Label: "only", Run: rc}})
}
