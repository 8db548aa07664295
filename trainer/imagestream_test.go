package trainer

import (
	"image"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/shapes"
)

// The cache file of an image folder is written image by image and
// mapped; its statistics are StatsOf's over the rows it holds, and the
// training rows are stored in a seeded order, not class by class.
func TestImageFolderStreamedBuild(t *testing.T) {
	dir := t.TempDir()
	if err := shapes.Write(dir, 20, 32, 1); err != nil {
		t.Fatal(err)
	}
	f, err := ScanImageFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	opt := ImageOptions{Size: 16, TestFraction: 0.1, Seed: 3}
	cache := t.TempDir()
	train, test, meta, err := LoadImageFolder(f, opt, cache, "")
	if err != nil {
		t.Fatal(err)
	}
	if !train.Mapped() || !test.Mapped() {
		t.Fatal("an image folder's cache file is not mapped")
	}
	mean, std := StatsOf(train.Pix, train.Dim, train.Shape[0])
	if !slices.Equal(mean, meta.Mean) || !slices.Equal(std, meta.Std) {
		t.Fatalf("streamed stats %v %v, StatsOf %v %v", meta.Mean, meta.Std, mean, std)
	}
	if slices.IsSorted(train.Y) {
		t.Fatal("training rows stored class by class")
	}
	// Without a cache folder: the same sets, on the heap.
	htrain, htest, _, err := LoadImageFolder(f, opt, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if htrain.Mapped() || !slices.Equal(htrain.Pix, train.Pix) || !slices.Equal(htest.Y, test.Y) {
		t.Fatal("the heap copy differs from the cache file")
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "*.rgb*")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

// A bad image is the error, with or without a cache folder: it is not
// taken for an unwritable cache.
func TestImageFolderBadImageCached(t *testing.T) {
	dir := t.TempDir()
	grey := image.NewGray(image.Rect(0, 0, 4, 4))
	writePNG(t, filepath.Join(dir, "a", "x.png"), grey)
	writePNG(t, filepath.Join(dir, "b", "y.png"), grey)
	writePNG(t, filepath.Join(dir, "b", "z.png"), grey)
	os.WriteFile(filepath.Join(dir, "a", "bad.png"), []byte("not a png"), 0o644)
	f, err := ScanImageFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, cache := range []string{t.TempDir(), ""} {
		_, _, _, err := LoadImageFolder(f, ImageOptions{Size: 4, TestFraction: 0.5}, cache, "")
		if err == nil || !strings.Contains(err.Error(), "bad.png") {
			t.Fatalf("cache %q: %v, want the bad image named", cache, err)
		}
	}
}
