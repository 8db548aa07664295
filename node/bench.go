package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// AllReduceBench describes an all-reduce measurement among libp2p hosts
// on loopback, all in this process.
type AllReduceBench struct {
	Hosts    int    // members of every round
	Floats   int    // vector length; 4 Mi floats = 16 MiB
	Rounds   int    // timed rounds (one untimed warm-up round runs first)
	Codec    string // fp32 or fp16
	Lossless string // none, zstd or s2
	// Aggregate is the owners' rule: mean (or ""), clip or trimmed.
	Aggregate string
}

// AllReduceBenchResult holds the figures; rates are bytes per second.
type AllReduceBenchResult struct {
	SecondsPerRound float64 `json:"seconds_per_round"`
	// BusBandwidth is 2(N−1)/N·S/t, the per-member rate that an ideal
	// ring all-reduce of S bytes would need to finish in t.
	BusBandwidth float64 `json:"bus_bandwidth"`
	// Aggregate is the payload all hosts moved per second (N·BusBandwidth):
	// on one machine every host shares the same cores, so this is the
	// figure to hold against RawStream.
	Aggregate float64 `json:"aggregate"`
	// RawStream is one stream's throughput between two of the same hosts,
	// measured in the same run.
	RawStream float64 `json:"raw_stream"`
	// CPUSecondsPerRound is the CPU time (user and system, all threads)
	// this process spent per timed round: on a machine shared with other
	// jobs it moves far less than the wall time, and on loopback it is
	// the cost being measured. 0 where the OS does not say.
	CPUSecondsPerRound float64 `json:"cpu_seconds_per_round"`
	// FloorSeconds is the all-reduce's floor on this transport: every
	// host sending 2·S/N bytes (S encoded with the codec) to every other
	// at once over raw streams,
	// the bytes and pattern of a round without any averaging (mean of
	// three, after the rounds); FloorCPUSeconds its CPU time.
	FloorSeconds    float64 `json:"floor_seconds"`
	FloorCPUSeconds float64 `json:"floor_cpu_seconds"`
}

