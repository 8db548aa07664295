package trainer

import (
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/shapes"
)

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestImageFolderShapes(t *testing.T) {
	dir := t.TempDir()
	if err := shapes.Write(dir, 30, 32, 1); err != nil {
		t.Fatal(err)
	}
	f, err := ScanImageFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	classes := slices.Sorted(slices.Values(shapes.Classes))
	if !slices.Equal(f.Labels, classes) || len(f.Train) != 300 || len(f.Test) != 0 {
		t.Fatalf("labels %v, %d train and %d test files", f.Labels, len(f.Train), len(f.Test))
	}
	opt := ImageOptions{Size: 24, TestFraction: 0.1, Seed: 7}
	cache := t.TempDir()
	train, test, meta, err := LoadImageFolder(f, opt, cache, "")
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 270 || test.N != 30 || !slices.Equal(train.Shape, []int{3, 24, 24}) || train.Classes != 10 {
		t.Fatalf("train %d test %d shape %v classes %d", train.N, test.N, train.Shape, train.Classes)
	}
	for c := range 10 { // 3 of each class held out
		if n := strings.Count(string(test.Y), string(rune(c))); n != 3 {
			t.Errorf("class %d: %d held out, want 3", c, n)
		}
	}
	if len(meta.Mean) != 3 || !slices.Equal(meta.Labels, classes) {
		t.Fatalf("meta %+v", meta)
	}
	// The normalised training pixels have mean 0 and std 1 per channel.
	x := train.Rows(0, train.N, make([]float32, train.N*train.Dim))
	for c := range 3 {
		var s, s2 float64
		n := 0
		for r := range train.N {
			for _, v := range x[r*train.Dim+c*576 : r*train.Dim+(c+1)*576] {
				s, s2 = s+float64(v), s2+float64(v)*float64(v)
				n++
			}
		}
		if m, v := s/float64(n), s2/float64(n)-(s/float64(n))*(s/float64(n)); m*m > 1e-6 || (v-1)*(v-1) > 1e-4 {
			t.Errorf("channel %d: normalised mean %g variance %g, want 0 and 1", c, m, v)
		}
	}
	// Another seed holds out other images; the same seed the same, cached.
	_, test2, _, _ := LoadImageFolder(f, opt, cache, "")
	opt.Seed = 8
	_, test3, _, _ := LoadImageFolder(f, opt, cache, "")
	if !slices.Equal(test.Pix, test2.Pix) || slices.Equal(test.Pix, test3.Pix) {
		t.Error("the held-out split does not follow the seed")
	}
}

func TestImageFolderGreyAndTestDir(t *testing.T) {
	dir := t.TempDir()
	for i, split := range []string{"train", "train", "test"} {
		for c, class := range []string{"dark", "light"} {
			img := image.NewGray(image.Rect(0, 0, 10, 6)) // not square: cropped
			for k := range img.Pix {
				img.Pix[k] = uint8(40 + 160*c + k%7)
			}
			writePNG(t, filepath.Join(dir, split, class, string(rune('a'+i))+".png"), img)
		}
	}
	os.WriteFile(filepath.Join(dir, "train", "dark", "notes.txt"), []byte("skipped"), 0o644)
	f, err := ScanImageFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	train, test, meta, err := LoadImageFolder(f, ImageOptions{Size: 6}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 4 || test.N != 2 || train.Shape[0] != 1 || len(meta.Mean) != 1 || !slices.Equal(test.Y, []uint8{0, 1}) {
		t.Fatalf("train %d test %d shape %v mean %v labels %v", train.N, test.N, train.Shape, meta.Mean, test.Y)
	}
}

// Bad folders and files are refused with an error naming what is wrong.
func TestImageFolderErrors(t *testing.T) {
	grey := image.NewGray(image.Rect(0, 0, 4, 4))
	for name, tc := range map[string]struct {
		setup func(dir string)
		want  string
	}{
		"one class": {func(d string) { writePNG(t, filepath.Join(d, "a", "x.png"), grey) }, "1 class folders"},
		"empty class": {func(d string) {
			writePNG(t, filepath.Join(d, "a", "x.png"), grey)
			os.MkdirAll(filepath.Join(d, "b"), 0o755)
		}, `class "b" has no`},
		"corrupt": {func(d string) {
			writePNG(t, filepath.Join(d, "a", "x.png"), grey)
			os.MkdirAll(filepath.Join(d, "b"), 0o755)
			os.WriteFile(filepath.Join(d, "b", "y.png"), []byte("\x89PNG\r\n\x1a\nnope"), 0o644)
		}, "y.png"},
		"huge": {func(d string) {
			writePNG(t, filepath.Join(d, "a", "x.png"), grey)
			// A valid PNG header that declares 100000×100000 pixels.
			writePNG(t, filepath.Join(d, "b", "y.png"), grey)
			b, _ := os.ReadFile(filepath.Join(d, "b", "y.png"))
			copy(b[16:24], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
			binary.BigEndian.PutUint32(b[29:33], crc32.ChecksumIEEE(b[12:29]))
			os.WriteFile(filepath.Join(d, "b", "y.png"), b, 0o644)
		}, "pixels, want at most"},
		"unknown test class": {func(d string) {
			writePNG(t, filepath.Join(d, "a", "x.png"), grey)
			writePNG(t, filepath.Join(d, "b", "x.png"), grey)
			writePNG(t, filepath.Join(d, "test", "c", "x.png"), grey)
		}, `test class "c"`},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(dir)
			f, err := ScanImageFolder(dir)
			if err == nil {
				_, _, _, err = LoadImageFolder(f, ImageOptions{Size: 8, TestFraction: 0.5}, "", "")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// The CNN learns the shapes from a folder: the pipeline keeps the
// information (colour planes, labels) a model needs.
func TestImageFolderTrainsCNN(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a CNN")
	}
	dir := t.TempDir()
	if err := shapes.Write(dir, 60, 32, 3); err != nil {
		t.Fatal(err)
	}
	f, err := ScanImageFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	train, test, _, err := LoadImageFolder(f, ImageOptions{Size: 16, TestFraction: 0.2, Seed: 1}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(ModelConfig{Arch: ArchCNN, Hidden: []int{64}, Batch: 32, Seed: 1}, train)
	if err != nil {
		t.Fatal(err)
	}
	trainModel(t, m, train, 32, 150, 3e-3)
	acc, _, err := m.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("held-out accuracy %.3f on %d images", acc, test.N)
	if acc < 0.6 { // chance is 0.1
		t.Errorf("held-out accuracy %.3f, want >= 0.6", acc)
	}
}
