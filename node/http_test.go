package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
)

// A lone node trains its run and reports it on /status and /metrics.
func TestStatusAndMetrics(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP = "127.0.0.1:0"
	cfg.Run.Compute.Batch, cfg.Run.Optimizer.TargetBatch = 16, 16
	cfg.Run.Optimizer.Steps, cfg.Run.Optimizer.Warmup = 3, 0
	cfg.Linger = time.Minute
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := n.Run(ctx); done <- err }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	var info Info
	var st Status
	deadline := time.Now().Add(time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("node did not finish its 3 steps: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
		b, err := os.ReadFile(filepath.Join(cfg.Dir, "node.json"))
		if err != nil || json.Unmarshal(b, &info) != nil || info.HTTP == "" {
			continue
		}
		resp, err := http.Get("http://" + info.HTTP + "/status")
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && st.Phase == "done" {
			break
		}
	}
	if st.Peer != n.ID().String() || st.Run != n.RunID() || st.Step != 3 || st.Hash == "" || st.LivePeers != 1 || len(st.Addrs) == 0 || st.Device.Cores < 1 {
		t.Fatalf("status does not describe the node: %+v", st)
	}
	resp, err := http.Get("http://" + info.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"swarmtrain_step 3", "swarmtrain_live_peers 1", fmt.Sprintf("swarmtrain_rounds_total %d", 3),
		"swarmtrain_samples_total 48", "swarmtrain_build_info{commit=", "go_goroutines ", "process_cpu_seconds_total ",
		"go_sched_gomaxprocs_threads ", // only the current Go collector has it
		"swarmtrain_round_duration_seconds_count 3"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	problems, err := promtestutil.GatherAndLint(newRegistry(n))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// testConfig is a small node on loopback in its own directory.
func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Run.Model.Hidden = []int{8}
	return cfg
}
