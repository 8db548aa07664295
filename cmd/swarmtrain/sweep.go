package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// A sweep dimension: a list of values (grid or random choice) or, for
// random search only, a range sampled linearly, log-uniformly or as an
// integer.
type sweepParam struct {
	name   string
	values []string // a list
	dist   string   // "lin", "log" or "int" for a range
	lo, hi float64
}

// sweepNames are the run-config fields a sweep may vary.
var sweepNames = []string{"lr", "batch", "target-batch", "hidden", "optimizer", "momentum", "weight-decay", "warmup", "steps", "schedule", "clip-norm", "codec", "seed", "dropout", "train-rows", "width", "heads", "layers"}

// parseSweepParam reads "name=v1,v2,…" or "name=log:LO:HI" (also lin:,
// int:). hidden lists its layers with 'x': hidden=128,256x128.
func parseSweepParam(s string) (sweepParam, error) {
	name, spec, ok := strings.Cut(s, "=")
	if !ok || spec == "" {
		return sweepParam{}, fmt.Errorf("--param %q: want name=v1,v2,… or name=log:LO:HI", s)
	}
	if !slices.Contains(sweepNames, name) {
		return sweepParam{}, fmt.Errorf("--param %q: %q is not a run setting a sweep can vary (%s)", s, name, strings.Join(sweepNames, ", "))
	}
	p := sweepParam{name: name}
	if dist, rng, ok := strings.Cut(spec, ":"); ok && (dist == "lin" || dist == "log" || dist == "int") && name != "codec" {
		a, b, ok := strings.Cut(rng, ":")
		lo, err1 := strconv.ParseFloat(a, 64)
		hi, err2 := strconv.ParseFloat(b, 64)
		if !ok || err1 != nil || err2 != nil || !(lo < hi) || (dist == "log" && lo <= 0) || math.IsInf(hi, 0) {
			return sweepParam{}, fmt.Errorf("--param %q: want %s:LO:HI with LO < HI (and LO > 0 for log)", s, dist)
		}
		p.dist, p.lo, p.hi = dist, lo, hi
		return p, nil
	}
	p.values = strings.Split(spec, ",")
	for _, v := range p.values {
		if v == "" {
			return sweepParam{}, fmt.Errorf("--param %q: empty value", s)
		}
	}
	return p, nil
}

// trial is one point of the space: name → value, in the order given.
type trial [][2]string

func (t trial) String() string {
	parts := make([]string, len(t))
	for i, kv := range t {
		parts[i] = kv[0] + "=" + kv[1]
	}
	return strings.Join(parts, " ")
}

// gridTrials is the Cartesian product of the lists.
func gridTrials(params []sweepParam) ([]trial, error) {
	out := []trial{{}}
	for _, p := range params {
		if p.dist != "" {
			return nil, fmt.Errorf("--param %s=%s:…: a range needs random search (--random N)", p.name, p.dist)
		}
		var next []trial
		for _, t := range out {
			for _, v := range p.values {
				next = append(next, append(slices.Clone(t), [2]string{p.name, v}))
			}
		}
		out = next
	}
	return out, nil
}

// randomTrials draws n points, reproducibly from seed.
func randomTrials(params []sweepParam, n int, seed uint64) []trial {
	rng := rand.New(rand.NewPCG(seed, 0x7377656570)) // "sweep"
	out := make([]trial, n)
	for i := range out {
		for _, p := range params {
			var v string
			switch p.dist {
			case "":
				v = p.values[rng.IntN(len(p.values))]
			case "lin":
				v = strconv.FormatFloat(p.lo+rng.Float64()*(p.hi-p.lo), 'g', 4, 64)
			case "log":
				v = strconv.FormatFloat(math.Exp(math.Log(p.lo)+rng.Float64()*(math.Log(p.hi)-math.Log(p.lo))), 'g', 4, 64)
			case "int":
				v = strconv.Itoa(int(p.lo) + rng.IntN(int(p.hi)-int(p.lo)+1))
			}
			out[i] = append(out[i], [2]string{p.name, v})
		}
	}
	return out
}

// applyTrial sets the trial's values through the run flags
// (setRunFlags), so a sweep reads every value exactly as demo and node
// do, then validates the run. hidden writes its layers with 'x' in a
// sweep (',' separates values there).
func applyTrial(rc *node.RunConfig, t trial) error {
	into := *rc
	for _, kv := range t {
		name, v := kv[0], kv[1]
		if name == "hidden" {
			v = strings.ReplaceAll(v, "x", ",")
		}
		if err := setRunFlags(&into, []flagArg{{name, v}}); err != nil {
			return fmt.Errorf("%s=%s: %w", name, kv[1], err)
		}
	}
	*rc = into
	return rc.Validate()
}

type trialResult struct {
	Trial    string  `json:"trial"`
	Accuracy float64 `json:"accuracy"`
	TestLoss float64 `json:"test_loss"`
	Seconds  float64 `json:"seconds"`
	Error    string  `json:"error,omitempty"`
}