// BenchAllReduce runs the measurement. Loopback throughput is CPU-bound
// (encryption, copies), so results describe CPU cost, not a network.
func BenchAllReduce(ctx context.Context, cfg AllReduceBench) (AllReduceBenchResult, error) {
	var res AllReduceBenchResult
	if cfg.Hosts < 2 || cfg.Hosts > 64 || cfg.Floats < cfg.Hosts || cfg.Floats > compression.MaxCount || cfg.Rounds < 1 {
		return res, fmt.Errorf("bench: hosts %d (2..64), floats %d (hosts..%d), rounds %d (>= 1)", cfg.Hosts, cfg.Floats, compression.MaxCount, cfg.Rounds)
	}
	codec, err := compression.ParseCodec(cfg.Codec)
	if err != nil {
		return res, err
	}
	lossless, err := compression.LosslessByName(cfg.Lossless)
	if err != nil {
		return res, err
	}
	agg, err := allreduce.ParseAggregate(cfg.Aggregate)
	if err != nil {
		return res, err
	}
	hosts, err := loopbackHosts(ctx, cfg.Hosts)
	defer func() {
		for _, h := range hosts {
			h.Close()
		}
	}()
	if err != nil {
		return res, err
	}
	raw, err := p2p.MeasureThroughput(ctx, hosts[0], hosts[1], 64<<20)
	if err != nil {
		return res, err
	}
	res.RawStream = raw

	avs := make([]*allreduce.Averager, len(hosts))
	members := make([]peer.ID, len(hosts))
	for i, h := range hosts {
		avs[i] = allreduce.NewAverager(&hostNetwork{h: h, timeout: time.Minute}, allreduce.AveragerConfig{Codec: codec, Lossless: lossless, Aggregate: agg, RoundTimeout: 5 * time.Minute})
		members[i] = h.ID()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	vecs := make([][]float32, len(hosts))
	outs := make([][]float32, len(hosts))
	samples := make([]int, len(hosts))
	for i := range vecs {
		vecs[i] = make([]float32, cfg.Floats)
		for e := range vecs[i] {
			vecs[i][e] = float32(rng.NormFloat64())
		}
		outs[i] = make([]float32, cfg.Floats)
		samples[i] = 1
	}
	res.SecondsPerRound, res.CPUSecondsPerRound, err = timeRounds(cfg.Rounds, members, samples, func(r allreduce.Round) error {
		return allReduceAll(ctx, avs, r, vecs, outs)
	})
	if err != nil {
		return res, err
	}
	n := float64(cfg.Hosts)
	const floorReps = 3
	start, cpu0 := time.Now(), processCPU()
	for range floorReps {
		if err := allToAll(ctx, hosts, 2*codec.MaxEncodedLen(cfg.Floats/cfg.Hosts)); err != nil {
			return res, err
		}
	}
	res.FloorSeconds = time.Since(start).Seconds() / floorReps
	if cpu := processCPU(); cpu > 0 {
		res.FloorCPUSeconds = (cpu - cpu0).Seconds() / floorReps
	}
	res.BusBandwidth = 2 * (n - 1) / n * float64(4*cfg.Floats) / res.SecondsPerRound
	res.Aggregate = n * res.BusBandwidth
	return res, nil
}

// loopbackHosts starts n fully connected hosts on 127.0.0.1 (TCP) with
// throwaway identities.
func loopbackHosts(ctx context.Context, n int) ([]*p2p.Host, error) {
	var hosts []*p2p.Host
	for i := 0; i < n; i++ {
		priv, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			return hosts, err
		}
		cfg := p2p.DefaultConfig()
		cfg.Identity = priv
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
		h, err := p2p.New(cfg)
		if err != nil {
			return hosts, err
		}
		hosts = append(hosts, h)
	}
	for i := range hosts {
		for j := i + 1; j < len(hosts); j++ {
			if _, err := hosts[i].Connect(ctx, hosts[j].JoinAddrs()[0]); err != nil {
				return hosts, err
			}
		}
	}
	return hosts, nil
}

// allToAll sends perPair bytes from every host to every other at once,
// each over its own raw stream.
func allToAll(ctx context.Context, hosts []*p2p.Host, perPair int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(hosts)*len(hosts))
	for _, from := range hosts {
		for _, to := range hosts {
			if from == to {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := p2p.MeasureThroughput(ctx, from, to, perPair); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when none failed
}

// allReduceAll runs one round on every averager at once.
func allReduceAll(ctx context.Context, avs []*allreduce.Averager, r allreduce.Round, vecs, outs [][]float32) error {
	var wg sync.WaitGroup
	errs := make([]error, len(avs))
	for i := range avs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = avs[i].AllReduce(ctx, r, vecs[i], outs[i])
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// timeRounds runs a warm-up round, then rounds timed ones, each through
// reduce, and returns the wall and CPU seconds per timed round (CPU 0
// where the process's CPU time cannot be read). The warm-up also lines
// the members up: it ends for all at about the same time.
func timeRounds(rounds int, members []peer.ID, samples []int, reduce func(allreduce.Round) error) (wall, cpu float64, err error) {
	var start time.Time
	var cpu0 time.Duration
	for round := 0; round <= rounds; round++ {
		if round == 1 {
			start, cpu0 = time.Now(), processCPU()
		}
		r := allreduce.Round{Step: uint64(round), Members: members, Samples: samples}
		r.ID = allreduce.RoundID("bench", r.Step, 0, members, samples, nil)
		if err := reduce(r); err != nil {
			return 0, 0, fmt.Errorf("round %d: %w", round, err)
		}
	}
	wall = time.Since(start).Seconds() / float64(rounds)
	if c := processCPU(); c > 0 {
		cpu = (c - cpu0).Seconds() / float64(rounds)
	}
	return wall, cpu, nil
}
