package node

import (
	"context"
	"testing"
	"time"
)

// A bench among three processes' worth of hosts: two join the leader,
// all run the plan, and the leader reports every member's figures.
func TestBenchLeadAndJoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := AllReduceBench{Hosts: 3, Floats: 300_001, Rounds: 2, Codec: "int8", Lossless: "none", Aggregate: "mean"}
	local := []string{"/ip4/127.0.0.1/tcp/0"}
	addr := make(chan string, 1)
	type lead struct {
		ms  []BenchMember
		err error
	}
	led := make(chan lead, 1)
	go func() {
		ms, err := BenchLead(ctx, cfg, local, func(addrs []string) { addr <- addrs[0] })
		led <- lead{ms, err}
	}()
	a := <-addr
	joins := make(chan error, 2)
	for range 2 {
		go func() {
			m, err := BenchJoin(ctx, a, local)
			if err == nil && !(m.SecondsPerRound > 0) {
				t.Errorf("joiner: %+v", m)
			}
			joins <- err
		}()
	}
	for range 2 {
		if err := <-joins; err != nil {
			t.Fatal(err)
		}
	}
	l := <-led
	if l.err != nil {
		t.Fatal(l.err)
	}
	if len(l.ms) != 3 {
		t.Fatalf("%d members reported, want 3", len(l.ms))
	}
	for i, m := range l.ms {
		if m.Error != "" || !(m.SecondsPerRound > 0) || !(m.BusBandwidth > 0) || m.Peer == "" {
			t.Fatalf("member %d: %+v", i, m)
		}
	}
}
