package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// checkFor polls f every poll until it returns nil or total has passed, then
// fails with f's last error. Use it instead of sleeping for a condition.
func checkFor(t testing.TB, total, poll time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", total, err)
		}
		time.Sleep(poll)
	}
}

// loopbackAddrs listen on 127.0.0.1 only: tests never touch other interfaces.
var loopbackAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

// newTestHost starts a loopback host with a throwaway identity (or one under
// dir when dir is non-empty) and closes it when the test ends.
func newTestHost(t testing.TB, dir string) *Host {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ListenAddrs = loopbackAddrs
	cfg.Dir = dir
	if dir == "" {
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
