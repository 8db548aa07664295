package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// runLone runs a lone node with --http to its last step and returns its
// HTTP address; stop ends it.
func runLone(t *testing.T, cfg Config) (addr string, stop func()) {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := n.Run(ctx); done <- err }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(stop)
	testutil.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		if st := n.Status(); st.Phase != "done" {
			return errString("phase " + st.Phase)
		}
		return nil
	})
	return n.http.Addr(), stop
}

type errString string

func (e errString) Error() string { return string(e) }

func getDash(t *testing.T, url string) DashData {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d DashData
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// A restarted node's dashboard still shows the earlier run: the history
// is read back from metrics.jsonl.
func TestDashboardHistorySurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP = "127.0.0.1:0"
	cfg.Run.Compute.Batch, cfg.Run.Optimizer.TargetBatch = 16, 16
	cfg.Run.Optimizer.Steps, cfg.Run.Optimizer.Warmup = 3, 0
	cfg.Linger = time.Minute
	addr, stop := runLone(t, cfg)
	d := getDash(t, "http://"+addr+"/api/dash")
	if !d.Reset || len(d.History) == 0 || d.History[len(d.History)-1].Step != 3 || d.History[len(d.History)-1].Acc == nil {
		t.Fatalf("first run's history %+v, want points ending at step 3 with an accuracy", d.History)
	}
	if len(d.Peers) != 1 || !d.Peers[0].Self || d.Peers[0].Peer != d.Status.Peer {
		t.Fatalf("a lone node's swarm table: %+v", d.Peers)
	}
	// Polling from the newest point gets nothing new.
	if again := getDash(t, "http://"+addr+"/api/dash?after="+strconv.FormatUint(d.Seq, 10)+"&gen="+strconv.FormatUint(d.Gen, 10)); again.Reset || len(again.History) != 0 {
		t.Fatalf("poll from seq %d gave %d points (reset %v)", d.Seq, len(again.History), again.Reset)
	}
	stop()
	b, err := os.ReadFile(filepath.Join(cfg.Dir, HistoryFile))
	if err != nil || strings.Count(string(b), "\n") != len(d.History) {
		t.Fatalf("metrics.jsonl has %q (%v), want %d rows", b, err, len(d.History))
	}

	addr, _ = runLone(t, cfg)
	back := getDash(t, "http://"+addr+"/api/dash")
	if len(back.History) < len(d.History) {
		t.Fatalf("restarted node shows %d points, the first run logged %d", len(back.History), len(d.History))
	}
	for i, p := range d.History {
		if q := back.History[i]; q.Step != p.Step || q.Time != p.Time || q.Loss != p.Loss {
			t.Fatalf("point %d after restart %+v, was %+v", i, q, p)
		}
	}
}

// The page and its assets come from the binary, under a policy that
// loads nothing from elsewhere; bad queries get a 400 that names them.
func TestDashboardServes(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP = "127.0.0.1:0"
	cfg.Run.Compute.Batch, cfg.Run.Optimizer.TargetBatch = 16, 16
	cfg.Run.Optimizer.Steps, cfg.Run.Optimizer.Warmup = 1, 0
	cfg.Linger = time.Minute
	addr, _ := runLone(t, cfg)
	for path, want := range map[string]string{"/": "<table id=\"swarm\">", "/dash.js": "api/dash", "/dash.css": ".chart"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) || resp.Header.Get("Content-Security-Policy") != "default-src 'self'" {
			t.Errorf("%s: %s, csp %q, body lacks %q", path, resp.Status, resp.Header.Get("Content-Security-Policy"), want)
		}
	}
	for q, field := range map[string]string{"?after=x": "after", "?after=1&gen=-1": "gen"} {
		resp, err := http.Get("http://" + addr + "/api/dash" + q)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(string(body), field+":") {
			t.Errorf("%s: %s %q, want a 400 naming %s", q, resp.Status, body, field)
		}
	}
}

// In sync mode the dashboard's accuracy sample runs while a round does,
// not between rounds where the swarm waits for it: the first is of the
// initial state, taken during the first round, and none is taken between
// rounds before the last step.
func TestDashboardEvaluatesBesideRounds(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP = "127.0.0.1:0"
	cfg.Run.Compute.Batch, cfg.Run.Optimizer.TargetBatch = 16, 16
	cfg.Run.Optimizer.Steps, cfg.Run.Optimizer.Warmup = 3, 0
	cfg.Linger = time.Minute
	addr, _ := runLone(t, cfg)
	h := getDash(t, "http://"+addr+"/api/dash").History
	if len(h) < 2 || h[0].Step != 0 || h[0].Acc == nil {
		t.Fatalf("history %+v, want a first point at step 0 with an accuracy", h)
	}
	for _, p := range h[1 : len(h)-1] {
		if p.Acc != nil {
			t.Errorf("point at step %d has an accuracy: evaluated between rounds", p.Step)
		}
	}
	if last := h[len(h)-1]; last.Step != 3 || last.Acc == nil {
		t.Errorf("last point %+v, want step 3 with an accuracy", last)
	}
}
