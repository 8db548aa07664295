package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/trainer"
)

// noGo plays a machine without Go or its module cache for the test.
func noGo(t *testing.T) {
	t.Helper()
	old := moduleMNIST
	moduleMNIST = func() (string, error) { return "", errors.New("no module cache here") }
	t.Cleanup(func() { moduleMNIST = old })
}

// realMNIST is the GoMNIST data folder, or a skip.
func realMNIST(t *testing.T) string {
	t.Helper()
	dir, err := trainer.MNISTDir()
	if err != nil {
		t.Skipf("no MNIST: %v", err)
	}
	if _, err := mnistDataset(dir); err != nil {
		t.Fatalf("the GoMNIST files do not match the pinned root: %v", err)
	}
	return dir
}

// Local files win: --data, then the module cache, then what peers gave
// this node before; a damaged download is not used.
func TestLocateMNISTLocalFirst(t *testing.T) {
	real := realMNIST(t)
	cfg := Config{Dir: t.TempDir(), DataDir: "/some/where"}
	if dir, _ := locateMNIST(cfg); dir != "/some/where" {
		t.Fatalf("--data lost to %s", dir)
	}
	cfg.DataDir = ""
	if dir, _ := locateMNIST(cfg); dir != real {
		t.Fatalf("the module cache lost to %q", dir)
	}
	noGo(t)
	if dir, why := locateMNIST(cfg); dir != "" || !strings.Contains(strings.Join(why, ";"), "no module cache") {
		t.Fatalf("found %q with nothing here (%v)", dir, why)
	}
	down := downloadedMNIST(cfg.Dir)
	os.MkdirAll(down, 0o700)
	for _, name := range trainer.MNISTGzipNames() {
		b, err := os.ReadFile(filepath.Join(real, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(down, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if dir, why := locateMNIST(cfg); dir != down {
		t.Fatalf("an earlier download was not reused: %q (%v)", dir, why)
	}
	f := filepath.Join(down, trainer.MNISTGzipNames()[3])
	b, _ := os.ReadFile(f)
	b[len(b)/2] ^= 1
	os.WriteFile(f, b, 0o600)
	if dir, why := locateMNIST(cfg); dir != "" || !strings.Contains(strings.Join(why, ";"), "not the GoMNIST ones") {
		t.Fatalf("a damaged download was used: %q (%v)", dir, why)
	}
}

// A node without MNIST on its machine fetches it from the peers it
// joins through, skipping one that does not serve data, keeps it in its
// --dir, and trains with them to one state. With only a peer that does
// not serve data to ask, New fails and says why.
func TestInProcessNodeFetchesMNIST(t *testing.T) {
	const steps = 4
	real := realMNIST(t)
	noGo(t)
	sw := newMemSwarm()
	a := start(t, func() Config { c := memConfig(t, sw, real, steps); c.MinPeers = 3; return c }())
	quiet := memConfig(t, sw, real, steps)
	quiet.MinPeers, quiet.NoServeData = 3, true
	quiet.Join = []string{a.n.Addrs()[0]}
	q := start(t, quiet)

	bare := memConfig(t, sw, "", steps)
	bare.MinPeers = 3
	bare.Join = []string{q.n.Addrs()[0], a.n.Addrs()[0]}
	b := start(t, bare)
	if b.n.cfg.DataDir != downloadedMNIST(bare.Dir) {
		t.Fatalf("the bare node reads %q, want its download in %s", b.n.cfg.DataDir, downloadedMNIST(bare.Dir))
	}
	if _, err := mnistDataset(b.n.cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	lone := memConfig(t, sw, "", steps)
	lone.Join = []string{q.n.Addrs()[0]}
	_, err := New(lone)
	lone.Network.Close()
	if err == nil || !strings.Contains(err.Error(), "no peer serves the data") {
		t.Fatalf("a node with only a non-serving peer got %v, want an error saying no peer serves the data", err)
	}
	res := []*Result{a.wait(t, 60*time.Second), q.wait(t, 60*time.Second), b.wait(t, 60*time.Second)}
	oneState(t, steps, res...)

}
