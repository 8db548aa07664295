package node

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
