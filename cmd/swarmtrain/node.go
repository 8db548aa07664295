package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/swarmtrain/swarmtrain/node"
)

// dataFlags are a node's local data paths. They are not run fields, but a
// text run hashes its files into the run (data.files, data.vocab).
type dataFlags struct {
	mnistDir          string
	corpus            []string
	trainCSV, testCSV string
	vocab             string
	cache             string
	memory            string
}

func (d *dataFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&d.mnistDir, "data", "", "folder with MNIST IDX (optionally .gz) or CSV files, or an image folder (one subfolder of PNG/JPEG/GIF per class, optional test/; see --image-size); default: the copy shipped in the GoMNIST Go module, else fetched from peers into --dir/data/mnist")
	fs.StringVar(&d.cache, "data-cache", defaultDataCache(), "folder for decoded image datasets, one file per dataset that every node of this machine maps (shared pages); empty: decode in each process")
	fs.StringVar(&d.memory, "data-memory", "", "keep at most this much of the training set resident, e.g. 64MB or 1GiB: it is read from the --data-cache file a window of blocks (2 MiB) at a time, the same rows in the same order as without; empty: no cap")
	fs.StringSliceVar(&d.corpus, "text", nil, "text files to train on (mlm, nsp, replaced, source); default: Newton's Opticks (in Go's source tree) and Twain's Tom Sawyer (in the klauspost/compress module); the last 10% of each is held out for testing")
	fs.StringVar(&d.trainCSV, "train-csv", "", "csv: training rows, text,label (or named columns, --text-column/--label-column; .jsonl: JSON Lines)")
	fs.StringVar(&d.testCSV, "test-csv", "", "csv: test rows, text,label (the training file's labels)")
	fs.StringVar(&d.vocab, "vocab", "", "text: WordPiece vocabulary file (vocab.txt); default: learn one from the training text (written to vocab.txt in the node's folder); fine-tuning needs the pre-training run's")
}

// apply puts the paths, made absolute, into cfg.
func (d dataFlags) apply(cfg *node.Config) error {
	abs := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		return filepath.Abs(p)
	}
	var err error
	if cfg.DataDir, err = abs(d.mnistDir); err != nil {
		return err
	}
	if cfg.DataCache, err = abs(d.cache); err != nil {
		return err
	}
	if cfg.DataMemory, err = parseMemory(d.memory); err != nil {
		return err
	}
	cfg.Corpus = nil
	for _, c := range d.corpus {
		a, err := abs(c)
		if err != nil {
			return err
		}
		cfg.Corpus = append(cfg.Corpus, a)
	}
	if cfg.TrainCSV, err = abs(d.trainCSV); err != nil {
		return err
	}
	if cfg.TestCSV, err = abs(d.testCSV); err != nil {
		return err
	}
	cfg.VocabPath, err = abs(d.vocab)
	return err
}

// dataArgs passes a node config's data paths on to a child node.
func dataArgs(cfg node.Config) []string {
	var args []string
	add := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	add("--data", cfg.DataDir)
	args = append(args, "--data-cache="+cfg.DataCache) // even "": no cache
	if cfg.DataMemory > 0 {
		args = append(args, "--data-memory", strconv.FormatInt(cfg.DataMemory, 10))
	}
	for _, c := range cfg.Corpus {
		add("--text", c)
	}
	add("--train-csv", cfg.TrainCSV)
	add("--test-csv", cfg.TestCSV)
	add("--vocab", cfg.VocabPath)
	return args
}

// parseMemory reads --data-memory: a size with a unit, SI or IEC (64MB,
// 1GiB; go-humanize), or a plain number of bytes; "" and 0 are no cap.
func parseMemory(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("--data-memory %q: want a size such as 64MB or 1GiB (%v)", s, err)
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("--data-memory %q: want a size below 8 EiB", s)
	}
	return int64(n), nil
}

// defaultDataCache is swarmtrain/datasets in the user's cache folder
// ($XDG_CACHE_HOME or ~/.cache on Linux), or "" (no cache) without one.
func defaultDataCache() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "swarmtrain", "datasets")
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// initFrom names the checkpoint file at path in the run (its SHA-256).
// A run config file that names one already must name this one.
func initFrom(rc *node.RunConfig, path string) error {
	if path == "" {
		return nil
	}
	sum, err := node.FileSHA256(path)
	if err != nil {
		return fmt.Errorf("--init-from: %w", err)
	}
	if named := rc.Model.InitFrom; named != "" && named != sum {
		return fmt.Errorf("--init-from %s has SHA-256 %s, the run config names %s (model.init_from)", path, sum, named)
	}
	rc.Model.InitFrom = sum
	return nil
}

