package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/compression"
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
	ar := &cobra.Command{
		Use:   "allreduce",
		Short: "All-reduce bus bandwidth among loopback hosts, next to one raw stream measured in the same run",
		Long: `Starts N libp2p hosts on 127.0.0.1 in this process, all-reduces a vector among
them, and reports the bus bandwidth 2(N-1)/N*S/t next to the throughput of one raw
stream between two of the same hosts. Loopback is CPU-bound (encryption, copies),
so this measures the CPU cost of averaging, not a network.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !(mib > 0 && mib <= 256) {
				return fmt.Errorf("--mib %v: want (0, 256]", mib)
			}
			if err := checkBenchFlags(cfg); err != nil {
				return err
			}
			cfg.Floats = int(mib * (1 << 20) / 4)
			res, err := node.BenchAllReduce(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			fmt.Printf("all-reduce of %.1f MiB among %d hosts (%s/%s, %s), %d rounds\n", mib, cfg.Hosts, cfg.Codec, cfg.Lossless, cfg.Aggregate, cfg.Rounds)
			fmt.Printf("  time per round     %8.1f ms\n", 1000*res.SecondsPerRound)
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
	cmd.AddCommand(ar, benchCompressCmd(), benchTrainCmd())
	return cmd
}

func benchCompressCmd() *cobra.Command {
	var (
		millions float64
		reps     int
		asJSON   bool
		lossless string
	)
	cmd := &cobra.Command{
		Use:   "compress",
		Short: "Every codec on normally distributed floats: ratio, encode/decode GB/s on one core, relative L2 error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !(millions > 0 && millions <= 64) {
				return fmt.Errorf("--millions %v: want (0, 64]", millions)
			}
			l, err := compression.LosslessByName(lossless)
			if err != nil {
				return fmt.Errorf("--lossless %q: want none, zstd or s2", lossless)
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
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
			}
			fmt.Printf("%.0fM normal floats, lossless stage %s, best of %d, one core\n", millions, lossless, reps)
			fmt.Printf("  %-6s %7s %10s %10s %12s\n", "codec", "ratio", "enc GB/s", "dec GB/s", "rel L2 err")
			for _, m := range out {
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
	return cmd
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
			fmt.Printf("  %-28s %-8s %9s %9s %8s %10s %9s %6s\n", "model", "engine", "params", "ms/step", "best ms", "samples/s", "GFLOP/s", "peak")
			for _, r := range out {
				share := "-"
				if peak > 0 {
					share = fmt.Sprintf("%.0f%%", 100*r.GFLOPs/(peak*float64(runtime.GOMAXPROCS(0))))
				}
				fmt.Printf("  %-28s %-8s %9d %9.1f %8.1f %10.0f %9.2f %6s\n", r.Name, r.Engine, r.Params, r.MsPerStep, r.BestMs, r.Samples, r.GFLOPs, share)
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
