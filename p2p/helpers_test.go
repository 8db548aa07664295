package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// checkFor waits for a condition; see testutil.CheckFor.
var checkFor = testutil.CheckFor

// loopbackAddrs listen on 127.0.0.1 only: tests never touch other interfaces.
var loopbackAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

// newTestHost starts a loopback host with a throwaway identity (or one under
// dir when dir is non-empty) and closes it when the test ends.
func newTestHost(t testing.TB, dir string) *Host {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ListenAddrs = loopbackAddrs
	cfg.Dir = dir
	return startTestHost(t, cfg)
}

// startTestHost starts a host on cfg, with a throwaway identity unless
// cfg.Dir holds one, and closes it when the test ends.
func startTestHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	if cfg.Dir == "" {
		key, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Identity = key
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
