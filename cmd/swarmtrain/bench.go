package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/node"
)

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure this machine: all-reduce over libp2p",
	}
	cfg := node.AllReduceBench{Hosts: 4, Rounds: 5, Codec: "fp32", Lossless: "none"}
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
			cfg.Floats = int(mib * (1 << 20) / 4)
			res, err := node.BenchAllReduce(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(res)
			}
			fmt.Printf("all-reduce of %.1f MiB among %d hosts (%s/%s), %d rounds\n", mib, cfg.Hosts, cfg.Codec, cfg.Lossless, cfg.Rounds)
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
	fs.StringVar(&cfg.Codec, "codec", cfg.Codec, "fp32 or fp16")
	fs.StringVar(&cfg.Lossless, "lossless", cfg.Lossless, "none or zstd")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(ar)
	return cmd
}