// prepareText is node.PrepareText, which sets the text run's hashes from
// its files; a run config file that names them already must name these.
// A node given no data files whose default corpus is not here (no Go
// tree, no module cache) fetches the files the run names from its peers:
// it is left with VocabPath empty (node.ensureText).
func prepareText(cfg *node.Config, learnedPath string, noFiles bool) error {
	named := cfg.Run.Data
	if err := node.PrepareText(cfg, learnedPath); err != nil {
		if noFiles && named.Files != "" && named.Vocab != "" {
			cfg.Run.Data, cfg.VocabPath, cfg.Corpus = named, "", nil
			return nil
		}
		return err
	}
	got := cfg.Run.Data
	switch {
	case named.Files != "" && named.Files != got.Files:
		return fmt.Errorf("the text files here (--text, --train-csv, --test-csv) have SHA-256 %s, the run config names %s (data.files): every peer trains on the same files", got.Files, named.Files)
	case named.Vocab != "" && named.Vocab != got.Vocab:
		return fmt.Errorf("the vocabulary %s has SHA-256 %s, the run config names %s (data.vocab): give the run's vocabulary with --vocab", cfg.VocabPath, got.Vocab, named.Vocab)
	}
	return nil
}

// parseShard reads "K/N" (0-based K).
func parseShard(s string) (k, n int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(s, "/")
	if ok {
		k, err = strconv.Atoi(a)
		if err == nil {
			n, err = strconv.Atoi(b)
		}
	}
	if !ok || err != nil || n < 1 || k < 0 || k >= n {
		return 0, 0, fmt.Errorf("--shard %q: want K/N with 0 <= K < N, e.g. 0/4", s)
	}
	return k, n, nil
}

func nodeCmd() *cobra.Command {
	cfg := node.DefaultConfig()
	var (
		runs           *runFlags
		shard, logFile string
		port           int
		asJSON, quiet  bool
		data           dataFlags
		key            keyFlags
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run one peer: start a swarm, or join one with --join",
		Long: `Run one peer of a swarm.

Without --join it starts a new swarm and prints the command others use to join.
With --join it connects to a peer, checks that both are on the same run (same
model, data and hyperparameters; otherwise both sides print why they refused),
downloads the current state if the swarm is already training, and trains along.
--join may be repeated; addresses that do not answer are retried for
--join-timeout. Nodes with the same key find each other on the local network by
mDNS with no --join, and a node restarted on its --dir rejoins through the peers
it saved there (peers.json).
Stop it with Ctrl-C: it tells the swarm it is leaving and exits.

Every swarm has a secret key unless it is started with --open. The first node
creates one (saved as swarm.key in its --dir, reused on restart) and prints it
in the join line: paste that whole line on the other machines. Without the key
no connection to the swarm completes. libp2p's private networks do not work
over QUIC, so a swarm with a key runs over TCP only. --open runs a public swarm
instead: no key, QUIC and TCP, and anyone who can reach a node may join.`,
		Example: `  swarmtrain node --dir ./n1 --port 4001
  swarmtrain node --dir ./n2 --join /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW... --key 3f9a...
  swarmtrain node --dir ./n3 --join /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW... --key-file swarm.key
  swarmtrain node --dir ./pub --open`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if port < 0 || port > 65535 {
				return fmt.Errorf("--port %d: want 0..65535 (0 picks a free one)", port)
			}
			if cfg.Shard, cfg.Shards, err = parseShard(shard); err != nil {
				return err
			}
			if cfg.SwarmKey, err = key.resolve(cfg.Dir, len(cfg.Join) > 0); err != nil {
				return err
			}
			cfg.Open = key.open
			var resumed string
			if cfg.Run, resumed, err = runs.resumeIn(cfg.Dir); err != nil {
				return err
			}
			if resumed != "" && !quiet {
				fmt.Fprintf(os.Stderr, "resuming %s\n", resumed)
			}
			if resumed == "" && cfg.Open && !cmd.Flags().Changed("aggregate") && (cfg.Run.Averaging.Aggregate == "" || cfg.Run.Averaging.Aggregate == "mean") {
				// Strangers may join an open run: its owners clip every
				// copy unless the run says otherwise (--aggregate mean).
				cfg.Run.Averaging.Aggregate = "clip"
			}
			if err := initFrom(&cfg.Run, cfg.InitPath); err != nil {
				return err
			}
			if err := data.apply(&cfg); err != nil {
				return err
			}
			if err := node.PrepareImages(&cfg); err != nil {
				return err
			}
			if cfg.Run.IsText() {
				if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
					return err
				}
				noFiles := len(data.corpus) == 0 && data.trainCSV == "" && data.testCSV == "" && data.vocab == ""
				if err := prepareText(&cfg, filepath.Join(cfg.Dir, "vocab.txt"), noFiles); err != nil {
					return err
				}
			}
			if !cmd.Flags().Changed("listen") {
				cfg.Listen = []string{fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", port), fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", port)}
			}
			var logw io.Writer = os.Stderr
			if logFile != "" {
				f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				logw = f
			} else if quiet {
				logw = io.Discard
			}
			cfg.Log, cfg.LogLevel, cfg.LogJSON = logw, logOpts.Level(), logOpts.JSON()
			return runNode(cmd.Context(), cfg, asJSON, quiet)
		},
	}
	fs := cmd.Flags()
	runs = addRunFlags(fs, &cfg.Run)
	fs.StringVar(&cfg.Dir, "dir", "swarmtrain-node", "node directory: identity key, node.json, result.json (one per node)")
	fs.IntVar(&port, "port", 0, "TCP and UDP (QUIC) port to listen on; 0 picks a free one (with a swarm key: TCP only)")
	fs.StringSliceVar(&cfg.Listen, "listen", cfg.Listen, "multiaddrs to listen on (overrides --port)")
	fs.StringSliceVar(&cfg.Join, "join", nil, "multiaddr of a peer to join, /ip4/…/tcp/…/p2p/12D3…; repeatable (joining through any one is enough); needs the swarm's --key (or --open)")
	fs.DurationVar(&cfg.JoinTimeout, "join-timeout", cfg.JoinTimeout, "keep retrying the --join addresses (backoff 1 s to 30 s) this long before giving up")
	fs.BoolVar(&cfg.NoMDNS, "no-mdns", false, "do not announce this node or look for the swarm's peers on the local network (mDNS)")
	fs.StringSliceVar(&cfg.Announce, "announce", nil, "multiaddrs to tell peers instead of the ones found, e.g. /ip4/203.0.113.7/tcp/4001 for a port forwarded on your router; repeatable")
	key.bind(fs)
	fs.StringVar(&cfg.HTTP, "http", "", "serve /status and /metrics on this address, e.g. 127.0.0.1:9090")
	data.bind(fs)
	fs.BoolVar(&cfg.NoServeData, "no-serve-data", false, "do not serve the run's dataset to peers that lack it (they fetch MNIST from the swarm when they have no copy)")
	fs.StringVar(&shard, "shard", "", "train on shard K of N of the training set (K/N, 0-based); default: whole set in a per-peer order")
	fs.BoolVar(&cfg.Client, "client", false, "run as a client: own no part of the all-reduce, still contribute (a node turns client by itself when peers cannot dial it back, e.g. behind NAT)")
	fs.IntVar(&cfg.MinPeers, "min-peers", cfg.MinPeers, "wait until this many peers (self included) are live before the first step")
	fs.DurationVar(&cfg.Linger, "linger", 0, "after the last step, keep serving state and /status this long")
	fs.StringVar(&cfg.InitPath, "init-from", "", "start from this checkpoint's weights (transfer learning; fresh optimizer, step 0); every peer needs the same file, its SHA-256 is part of the run (run config: model.init_from)")
	fs.IntVar(&cfg.CheckpointEvery, "checkpoint-every", 0, "also write <dir>/checkpoint.safetensors every N steps (0: only at the end and on Ctrl-C/SIGTERM, which always write one); a node resumes from the checkpoint it finds in --dir")
	fs.StringVar(&logFile, "log-file", "", "append the log here instead of stderr")
	fs.BoolVar(&asJSON, "json", false, "print the final result as JSON on stdout")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines (and no log unless --log-file)")
	return cmd
}