func sweepCmd() *cobra.Command {
	var (
		base   node.RunConfig
		runs   *runFlags
		params []string
		random int
		seed   uint64
		data   dataFlags
		asJSON bool
		serve  bool
		port   int
		key    keyFlags
	)
	cmd := &cobra.Command{
		Use:   "sweep",
		Short: "Hyperparameter search: grid or random, each trial a local training run, results sorted by test accuracy",
		Long: `Trains one model per point of a declared space on this machine and prints a
table sorted by test accuracy (best first). Every --param is a dimension:
a list (name=v1,v2,…; hidden layers joined by x, e.g. hidden=128,256x128) or,
with --random N, a range: name=log:LO:HI, lin:LO:HI or int:LO:HI. Without
--random the grid of all lists runs. The run flags set everything not swept.
Names: ` + strings.Join(sweepNames, ", ") + `;
values are read as the run flags of the same names read them.

With --serve the trials run on other machines instead: this process prints an
address and a key, every machine that runs "swarmtrain sweep-worker --join ADDR
--key KEY" (as printed) takes
trials one at a time until none is left (a worker that vanishes gives its trial
back), and the table lists which peer trained each.`,
		Example: `  swarmtrain sweep --steps 300 --param lr=1e-3,3e-3 --param hidden=64,256
  swarmtrain sweep --steps 300 --random 8 --param lr=log:1e-4:1e-2 --param optimizer=adam,momentum
  swarmtrain sweep --serve --port 4100 --param lr=1e-3,3e-3,1e-2   # then, on each worker machine:
  swarmtrain sweep-worker --join /ip4/192.0.2.1/tcp/4100/p2p/12D3KooW... --key 3f9a...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cmd.SetContext(ctx)
			if len(params) == 0 {
				return fmt.Errorf("sweep needs at least one --param")
			}
			var space []sweepParam
			for _, s := range params {
				p, err := parseSweepParam(s)
				if err != nil {
					return err
				}
				space = append(space, p)
			}
			var trials []trial
			if random > 0 {
				trials = randomTrials(space, random, seed)
			} else {
				var err error
				if trials, err = gridTrials(space); err != nil {
					return err
				}
			}
			if len(trials) > 1000 {
				return fmt.Errorf("the space has %d trials; narrow it or use --random N", len(trials))
			}
			tmp, err := os.MkdirTemp("", "swarmtrain-sweep-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			// A text run hashes its files and learns its vocabulary once.
			cfg := node.DefaultConfig()
			if cfg.Run, err = runs.run(); err != nil {
				return err
			}
			if err := data.apply(&cfg); err != nil {
				return err
			}
			if err := prepareText(&cfg, filepath.Join(tmp, "vocab.txt"), false); err != nil {
				return err
			}
			// Every trial's run, checked before any trains: a typo should
			// not surface after an hour of trials.
			runs := make([]node.Trial, len(trials))
			for i, t := range trials {
				rc := cfg.Run
				if err := applyTrial(&rc, t); err != nil {
					return fmt.Errorf("trial %s: %w", t, err)
				}
				runs[i] = node.Trial{Label: t.String(), Run: rc}
			}
			var results []trialResult
			if serve {
				if cfg.SwarmKey, err = key.resolve(tmp, false); err != nil {
					return err
				}
				results, err = serveSweep(cmd, cfg, runs, tmp, port)
			} else {
				results, err = runSweep(cmd, cfg, runs, tmp, asJSON)
			}
			if err != nil {
				return err
			}
			return printSweep(cmd.OutOrStdout(), results, asJSON)
		},
	}
	fs := cmd.Flags()
	runs = addRunFlags(fs, &base)
	fs.StringArrayVar(&params, "param", nil, "a dimension of the space: name=v1,v2,… or name=log:LO:HI (lin:, int:); repeatable")
	fs.IntVar(&random, "random", 0, "random search: this many trials drawn from the space (0: the full grid)")
	fs.Uint64Var(&seed, "sweep-seed", 1, "seed of the random search")
	data.bind(fs)
	fs.BoolVar(&asJSON, "json", false, "print the results as JSON")
	fs.BoolVar(&serve, "serve", false, "run no trial here: hand the trials to worker peers (swarmtrain sweep-worker --join …) and collect their results")
	fs.IntVar(&port, "port", 0, "with --serve: TCP port to listen on (0: any free port)")
	key.bind(fs) // with --serve: workers need the key (a new one unless given) or --open
	return cmd
}

// serveSweep coordinates: it hands the trials to worker peers and waits
// for every result.
func serveSweep(cmd *cobra.Command, base node.Config, ts []node.Trial, tmp string, port int) ([]trialResult, error) {
	vocab, err := node.VocabBytes(base)
	if err != nil {
		return nil, err
	}
	if base.Run.Data.Dataset == node.DatasetCSV {
		return nil, errors.New("--serve cannot send CSV files to workers: run a csv sweep without --serve")
	}
	for i := range ts {
		ts[i].Vocab = vocab
	}
	if err := node.CheckTrialSize(ts[0]); err != nil {
		return nil, err
	}
	pc := p2p.DefaultConfig()
	pc.Dir = tmp
	pc.ListenAddrs = []string{fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", port)}
	pc.PSK = base.SwarmKey // only workers holding it can connect
	h, err := p2p.New(pc)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	q := node.NewSweepQueue(ts)
	errw := cmd.ErrOrStderr()
	drain := node.ServeSweep(cmd.Context(), h, q, func(msg string, kv ...any) { fmt.Fprintln(errw, append([]any{"sweep:", msg}, kv...)...) })
	join := "--open --join " + h.JoinAddrs()[0]
	if base.SwarmKey != nil {
		join = "--join " + h.JoinAddrs()[0] + " --key " + p2p.FormatSwarmKey(base.SwarmKey)
	}
	fmt.Fprintf(errw, "sweep: %d trials; workers join with:\n  swarmtrain sweep-worker %s\n", len(ts), join)
	var stopped error
	if err := q.Wait(cmd.Context()); err != nil {
		stopped = fmt.Errorf("sweep stopped with %d of %d trials left: %w", q.Left(), len(ts), err)
		fmt.Fprintln(errw, "sweep: stopped; the results so far:")
	} else {
		drain(5 * time.Second) // tell the waiting workers they are done
	}
	var out []trialResult
	for _, r := range q.Results() {
		out = append(out, trialResult{Trial: r.Label + "  @" + shortPeer(r.Worker), Accuracy: r.Accuracy, TestLoss: r.TestLoss, Seconds: r.Seconds, Error: r.Error})
	}
	if stopped != nil {
		printSweep(cmd.OutOrStdout(), out, false)
	}
	return out, stopped
}

func sweepWorkerCmd() *cobra.Command {
	var (
		join string
		data dataFlags
		key  keyFlags
	)
	cfg := node.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "sweep-worker",
		Short: "Train the trials a sweep coordinator (swarmtrain sweep --serve) hands out, until it has none left",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if join == "" {
				return errors.New("sweep-worker needs --join, the address sweep --serve printed")
			}
			if err := data.apply(&cfg); err != nil {
				return err
			}
			if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
				return err
			}
			psk, err := key.resolve(cfg.Dir, true)
			if err != nil {
				return err
			}
			pc := p2p.DefaultConfig()
			pc.Dir = cfg.Dir
			pc.PSK = psk
			pc.ListenAddrs = nil // dial-only: the coordinator never dials us
			h, err := p2p.New(pc)
			if err != nil {
				return err
			}
			defer h.Close()
			ran, err := node.SweepWorker(ctx, h, join, cfg)
			fmt.Fprintf(cmd.ErrOrStderr(), "sweep-worker: %d trials trained\n", ran)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&join, "join", "", "the coordinator's multiaddr, as sweep --serve prints it")
	fs.StringVar(&cfg.Dir, "dir", "swarmtrain-sweep-worker", "folder for this worker's identity and trial folders")
	data.bind(fs)
	key.bind(fs)
	return cmd
}

// runSweep trains the trials one after the other, each as a one-node
// swarm in this process, in folders under tmp; base holds the data paths.
func runSweep(cmd *cobra.Command, base node.Config, trials []node.Trial, tmp string, quiet bool) ([]trialResult, error) {
	var out []trialResult
	for i, t := range trials {
		cfg := base
		cfg.Run = t.Run
		cfg.Dir = filepath.Join(tmp, fmt.Sprintf("trial-%d", i))
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		start := time.Now()
		res := trialResult{Trial: t.Label}
		if r, _, err := node.TrainTrial(cmd.Context(), cfg); err != nil {
			res.Error = err.Error()
		} else {
			res.Accuracy, res.TestLoss = r.Accuracy, r.TestLoss
		}
		res.Seconds = time.Since(start).Seconds()
		if !quiet {
			line := fmt.Sprintf("trial %d/%d  %-40s  accuracy %.2f%%  (%.0f s)", i+1, len(trials), t.Label, 100*res.Accuracy, res.Seconds)
			if res.Error != "" {
				line += "  error: " + res.Error
			}
			fmt.Fprintln(cmd.ErrOrStderr(), line)
		}
		out = append(out, res)
		if cmd.Context().Err() != nil {
			break
		}
	}
	return out, nil
}

// printSweep sorts results best first and prints them.
func printSweep(w io.Writer, results []trialResult, asJSON bool) error {
	slices.SortStableFunc(results, func(a, b trialResult) int { return cmp.Compare(b.Accuracy, a.Accuracy) })
	if asJSON {
		return json.NewEncoder(w).Encode(results)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "rank\taccuracy\ttest loss\tseconds\ttrial")
	for i, r := range results {
		acc := fmt.Sprintf("%.2f%%", 100*r.Accuracy)
		if r.Error != "" {
			acc = "failed: " + r.Error
		}
		fmt.Fprintf(tw, "%d\t%s\t%.4f\t%.0f\t%s\n", i+1, acc, r.TestLoss, r.Seconds, r.Trial)
	}
	return tw.Flush()
}
