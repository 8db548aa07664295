package node

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
)

// TestAllReduceOverLibp2p: four real hosts on loopback end bit-identical,
// holding the mean.
func TestAllReduceOverLibp2p(t *testing.T) {
	ctx := context.Background()
	hosts, err := loopbackHosts(ctx, 4)
	t.Cleanup(func() {
		for _, h := range hosts {
			h.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	fp32, _ := compression.ByName("fp32")
	const n = 100_003
	var avs []*allreduce.Averager
	var members []peer.ID
	vecs := make([][]float32, len(hosts))
	outs := make([][]float32, len(hosts))
	for i, h := range hosts {
		avs = append(avs, allreduce.NewAverager(&hostNetwork{h: h, timeout: 10 * time.Second}, allreduce.AveragerConfig{Codec: fp32, RoundTimeout: 30 * time.Second}))
		members = append(members, h.ID())
		vecs[i] = make([]float32, n)
		for e := range vecs[i] {
			vecs[i][e] = float32(i*e%17) - 8
		}
		outs[i] = make([]float32, n)
	}
	samples := []int{1, 1, 1, 1}
	r := allreduce.Round{Members: members, Samples: samples, ID: allreduce.RoundID("ab", 0, 0, members, samples, nil)}
	if err := allReduceAll(ctx, avs, r, vecs, outs); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(outs); i++ {
		for e := range outs[0] {
			if math.Float32bits(outs[i][e]) != math.Float32bits(outs[0][e]) {
				t.Fatalf("member %d differs at %d", i, e)
			}
		}
	}
	for _, e := range []int{0, 7, n - 1} {
		want := (vecs[0][e] + vecs[1][e] + vecs[2][e] + vecs[3][e]) / 4
		if d := outs[0][e] - want; d > 1e-5 || d < -1e-5 {
			t.Fatalf("element %d: average %v, want %v", e, outs[0][e], want)
		}
	}
}

// BenchmarkAllReduce16MiB reports the all-reduce bus bandwidth,
// 2(N−1)/N·S/t, of a 16 MiB fp32 vector among 4 loopback hosts, next to
// the raw single-stream throughput between two of the same hosts measured
// in the same run, and their ratios. `swarmtrain bench allreduce` runs the
// same measurement with other sizes.
//
//	go test -run x -bench AllReduce16MiB -benchtime 5x ./node/
func BenchmarkAllReduce16MiB(b *testing.B) {
	res, err := BenchAllReduce(context.Background(), AllReduceBench{Hosts: 4, Floats: 4 << 20, Rounds: b.N, Codec: "fp32", Lossless: "none"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.SecondsPerRound*1e9, "ns/op")
	b.ReportMetric(res.BusBandwidth/(1<<20), "busbw-MiB/s")
	b.ReportMetric(res.Aggregate/(1<<20), "aggregate-MiB/s")
	b.ReportMetric(res.RawStream/(1<<20), "raw-stream-MiB/s")
	b.ReportMetric(res.BusBandwidth/res.RawStream, "busbw/raw")
	b.ReportMetric(res.Aggregate/res.RawStream, "aggregate/raw")
}