func runNode(ctx context.Context, cfg node.Config, asJSON, quiet bool) error {
	ctx, stop := leaveOnSignal(ctx, os.Stderr, "leaving the swarm, then saving the checkpoint")
	defer stop()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return err
	}
	n, err := node.NewContext(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.Open {
		// Always, even with --quiet: whoever runs an open swarm should
		// see what it means each time.
		fmt.Fprint(os.Stderr, openTradeOffs)
	}
	if !quiet {
		addrs := n.Addrs()
		fmt.Fprintf(os.Stderr, "swarmtrain node %s\n  run %s  device: %s\n", n.ID(), n.RunID(), n.Device().Summary())
		if len(addrs) > 0 {
			fmt.Fprintf(os.Stderr, "  join with: %s\n", joinLine(addrs[0], cfg))
			for _, a := range addrs[1:] {
				fmt.Fprintf(os.Stderr, "         or: --join %s\n", a)
			}
		}
		if term.IsTerminal(int(os.Stderr.Fd())) {
			// A progress line is for a person; a log file or a
			// journal gets the log's records instead.
			go printProgress(ctx, n)
		}
	}
	res, err := n.Run(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	if !quiet {
		fmt.Fprintf(os.Stderr, "done: step %d, test accuracy %.2f%%, state hash %s\n", res.Step, 100*res.Accuracy, res.Hash)
		fmt.Fprintf(os.Stderr, "checkpoint: %s (swarmtrain export --from %s; swarmtrain node --dir %s resumes)\n",
			filepath.Join(cfg.Dir, node.CheckpointFile), cfg.Dir, cfg.Dir)
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	return nil
}

func printProgress(ctx context.Context, n *node.Node) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var e etaClock
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s := n.Status()
			if s.Phase == "finished" {
				return
			}
			fmt.Fprintf(os.Stderr, "%-17s step %d/%d  loss %.3f  peers %d  %.0f samples/s  in %s  out %s  ETA %s\n",
				s.Phase, s.Step, s.Steps, s.Loss, s.LivePeers, s.SamplesPerSec, humanBytes(s.BytesIn), humanBytes(s.BytesOut), e.observe(now, int(s.Step), int(s.Steps)))
		}
	}
}

func humanBytes(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
