package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/gossip/averaging"
	"github.com/swarmtrain/swarmtrain/gossip/gossiptest"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/trainer"
	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure this machine: all-reduce over libp2p, gradient codecs, training steps",
	}
	cfg := node.AllReduceBench{Hosts: 4, Rounds: 5, Codec: "fp32", Lossless: "none", Aggregate: "mean"}
	var mib float64
	var asJSON bool
	var procs int
	var join string
	var listen []string
	ar := &cobra.Command{
		Use:   "allreduce",
		Short: "All-reduce bus bandwidth among loopback hosts, or among processes on your machines (--procs, --join)",
		Long: `Starts N libp2p hosts on 127.0.0.1 in this process, all-reduces a vector among
them, and reports the bus bandwidth 2(N-1)/N*S/t next to the throughput of one raw
stream between two of the same hosts, and the floor: the same bytes sent all-to-all
over raw streams. Loopback is CPU-bound (encryption, copies), so this measures the
CPU cost of averaging, not a network.

To measure your network, run one process per machine: the first with --procs N
(and --listen where the others can reach it) prints its join addresses; each of the
other N-1 runs --join ADDR. The first process's flags set the vector, codec and
rounds; it prints every member's time per round.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if join != "" {
				if procs != 0 {
					return fmt.Errorf("--join %s with --procs %d: the leader sets the members; give --procs to the first process only", join, procs)
				}
				m, err := node.BenchJoin(cmd.Context(), join, listen)
				if err != nil {
					return err
				}
				return printBenchMembers(cmd, []node.BenchMember{m}, asJSON)
			}
			if !(mib > 0 && mib <= 256) {
				return fmt.Errorf("--mib %v: want (0, 256]", mib)
			}
			if procs != 0 {
				if procs < 2 || procs > 64 {
					return fmt.Errorf("--procs %d: want 2..64 processes, this one included", procs)
				}
				cfg.Hosts = procs
			}
			if err := checkBenchFlags(cfg); err != nil {
				return err
			}
			cfg.Floats = int(mib * (1 << 20) / 4)
			if procs != 0 {
				ms, err := node.BenchLead(cmd.Context(), cfg, listen, func(addrs []string) {
					fmt.Fprintf(cmd.ErrOrStderr(), "waiting for %d processes; on each other machine run\n", procs-1)
					for _, a := range addrs {
						fmt.Fprintf(cmd.ErrOrStderr(), "  swarmtrain bench allreduce --join %s\n", a)
					}
				})
				if err != nil {
					return err
				}
				if !asJSON {
					fmt.Printf("all-reduce of %.1f MiB among %d processes (%s/%s, %s), %d rounds\n", mib, procs, cfg.Codec, cfg.Lossless, cfg.Aggregate, cfg.Rounds)
				}
				return printBenchMembers(cmd, ms, asJSON)
			}
			res, err := node.BenchAllReduce(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			fmt.Printf("all-reduce of %.1f MiB among %d hosts (%s/%s, %s), %d rounds\n", mib, cfg.Hosts, cfg.Codec, cfg.Lossless, cfg.Aggregate, cfg.Rounds)
			fmt.Printf("  time per round     %8.1f ms\n", 1000*res.SecondsPerRound)
			if res.CPUSecondsPerRound > 0 {
				fmt.Printf("  CPU per round      %8.1f ms     (all hosts, user + system)\n", 1000*res.CPUSecondsPerRound)
			}
			fmt.Printf("  floor              %8.1f ms     (%.0f ms CPU; the same bytes all-to-all over raw streams: %.2f x)\n",
				1000*res.FloorSeconds, 1000*res.FloorCPUSeconds, res.SecondsPerRound/res.FloorSeconds)
			fmt.Printf("  bus bandwidth      %8.1f MiB/s   (%.3f x raw stream)\n", res.BusBandwidth/(1<<20), res.BusBandwidth/res.RawStream)
			fmt.Printf("  aggregate payload  %8.1f MiB/s   (%.3f x raw stream)\n", res.Aggregate/(1<<20), res.Aggregate/res.RawStream)
			fmt.Printf("  raw single stream  %8.1f MiB/s\n", res.RawStream/(1<<20))
			return nil
		},
	}
	fs := ar.Flags()
	fs.IntVar(&cfg.Hosts, "hosts", cfg.Hosts, "members of the all-reduce")
	fs.Float64Var(&mib, "mib", 16, "vector size in MiB of float32")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "timed rounds (after one warm-up round)")
	fs.StringVar(&cfg.Codec, "codec", cfg.Codec, "gradient codec, as for swarmtrain node --codec")
	fs.StringVar(&cfg.Lossless, "lossless", cfg.Lossless, "none, zstd or s2")
	fs.StringVar(&cfg.Aggregate, "aggregate", cfg.Aggregate, "the owners' rule, as for swarmtrain node --aggregate: mean, clip or trimmed")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.IntVar(&procs, "procs", 0, "members as separate processes, this one included: wait for the others to --join (0: all in this process)")
	fs.StringVar(&join, "join", "", "join the bench a --procs process leads at this address, and run its plan")
	fs.StringSliceVar(&listen, "listen", []string{"/ip4/0.0.0.0/tcp/0"}, "listen addresses with --procs or --join (multiaddrs)")
	cmd.AddCommand(ar, benchCompressCmd(), benchTrainCmd())
	return cmd
}

// printBenchMembers prints a multi-process bench's figures per member.
func printBenchMembers(cmd *cobra.Command, ms []node.BenchMember, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(cmd.OutOrStdout()).Encode(ms)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "  %-14s %12s %14s %12s\n", "member", "ms/round", "busbw MiB/s", "CPU ms")
	var failed []string
	for _, m := range ms {
		name := m.Peer
		if len(name) > 14 {
			name = "…" + name[len(name)-13:]
		}
		if m.Error != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "  %-14s failed: %s\n", name, m.Error)
			failed = append(failed, name)
			continue
		}
		fmt.Fprintf(cmd.OutOrStdout(), "  %-14s %12.1f %14.1f %12.1f\n", name, 1000*m.SecondsPerRound, m.BusBandwidth/(1<<20), 1000*m.CPUSeconds)
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: %d of %d members failed", len(failed), len(ms))
	}
	return nil
}

func benchCompressCmd() *cobra.Command {
	var (
		millions float64
		reps     int
		asJSON   bool
		lossless string
		rank     int
	)
	cmd := &cobra.Command{
		Use:   "compress",
		Short: "Every codec on normally distributed floats: ratio, encode/decode GB/s on one core, relative L2 error",
		Long: `Every codec on normally distributed floats: ratio, encode/decode GB/s on one core,
relative L2 error. PowerSGD (--mode powersgd) is listed too: the floats as one
matrix of 1024 columns, rank --rank, one member; its GB/s is a whole step (P = MQ,
orthonormalise, Q = M^T P, the product), its error after --reps power iterations
on the same matrix. Gaussian noise has no low-rank structure, so its error here is
the worst case; real gradients are far closer to low rank.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !(millions > 0 && millions <= 64) {
				return fmt.Errorf("--millions %v: want (0, 64]", millions)
			}
			l, err := compression.LosslessByName(lossless)
			if err != nil {
				return fmt.Errorf("--lossless %q: want none, zstd or s2", lossless)
			}
			if rank != 0 {
				if err := checkRank(rank, int(millions*1e6)); err != nil {
					return err
				}
			}
			src := make([]float32, int(millions*1e6))
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range src {
				src[i] = float32(rng.NormFloat64())
			}
			var out []compression.Measurement
			for _, c := range compression.Codecs() {
				m, err := compression.Measure(c, l, src, reps)
				if err != nil {
					return fmt.Errorf("%s: %w", c.Name(), err)
				}
				out = append(out, m)
			}
			if rank > 0 {
				m, err := measurePowerSGD(cmd.Context(), src, rank, reps)
				if err != nil {
					return err
				}
				out = append(out, m)
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
			}
			fmt.Printf("%.0fM normal floats, lossless stage %s, best of %d, one core\n", millions, lossless, reps)
			fmt.Printf("  %-6s %7s %10s %10s %12s\n", "codec", "ratio", "enc GB/s", "dec GB/s", "rel L2 err")
			for _, m := range out {
				if m.DecodeGB == 0 { // PowerSGD: one figure for the whole step
					fmt.Printf("  %-6s %7.2f %10.2f %10s %12.2e\n", m.Codec, m.Ratio, m.EncodeGB, "(step)", m.RelL2)
					continue
				}
				fmt.Printf("  %-6s %7.2f %10.2f %10.2f %12.2e\n", m.Codec, m.Ratio, m.EncodeGB, m.DecodeGB, m.RelL2)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.Float64Var(&millions, "millions", 16, "values to compress, in millions")
	fs.IntVar(&reps, "reps", 3, "runs per codec; the best counts")
	fs.StringVar(&lossless, "lossless", "none", "lossless stage after the codec: none, zstd or s2")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.IntVar(&rank, "rank", 4, "PowerSGD's rank (0: leave PowerSGD out)")
	return cmd
}

// powerCols is the width of the matrix PowerSGD is measured on.
const powerCols = 1024

// checkRank refuses a PowerSGD rank that n values cannot be measured at.
func checkRank(rank, n int) error {
	if rank < 1 || rank >= powerCols {
		return fmt.Errorf("--rank %d: want 0 (none) or 1..%d", rank, powerCols-1)
	}
	if rows := n / powerCols; rows <= rank {
		return fmt.Errorf("--rank %d: %d values make %d rows of %d; the rank needs more rows (raise --millions)", rank, n, rows, powerCols)
	}
	return nil
}

// measurePowerSGD runs PowerSGD steps on src as one matrix of powerCols
// columns, alone in its round (over an in-memory network): the ratio is
// the vector's values over the values a step all-reduces, the speed the
// best step's, the error that of the last step's product (each step is
// one more power iteration on the same matrix).
func measurePowerSGD(ctx context.Context, src []float32, rank, reps int) (compression.Measurement, error) {
	rows := len(src) / powerCols
	m := compression.Measurement{Codec: fmt.Sprintf("psgd%d", rank), Lossless: "none", Values: rows * powerCols}
	if err := checkRank(rank, len(src)); err != nil {
		return m, err
	}
	src = src[:rows*powerCols]
	ps, err := averaging.NewPowerSGD(averaging.PowerSGDConfig{Rank: rank, Shapes: [][]int{{rows, powerCols}}, MinMatrix: 1, Seed: 1})
	if err != nil {
		return m, err
	}
	_, ts, ids := gossiptest.MemPeers(1)
	av := allreduce.NewAverager(ts[0], allreduce.AveragerConfig{})
	out := make([]float32, len(src))
	var best time.Duration
	for i := range max(reps, 1) {
		r := allreduce.Round{Step: uint64(i), Members: ids, Samples: []int{1}}
		r.ID = allreduce.RoundID("bench", r.Step, 0, ids, r.Samples, nil)
		ps.Reset() // each step approximates src itself, not src plus what the last one left
		start := time.Now()
		if err := ps.AllReduce(ctx, av, r, src, out); err != nil {
			return m, err
		}
		if d := time.Since(start); i == 0 || d < best {
			best = d
		}
	}
	var num, den float64
	for i, x := range src {
		d := float64(out[i]) - float64(x)
		num += d * d
		den += float64(x) * float64(x)
	}
	m.Ratio = float64(len(src)) / float64(ps.WireValues())
	m.EncodeGB = float64(4*len(src)) / best.Seconds() / 1e9
	m.RelL2 = math.Sqrt(num / den)
	return m, nil
}

func benchTrainCmd() *cobra.Command {
	var (
		steps  int
		only   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Training-step speed of the shipped models (MLP, CNN, BERT): ms/step, samples/s, GFLOP/s",
		Long: `Times the training step of each shipped configuration as a node runs it
(forward, backward, Adam on the flat vectors), on synthetic rows of the real
shapes. GFLOP/s counts 3x the forward pass's multiply-adds x2 per step, and
"peak" is its share of the core's measured FMA peak times GOMAXPROCS. The
matrix kernels are trainer/kernels' assembly unless the binary was built with
-tags openblas (or -tags gonumblas, gonum's pure Go).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if steps < 1 || steps > 100000 {
				return fmt.Errorf("--steps %d: want 1..100000", steps)
			}
			var out []trainer.StepTiming
			for _, b := range trainer.StepBenches() {
				if only != "" && !strings.Contains(b.Name, only) {
					continue
				}
				if err := b.Model.Validate(); err != nil && trainer.DefaultPrecision != trainer.PrecisionFP32 && only == "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "skipping %s: %v\n", b.Name, err)
					continue
				}
				r, err := b.Run(steps)
				if err != nil {
					return err
				}
				out = append(out, r)
			}
			if len(out) == 0 {
				return fmt.Errorf("--only %q matches no configuration", only)
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
			}
			peak, unit := kernels.Peak(200 * time.Millisecond)
			fmt.Printf("training step, %d timed steps each, BLAS: %s, GOMAXPROCS %d, FMA peak %.0f GFLOP/s per core (%s)\n",
				steps, trainer.BLAS, runtime.GOMAXPROCS(0), peak, cmp.Or(unit, "not measured"))
			fmt.Printf("  %-28s %-13s %9s %9s %8s %10s %9s %6s\n", "model", "engine", "params", "ms/step", "best ms", "samples/s", "GFLOP/s", "peak")
			for _, r := range out {
				share := "-"
				if peak > 0 {
					share = fmt.Sprintf("%.0f%%", 100*r.GFLOPs/(peak*float64(runtime.GOMAXPROCS(0))))
				}
				fmt.Printf("  %-28s %-13s %9d %9.1f %8.1f %10.0f %9.2f %6s\n", r.Name, r.Engine+"/"+r.Precision, r.Params, r.MsPerStep, r.BestMs, r.Samples, r.GFLOPs, share)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&steps, "steps", 20, "timed steps per model (after one warm-up step)")
	fs.StringVar(&only, "only", "", "run only configurations whose name contains this (mlp, cnn, bert)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// checkBenchFlags refuses bench allreduce's bad flags by name before any
// host starts.
func checkBenchFlags(cfg node.AllReduceBench) error {
	if cfg.Hosts < 2 || cfg.Hosts > 64 {
		return fmt.Errorf("--hosts %d: want 2..64", cfg.Hosts)
	}
	if cfg.Rounds < 1 {
		return fmt.Errorf("--rounds %d: want 1 or more", cfg.Rounds)
	}
	if _, err := compression.ParseCodec(cfg.Codec); err != nil {
		return fmt.Errorf("--codec %q: %w; want fp32, fp16, bf16, int8, int4, int8:BLOCK, int4:BLOCK (16..65536) or topk:FRACTION[:fp16]", cfg.Codec, err)
	}
	if _, err := compression.LosslessByName(cfg.Lossless); err != nil {
		return fmt.Errorf("--lossless %q: want none, zstd or s2", cfg.Lossless)
	}
	if !slices.Contains([]string{"mean", "clip", "trimmed"}, cfg.Aggregate) {
		return fmt.Errorf("--aggregate %q: want mean, clip or trimmed", cfg.Aggregate)
	}
	return nil
}
