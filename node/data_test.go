package node

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/shapes"
)

// --train-rows keeps that many training rows, the same ones on every
// peer of the run (drawn with the seed), another seed other ones; more
// rows than the data holds is an error, not a silent cap.
func TestLoadDataTrainRows(t *testing.T) {
	cfg := Config{Run: DefaultRunConfig()}
	cfg.Run.Data.TrainRows = 100
	a, test, err := LoadData(cfg)
	if err != nil {
		t.Skipf("no MNIST: %v", err)
	}
	if a.N != 100 || test.N != 10000 {
		t.Fatalf("%d training rows and %d test rows, want 100 and all 10000", a.N, test.N)
	}
	b, _, _ := LoadData(cfg)
	cfg.Run.Seed = 2
	c, _, _ := LoadData(cfg)
	if !slices.Equal(a.Y, b.Y) || !slices.Equal(a.Pix, b.Pix) || slices.Equal(a.Pix, c.Pix) {
		t.Error("the same seed drew other rows, or another seed the same")
	}
	cfg.Run.Data.TrainRows = 60001
	if _, _, err := LoadData(cfg); err == nil || !strings.Contains(err.Error(), "has 60000 rows") {
		t.Errorf("more rows than the data: %v", err)
	}
}

// The source task labels passages by file: one file is refused before a
// vocabulary is learned or a node starts.
func TestPrepareTextSourceNeedsTwoFiles(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.txt")
	if err := os.WriteFile(one, []byte("The light is refracted. The rays bend."), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Run: DefaultRunConfig(), Corpus: []string{one}}
	cfg.Run.Model.Kind, cfg.Run.Data.Dataset = "bert", DatasetSource
	err := PrepareText(&cfg, filepath.Join(dir, "vocab.txt"))
	if err == nil || !strings.Contains(err.Error(), "2 to 256 --text files") {
		t.Errorf("one file: %v", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "vocab.txt")); statErr == nil {
		t.Error("a vocabulary was learned for a run that cannot start")
	}
}

// A node under --data-memory streams a training set several times its
// budget and ends on the state of the same run without one, and of one
// decoded onto the heap (no cache): the budget changes what is resident,
// never which rows are drawn; nor for a node training a shard. Budgets
// under one window, and sets that are not mapped, are refused with both
// sizes or the reason.
func TestInProcessDataMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 2000 images")
	}
	dir := t.TempDir()
	if err := shapes.Write(dir, 200, 48, 1); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	const steps = 40
	cfgFor := func(memory int64, cacheDir string) Config {
		cfg := memConfig(t, newMemSwarm(), dir, steps)
		cfg.Run.Data.ImageSize = 48
		cfg.DataCache, cfg.DataMemory = cacheDir, memory
		if err := PrepareImages(&cfg); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	whole := start(t, cfgFor(0, cache)).wait(t, 2*time.Minute)
	cfg := cfgFor(5<<19, cache)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rows := n.local.train.N * n.local.train.Dim; rows < 4*int(cfg.DataMemory) {
		t.Fatalf("training set of %d bytes, want several times the budget of %d", rows, cfg.DataMemory)
	}
	streamed := run(t, n).wait(t, 2*time.Minute)
	heap := start(t, cfgFor(0, "")).wait(t, 2*time.Minute)
	if whole.Hash != streamed.Hash || whole.Hash != heap.Hash || whole.Step != steps {
		t.Fatalf("step %d hash %s whole, %s streamed under 2.5 MiB, %s from the heap", whole.Step, whole.Hash, streamed.Hash, heap.Hash)
	}

	// A shard (the demo gives each node one) under the budget is drawn
	// from the mapped set without a copy: the copy's batches.
	shardOf := func(memory int64) Config {
		cfg := cfgFor(memory, cache)
		cfg.Shard, cfg.Shards = 1, 3
		return cfg
	}
	copied := start(t, shardOf(0)).wait(t, 2*time.Minute)
	viewed := start(t, shardOf(5<<19)).wait(t, 2*time.Minute)
	if copied.Hash != viewed.Hash || copied.Hash == whole.Hash {
		t.Fatalf("shard 1/3: hash %s copied, %s streamed under 2.5 MiB (all rows: %s)", copied.Hash, viewed.Hash, whole.Hash)
	}

	for _, c := range []struct {
		cfg  Config
		want []string
	}{
		{cfgFor(1<<20, cache), []string{"1.0 MiB", "smaller than one window", "1.9 MiB"}},
		{cfgFor(64<<20, ""), []string{"--data-memory", "not mapped"}},
	} {
		_, err := New(c.cfg)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Fatalf("New with --data-memory %d, cache %q: %v, want an error saying %q", c.cfg.DataMemory, c.cfg.DataCache, err, w)
			}
		}
	}
}
