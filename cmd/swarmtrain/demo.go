package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/p2p"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// demoResult is the one JSON object `demo --json` prints.
type demoResult struct {
	Run       string  `json:"run"`
	Accuracy  float64 `json:"accuracy"`
	HashesOK  bool    `json:"hashes_equal"`
	Rounds    int     `json:"rounds"`
	BytesSent int64   `json:"bytes_sent"`
	Codec     string  `json:"codec"`
	// BytesPerRound is what one node sent per round, on average: all
	// traffic (gossip too), the figure that compares codecs.
	BytesPerRound float64 `json:"bytes_per_node_round"`
	// ControlPerSec and ControlPerRound are the control traffic one node
	// sent (node.Traffic: all but the model's bytes), on average, per
	// second of its run and per round.
	ControlPerSec   float64       `json:"control_bytes_per_node_sec"`
	ControlPerRound float64       `json:"control_bytes_per_node_round"`
	Seconds         float64       `json:"seconds"`
	Nodes           []node.Result `json:"nodes"`
}

func demoCmd() *cobra.Command {
	var (
		flagRun  node.RunConfig
		runs     *runFlags
		nodes    int
		dir      string
		data     dataFlags
		cfg      node.Config
		asJSON   bool
		keep     bool
		initPath string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a local swarm: N node processes train MNIST together on loopback",
		Long: `Start a swarm of N nodes on this machine, each its own OS process with its own
libp2p host, identity and data shard, joined over loopback exactly as separate
machines would join, with one swarm key (so over TCP). It shows live progress, then prints the test accuracy and
every node's state hash (equal hashes: the replicas never diverged).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 1 || nodes > 32 {
				return fmt.Errorf("--nodes %d: want 1..32", nodes)
			}
			rc, err := runs.run()
			if err != nil {
				return err
			}
			if initPath != "" {
				if initPath, err = filepath.Abs(initPath); err != nil {
					return err
				}
			}
			if err := initFrom(&rc, initPath); err != nil {
				return err
			}
			cfg.Run, cfg.InitPath = rc, initPath
			if err := data.apply(&cfg); err != nil {
				return err
			}
			if err := node.PrepareImages(&cfg); err != nil {
				return err
			}
			if !cfg.Run.IsText() {
				if err := cfg.Run.Validate(); err != nil { // text runs are checked once their files are hashed
					return err
				}
			}
			return runDemo(cmd.Context(), cfg, nodes, dir, asJSON, keep)
		},
	}
	fs := cmd.Flags()
	runs = addRunFlags(fs, &flagRun)
	fs.IntVar(&nodes, "nodes", 4, "number of node processes")
	fs.StringVar(&dir, "dir", "", "parent folder for the node directories (default: a temporary folder, removed afterwards)")
	data.bind(fs)
	fs.BoolVar(&asJSON, "json", false, "end with one JSON object on stdout: accuracy, per-node peer and hash, rounds, bytes")
	fs.BoolVar(&keep, "keep", false, "keep the node directories (logs in <dir>/node-K/node.log)")
	fs.StringVar(&initPath, "init-from", "", "every node starts from this checkpoint's weights (transfer learning; encoder tensors only when the head differs)")
	fs.IntVar(&cfg.CheckpointEvery, "checkpoint-every", 0, "nodes also write <dir>/node-K/checkpoint.safetensors every N steps (0: only at the end and when stopped); keep them with --dir or --keep")
	return cmd
}

type child struct {
	dir  string
	cmd  *exec.Cmd
	done chan error
	gone chan struct{} // closed once the process is reaped
	info node.Info
}

func runDemo(ctx context.Context, cfg node.Config, n int, dir string, asJSON, keep bool) error {
	ctx, stop := leaveOnSignal(ctx, os.Stderr, "stopping the nodes")
	defer stop()
	out := io.Writer(os.Stdout)
	if asJSON {
		out = os.Stderr // stdout carries only the final JSON
	}
	kept := keep || dir != ""
	if dir == "" {
		d, err := os.MkdirTemp("", "swarmtrain-demo-")
		if err != nil {
			return err
		}
		dir = d
		if !keep {
			defer os.RemoveAll(d)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// A text run learns its vocabulary once, here; the nodes get the file.
	if err := prepareText(&cfg, filepath.Join(dir, "vocab.txt"), false); err != nil {
		return err
	}
	rc := cfg.Run
	if err := rc.Validate(); err != nil {
		return err
	}
	// The nodes read the run from one file: what they train is this run,
	// field for field, with no flags to rebuild.
	runFile := filepath.Join(dir, "run.json")
	if err := node.WriteRunConfig(runFile, rc); err != nil {
		return err
	}
	// One swarm, one key: the nodes read it from a file (not from their
	// command lines, which other users of the machine can see).
	keyFile := filepath.Join(dir, p2p.SwarmKeyFile)
	if _, _, err := p2p.LoadOrCreateSwarmKey(keyFile); err != nil {
		return err
	}
	fmt.Fprintf(out, "demo: %d nodes on loopback, run %s, %s, %d steps of %d samples, %s\n",
		n, rc.ID(), describeModel(rc), rc.Optimizer.Steps, rc.Optimizer.TargetBatch, rc.Optimizer.Name)
	for _, c := range rc.Caveats() {
		fmt.Fprintf(out, "note: %s\n", c)
	}
	start := time.Now()
	children := make([]*child, n)
	// Every node started goes when the demo goes, on any return.
	defer stopChildren(children)
	for i := 0; i < n; i++ {
		d := filepath.Join(dir, "node-"+strconv.Itoa(i))
		os.RemoveAll(filepath.Join(d, "result.json"))
		os.RemoveAll(filepath.Join(d, "node.json"))
		args := []string{"node", "--dir", d, "--quiet", "--log-file", filepath.Join(d, "node.log"),
			"--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0", "--key-file", keyFile, // a swarm key: TCP only
			"--min-peers", strconv.Itoa(n), "--shard", fmt.Sprintf("%d/%d", i, n), "--linger", "3s", "--run-config", runFile}
		args = append(args, dataArgs(cfg)...)
		if cfg.CheckpointEvery > 0 {
			args = append(args, "--checkpoint-every", strconv.Itoa(cfg.CheckpointEvery))
		}
		if cfg.InitPath != "" {
			args = append(args, "--init-from", cfg.InitPath)
		}
		if i > 0 {
			args = append(args, "--join", tcpAddr(children[0].info.Addrs))
		}
		c, err := startChild(ctx, exe, d, args)
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		children[i] = c
	}
	// A signal asks every node to leave: each writes its result and
	// checkpoint, and the demo prints what they have.
	go func() {
		<-ctx.Done()
		for _, c := range children {
			select {
			case <-c.gone:
			default:
				c.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
	}()
	fmt.Fprintf(out, "dashboard: http://%s/ (any node's --http address shows the whole swarm)\n", children[0].info.HTTP)
	// Live progress: poll every node's /status.
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !printSwarm(out, children, rc.Optimizer.Steps, start) {
				return
			}
		}
	}()
	var failed []string
	for i, c := range children {
		if err := <-c.done; err != nil {
			failed = append(failed, fmt.Sprintf("node %d: %v (log: %s)", i, err, filepath.Join(c.dir, "node.log")))
		}
	}
	<-progressDone
	if ctx.Err() != nil {
		return interrupted(out, children, start)
	}
	if len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintln(os.Stderr, f)
		}
		if !keep {
			dumpLogs(children)
		}
		return fmt.Errorf("%d of %d nodes failed", len(failed), n)
	}
	res := demoResult{Run: rc.ID(), HashesOK: true, Seconds: time.Since(start).Seconds()}
	for i, c := range children {
		var r node.Result
		b, err := os.ReadFile(filepath.Join(c.dir, "result.json"))
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			return fmt.Errorf("node %d result: %w", i, err)
		}
		res.Nodes = append(res.Nodes, r)
		res.BytesSent += r.BytesSent
		if r.Hash != res.Nodes[0].Hash || r.Step != res.Nodes[0].Step {
			res.HashesOK = false
		}
		res.Rounds = max(res.Rounds, r.Rounds)
	}
	res.Accuracy = res.Nodes[0].Accuracy
	res.Codec = rc.Averaging.Codec
	var control int64
	for _, r := range res.Nodes {
		res.ControlPerSec += r.ControlPerSec / float64(len(res.Nodes))
		if r.Control != nil {
			control += r.Control.ControlBytes
		}
	}
	if res.Rounds > 0 {
		res.BytesPerRound = float64(res.BytesSent) / float64(len(res.Nodes)) / float64(res.Rounds)
		res.ControlPerRound = float64(control) / float64(len(res.Nodes)) / float64(res.Rounds)
	}
	fmt.Fprintf(out, "\nfinished in %.0fs: %d steps, %d rounds, %s sent in total (%s per node per round, codec %s)\n",
		res.Seconds, res.Nodes[0].Step, res.Rounds, humanBytes(res.BytesSent), humanBytes(int64(res.BytesPerRound)), res.Codec)
	fmt.Fprintf(out, "control traffic (all but the model's bytes): %s/s per node, %s per node per round\n",
		humanBytes(int64(res.ControlPerSec)), humanBytes(int64(res.ControlPerRound)))
	for i, r := range res.Nodes {
		fmt.Fprintf(out, "  node %d  %s  step %d  state hash %s  accuracy %.2f%%\n", i, shortPeer(r.Peer), r.Step, r.Hash, 100*r.Accuracy)
		if r.Deterministic != "" {
			// The state hash covers the peer IDs, new every demo; the
			// model hash is what another run of the command repeats.
			fmt.Fprintf(out, "          model hash %s  deterministic: %s\n", r.ModelHash, r.Deterministic)
		}
	}
	if res.HashesOK {
		fmt.Fprintf(out, "all %d state hashes equal\n", n)
	} else {
		fmt.Fprintln(out, "STATE HASHES DIFFER: replicas diverged")
	}
	what := "test accuracy"
	if rc.Data.Dataset == node.DatasetMLM {
		what = "held-out masked-token accuracy"
	}
	fmt.Fprintf(out, "%s: %.2f%%\n", what, 100*res.Accuracy)
	if kept {
		fmt.Fprintf(out, "checkpoint: %s\nrun config: %s\n", filepath.Join(children[0].dir, "checkpoint.safetensors"), runFile)
		if rc.IsText() {
			fmt.Fprintf(out, "vocabulary: %s\n", cfg.VocabPath)
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	if !res.HashesOK {
		return errors.New("replicas diverged")
	}
	return nil
}

// childEnv is the environment of a demo's node: ours without the
// SWARMTRAIN_* variables that set a node flag, but for those the demo
// passes on purpose (passEnv). The others set the demo's own flags
// already, and the demo gives each node what it needs; read again by
// every node, one such as SWARMTRAIN_JOIN sent the first node to a dead
// address and the demo stayed at step 0. Variables that name no flag
// (a test's hooks) stay.
func childEnv(environ []string, nodeFlags *pflag.FlagSet) []string {
	return slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		for _, keep := range passEnv {
			if name == envName(keep) {
				return false
			}
		}
		drop := false
		nodeFlags.VisitAll(func(f *pflag.Flag) { drop = drop || name == envName(f.Name) })
		return drop
	})
}

// passEnv are the flags a demo hands its nodes through the environment
// (set in the root command's PersistentPreRunE).
var passEnv = []string{"log-level", "log-format", "engine", "precision"}

func startChild(ctx context.Context, exe, dir string, args []string) (*child, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = childAttr()
	cmd.Env = childEnv(os.Environ(), nodeCmd().Flags())
	cmd.Stdout = io.Discard
	errf, err := os.Create(filepath.Join(dir, "stderr.txt"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = errf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{dir: dir, cmd: cmd, done: make(chan error, 1), gone: make(chan struct{})}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		close(c.gone)
		errf.Close()
		if err != nil {
			if b, _ := os.ReadFile(filepath.Join(dir, "stderr.txt")); len(b) > 0 {
				err = fmt.Errorf("%w: %s", err, lastLine(b))
			}
		}
		exited <- err
		c.done <- err
	}()
	// Wait for node.json: the node is listening and knows its addresses.
	deadline := time.After(2 * time.Minute)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "node.json"))
		if err == nil && json.Unmarshal(b, &c.info) == nil && len(c.info.Addrs) > 0 {
			return c, nil
		}
		select {
		case err := <-exited: // (the goroutine has put it on c.done too)
			return nil, fmt.Errorf("exited before listening: %v", err)
		case <-deadline:
			cmd.Process.Kill()
			return nil, errors.New("did not start within 2 minutes")
		case <-ctx.Done():
			cmd.Process.Kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopChildren asks every node still running to leave, and kills those
// that have not gone within 20 s.
func stopChildren(children []*child) {
	deadline := time.After(20 * time.Second)
	for _, c := range children {
		if c == nil {
			continue
		}
		select {
		case <-c.gone:
			continue
		default:
		}
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.gone:
		case <-deadline:
			c.cmd.Process.Kill()
			<-c.gone
		}
	}
}

// interrupted prints what a stopped demo has: each node's step, state
// hash and accuracy when it left (its result.json), and returns the
// error the demo ends with.
func interrupted(out io.Writer, children []*child, start time.Time) error {
	fmt.Fprintf(out, "\ninterrupted after %.0fs; the nodes left with:\n", time.Since(start).Seconds())
	var steps []uint64
	hashes := map[string]bool{}
	for i, c := range children {
		if c == nil {
			fmt.Fprintf(out, "  node %d  not started\n", i)
			continue
		}
		var r node.Result
		b, err := os.ReadFile(filepath.Join(c.dir, "result.json"))
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			fmt.Fprintf(out, "  node %d  no result (log: %s)\n", i, filepath.Join(c.dir, "node.log"))
			continue
		}
		steps = append(steps, r.Step)
		hashes[fmt.Sprint(r.Step, r.Hash)] = true
		fmt.Fprintf(out, "  node %d  %s  step %d  state hash %s  accuracy %.2f%%\n", i, shortPeer(r.Peer), r.Step, r.Hash, 100*r.Accuracy)
	}
	if len(steps) > 1 && len(hashes) == 1 {
		fmt.Fprintf(out, "all %d state hashes equal\n", len(steps))
	}
	if len(steps) == 0 {
		return errors.New("interrupted before any node had a result")
	}
	return fmt.Errorf("interrupted at step %d", slices.Max(steps))
}

// printSwarm prints one progress line from every node's /status and
// reports whether any node is still running.
func printSwarm(out io.Writer, children []*child, steps int, start time.Time) bool {
	var minStep, maxStep uint64 = ^uint64(0), 0
	var loss, rate float64
	var in, outB int64
	peers, alive := 0, 0
	phase := ""
	for _, c := range children {
		s, err := fetchStatus(c.info.HTTP)
		if err != nil {
			continue
		}
		alive++
		minStep, maxStep = min(minStep, s.Step), max(maxStep, s.Step)
		loss += s.Loss
		rate += s.SamplesPerSec
		in += s.BytesIn
		outB += s.BytesOut
		peers = max(peers, s.LivePeers)
		phase = s.Phase
	}
	if alive == 0 {
		return false
	}
	fmt.Fprintf(out, "[%4.0fs] %-17s step %4d/%d  loss %.3f  live peers %d  %5.0f samples/s  sent %s  received %s\n",
		time.Since(start).Seconds(), phase, maxStep, steps, loss/float64(alive), peers, rate, humanBytes(outB), humanBytes(in))
	return true
}

// tcpAddr prefers a TCP address: it is the fastest transport on loopback.
func tcpAddr(addrs []string) string {
	for _, a := range addrs {
		if strings.Contains(a, "/tcp/") {
			return a
		}
	}
	return addrs[0]
}

func shortPeer(p string) string {
	if len(p) > 16 {
		return p[:8] + "…" + p[len(p)-6:]
	}
	return p
}

func lastLine(b []byte) string {
	s := strings.TrimRight(string(b), "\r\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func dumpLogs(children []*child) {
	for i, c := range children {
		b, err := os.ReadFile(filepath.Join(c.dir, "node.log"))
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		fmt.Fprintf(os.Stderr, "--- node %d log (tail) ---\n%s\n", i, b)
	}
}

// fetchStatus reads a node's /status.
func fetchStatus(addr string) (node.Status, error) {
	var s node.Status
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + addr + "/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// describeModel names the run's network for the demo's first line.
func describeModel(rc node.RunConfig) string {
	m := rc.Model
	switch m.Kind {
	case trainer.ArchCNN:
		ch := m.Channels
		if len(ch) == 0 {
			ch = trainer.DefaultChannels
		}
		return fmt.Sprintf("CNN conv %v, fc %v", ch, m.Hidden)
	case trainer.ArchBERT:
		return fmt.Sprintf("BERT on %s, %d layers × %d wide (%d heads), %d tokens per sequence, vocabulary %s…",
			rc.Data.Dataset, cmp.Or(m.Layers, trainer.DefaultBERTLayers), cmp.Or(m.Width, trainer.DefaultBERTWidth),
			cmp.Or(m.Heads, trainer.DefaultBERTHeads), cmp.Or(m.Seq, node.DefaultSeq), rc.Data.Vocab[:8])
	default:
		return fmt.Sprintf("MLP 784-%v-10", joinInts(m.Hidden))
	}
}
