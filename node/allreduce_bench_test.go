package node

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// loopbackHosts starts n connected libp2p hosts on 127.0.0.1 (TCP).
func loopbackHosts(tb testing.TB, n int) []*p2p.Host {
	tb.Helper()
	var hosts []*p2p.Host
	for i := 0; i < n; i++ {
		priv, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			tb.Fatal(err)
		}
		cfg := p2p.DefaultConfig()
		cfg.Identity = priv
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
		h, err := p2p.New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { h.Close() })
		hosts = append(hosts, h)
	}
	ctx := context.Background()
	for i := range hosts {
		for j := i + 1; j < len(hosts); j++ {
			if _, err := hosts[i].Connect(ctx, hosts[j].JoinAddrs()[0]); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return hosts
}

// allReduceOnce runs one all-reduce of vecs among the averagers.
func allReduceOnce(tb testing.TB, avs []*gossip.Averager, r gossip.Round, vecs, outs [][]float32) {
	var wg sync.WaitGroup
	errs := make([]error, len(avs))
	for i := range avs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = avs[i].AllReduce(context.Background(), r, vecs[i], outs[i])
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("member %d: %v", i, err)
		}
	}
}

func setupAllReduce(tb testing.TB, k, n int) ([]*p2p.Host, []*gossip.Averager, gossip.Round, [][]float32, [][]float32) {
	hosts := loopbackHosts(tb, k)
	fp32, _ := compression.ByName("fp32")
	var avs []*gossip.Averager
	var members []peer.ID
	for _, h := range hosts {
		avs = append(avs, gossip.NewAverager(hostTransport{h: h, timeout: 30 * time.Second}, gossip.AveragerConfig{Codec: fp32, RoundTimeout: time.Minute}))
		members = append(members, h.ID())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	vecs := make([][]float32, k)
	outs := make([][]float32, k)
	samples := make([]int, k)
	for i := range vecs {
		vecs[i] = make([]float32, n)
		for e := range vecs[i] {
			vecs[i][e] = float32(rng.NormFloat64())
		}
		outs[i] = make([]float32, n)
		samples[i] = 1
	}
	r := gossip.Round{Step: 0, Members: members, Samples: samples}
	return hosts, avs, r, vecs, outs
}

// TestAllReduceOverLibp2p: four real hosts on loopback end bit-identical.
func TestAllReduceOverLibp2p(t *testing.T) {
	_, avs, r, vecs, outs := setupAllReduce(t, 4, 100_003)
	r.ID = gossip.RoundID("ab", 0, 0, r.Members, r.Samples)
	allReduceOnce(t, avs, r, vecs, outs)
	for i := 1; i < len(outs); i++ {
		for e := range outs[0] {
			if outs[i][e] != outs[0][e] {
				t.Fatalf("member %d differs at %d", i, e)
			}
		}
	}
	want := (vecs[0][7] + vecs[1][7] + vecs[2][7] + vecs[3][7]) / 4
	if d := outs[0][7] - want; d > 1e-5 || d < -1e-5 {
		t.Fatalf("average %v, want %v", outs[0][7], want)
	}
}

// BenchmarkAllReduce16MiB reports the all-reduce bus bandwidth,
// 2(N−1)/N·S/t, of a 16 MiB fp32 vector among 4 loopback hosts, next to
// the raw single-stream throughput between two of the same hosts measured
// in the same run, and their ratio.
//
//	go test -run x -bench AllReduce16MiB -benchtime 5x ./node/
func BenchmarkAllReduce16MiB(b *testing.B) {
	const k = 4
	const n = 4 << 20 // floats: 16 MiB
	hosts, avs, r, vecs, outs := setupAllReduce(b, k, n)
	raw, err := p2p.MeasureThroughput(context.Background(), hosts[0], hosts[1], 64<<20)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4 * n)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r.Step = uint64(i)
		r.ID = gossip.RoundID("ab", r.Step, 0, r.Members, r.Samples)
		allReduceOnce(b, avs, r, vecs, outs)
	}
	el := time.Since(start).Seconds() / float64(b.N)
	busbw := 2 * float64(k-1) / k * 4 * n / el
	b.ReportMetric(busbw/(1<<20), "busbw-MiB/s")
	b.ReportMetric(raw/(1<<20), "raw-stream-MiB/s")
	b.ReportMetric(busbw/raw, "busbw/raw")
	// All hosts share this machine's cores, so also report the payload all
	// of them moved per second, the figure comparable with one raw stream.
	b.ReportMetric(float64(k)*busbw/(1<<20), "aggregate-MiB/s")
}
