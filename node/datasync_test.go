package node

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/gossip/datasync"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
	"github.com/swarmtrain/swarmtrain/trainer"
	"github.com/swarmtrain/swarmtrain/trainer/text"
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
// --dir, and trains with them to one state. Given only a peer that does
// not serve data, it downloads from the peers that one's welcome lists;
// in a swarm where nobody serves data, New fails and says why.
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
	via := memConfig(t, sw, "", steps)
	via.Join = []string{q.n.Addrs()[0]}
	v, err := New(via)
	if err != nil {
		t.Fatalf("a node joining through a peer that does not serve data: %v; want a download from the peers its welcome lists", err)
	}
	via.Network.Close()
	if v.cfg.DataDir != downloadedMNIST(via.Dir) {
		t.Errorf("the node joining through a non-serving peer reads %q, want its download", v.cfg.DataDir)
	}

	other := newMemSwarm()
	q2cfg := memConfig(t, other, real, steps)
	q2cfg.NoServeData = true
	q2 := start(t, q2cfg)
	defer q2.cancel()
	lone := memConfig(t, other, "", steps)
	lone.Join = []string{q2.n.Addrs()[0]}
	_, err = New(lone)
	lone.Network.Close()
	if err == nil || !strings.Contains(err.Error(), "no peer serves the data") {
		t.Fatalf("a node in a swarm where nobody serves data got %v, want an error saying no peer serves the data", err)
	}
	res := []*Result{a.wait(t, 60*time.Second), q.wait(t, 60*time.Second), b.wait(t, 60*time.Second)}
	oneState(t, steps, res...)

}

// tinyTextRun writes a small corpus and vocabulary and returns a node config
// of a tiny bert mlm run on them, on sw, with its hashes set.
func tinyTextRun(t *testing.T, sw *memSwarm) Config {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for f := range 2 {
		p := filepath.Join(dir, []string{"opticks.txt", "sawyer notes.txt"}[f])
		if err := os.WriteFile(p, []byte(testutil.TinyText(f)), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	vocab := filepath.Join(dir, "vocab.txt")
	if err := os.WriteFile(vocab, []byte(strings.Join(append(slices.Clone(text.Specials), append(slices.Clone(testutil.TinyWords), ".")...), "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := memConfig(t, sw, "", 3)
	rc := &cfg.Run
	rc.Model.Kind, rc.Data.Dataset, rc.Model.Seq, rc.Model.Width, rc.Model.Heads, rc.Model.Layers = "bert", DatasetMLM, 16, 8, 2, 1
	rc.Compute.Batch, rc.Optimizer.TargetBatch = 8, 16
	cfg.Corpus, cfg.VocabPath = paths, vocab
	if err := PrepareText(&cfg, filepath.Join(dir, "learned.txt")); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A text run's node given none of its files fetches them from a peer,
// checked against the run's data.files and data.vocab, keeps them in
// --dir/data/text, and trains with it to one state; restarted, it reads
// its download again without asking anyone.
func TestInProcessNodeFetchesText(t *testing.T) {
	sw := newMemSwarm()
	acfg := tinyTextRun(t, sw)
	acfg.MinPeers = 2
	a := start(t, acfg)
	bcfg := memConfig(t, sw, "", 3)
	bcfg.Run, bcfg.MinPeers = acfg.Run, 2
	bcfg.Join = []string{a.n.Addrs()[0]}
	b := start(t, bcfg)
	want := downloadedText(bcfg.Dir)
	if got := b.n.cfg.Corpus; len(got) != 2 || filepath.Dir(got[0]) != want || filepath.Base(got[1]) != "01-sawyer_notes.txt" {
		t.Fatalf("the node reads corpus %v, want two files in %s", got, want)
	}
	oneState(t, 3, a.wait(t, 60*time.Second), b.wait(t, 60*time.Second))

	again := memConfig(t, sw, "", 3)
	again.Run, again.Dir = acfg.Run, bcfg.Dir // no --join: nobody to ask
	n, err := New(again)
	if err != nil {
		t.Fatalf("the restarted node did not reuse its download: %v", err)
	}
	n.unlock()
	again.Network.Close()
}

// checkText takes only the files whose hashes the run names, in the
// served layout.
func TestCheckText(t *testing.T) {
	cfg := tinyTextRun(t, newMemSwarm())
	ds, err := textDataset(cfg)
	if err != nil {
		t.Fatal(err)
	}
	check := checkText(cfg.Run)
	good := ds.Files()
	if err := check(good); err != nil {
		t.Fatal(err)
	}
	edit := func(f func([]datasync.File) []datasync.File) []datasync.File {
		fs := slices.Clone(good)
		return f(fs)
	}
	for _, c := range []struct {
		name  string
		files []datasync.File
		want  string
	}{
		{"swapped", edit(func(fs []datasync.File) []datasync.File {
			fs[0], fs[1] = datasync.File{Name: "00-x", Data: fs[1].Data}, datasync.File{Name: "01-y", Data: fs[0].Data}
			return fs
		}), "data.files"},
		{"no vocab", edit(func(fs []datasync.File) []datasync.File { return fs[:2] }), "then vocab.txt"},
		{"unnumbered", edit(func(fs []datasync.File) []datasync.File { fs[1].Name = "x.txt"; return fs }), "start with 01-"},
		{"other vocab", edit(func(fs []datasync.File) []datasync.File {
			fs[2].Data = append(slices.Clone(fs[2].Data), "x\n"...)
			return fs
		}), "data.vocab"},
		{"one byte", edit(func(fs []datasync.File) []datasync.File {
			fs[1].Data = slices.Clone(fs[1].Data)
			fs[1].Data[5] ^= 1
			return fs
		}), "data.files"},
	} {
		if err := check(c.files); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
