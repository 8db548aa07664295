package trainer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func testPixels(name string, n, c, h, w int, seed byte) *Dataset {
	d := &Dataset{Name: name, N: n, Dim: c * h * w, Shape: []int{c, h, w}, Classes: 3,
		Pix: make([]uint8, n*c*h*w), Y: make([]uint8, n)}
	for i := range d.Pix {
		d.Pix[i] = byte(i*7) + seed
	}
	for i := range d.Y {
		d.Y[i] = uint8(i % 3)
	}
	d.Norm = NewNorm(slices.Repeat([]float64{0.5}, c), slices.Repeat([]float64{0.25}, c))
	return d
}

func TestPixelFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pix")
	a, b := testPixels("train", 5, 3, 4, 4, 1), testPixels("test", 2, 3, 4, 4, 9)
	meta := PixMeta{Mean: a.Norm.Mean, Std: a.Norm.Std, Labels: []string{"cat", "dog", "émeu"}}
	if err := WritePixelFile(path, meta, a, b); err != nil {
		t.Fatal(err)
	}
	sets, got, err := MapPixelFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 2 || !slices.Equal(got.Labels, meta.Labels) {
		t.Fatalf("%d sets, labels %v", len(sets), got.Labels)
	}
	for i, want := range []*Dataset{a, b} {
		s := sets[i]
		if s.Name != want.Name || s.N != want.N || !slices.Equal(s.Shape, want.Shape) || !slices.Equal(s.Pix, want.Pix) || !slices.Equal(s.Y, want.Y) {
			t.Errorf("set %d differs: %+v", i, s)
		}
		buf := make([]float32, s.N*s.Dim)
		if !slices.Equal(s.Rows(0, s.N, buf), want.Rows(0, want.N, make([]float32, s.N*s.Dim))) {
			t.Errorf("set %d normalises differently", i)
		}
	}
}

// A damaged cache file is refused with a reason, never sliced past its end.
func TestPixelFileDamaged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pix")
	if err := WritePixelFile(path, PixMeta{Mean: []float64{0.5}, Std: []float64{0.2}}, testPixels("s", 4, 1, 3, 3, 0)); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	for name, b := range map[string][]byte{
		"truncated": good[:len(good)-1],
		"magic":     append([]byte("XXXXXXXX"), good[8:]...),
		"header":    append(append([]byte{}, good[:12]...), good[20:]...),
		"short":     good[:10],
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		if _, _, err := MapPixelFile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err %v, want one naming the file", name, err)
		}
	}
	// A flipped pixel (a torn write, a bad disk) fails the checksum.
	bad := append([]byte{}, good...)
	bad[len(bad)-1] ^= 1
	p := filepath.Join(dir, "torn")
	os.WriteFile(p, bad, 0o644)
	if _, _, err := MapPixelFile(p); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("a flipped pixel: %v", err)
	}
}

func TestCachedPixelsBuildsOnce(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.WriteFile(src, []byte("one"), 0o644)
	builds := 0
	build := func() (PixMeta, []*Dataset, error) {
		builds++
		return PixMeta{Mean: []float64{0.5}, Std: []float64{0.2}}, []*Dataset{testPixels("s", 4, 1, 3, 3, 0)}, nil
	}
	cache := filepath.Join(dir, "cache")
	for range 2 {
		sets, _, err := CachedPixels(cache, "t", srcKey(t, src), "", build)
		if err != nil || len(sets) != 1 || sets[0].N != 4 {
			t.Fatal(sets, err)
		}
	}
	if builds != 1 {
		t.Errorf("built %d times, want once", builds)
	}
	os.WriteFile(src, []byte("two"), 0o644) // other source bytes: another file
	CachedPixels(cache, "t", srcKey(t, src), "", build)
	CachedPixels(cache, "t", srcKey(t, src), "size=32", build)
	if builds != 3 {
		t.Errorf("built %d times after the source and options changed, want 3", builds)
	}
}

// The cached MNIST is the decoded one, row for row and bit for bit.
func TestLoadMNISTCachedMatches(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes MNIST")
	}
	dir, err := MNISTDir()
	if err != nil {
		t.Skip(err)
	}
	train, test, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	for range 2 { // build, then map
		ctrain, ctest, err := LoadMNISTCached(dir, cache)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range [][2]*Dataset{{train, ctrain}, {test, ctest}} {
			if !slices.Equal(p[0].Pix, p[1].Pix) || !slices.Equal(p[0].Y, p[1].Y) || !slices.Equal(p[0].Shape, p[1].Shape) {
				t.Fatalf("%s differs from its cached copy", p[0].Name)
			}
			a, b := p[0].Rows(0, 3, make([]float32, 3*784)), p[1].Rows(0, 3, make([]float32, 3*784))
			if !slices.Equal(a, b) {
				t.Fatalf("%s normalises differently when cached", p[0].Name)
			}
		}
	}
}

func srcKey(t *testing.T, p string) string {
	k, err := SourceHash("", []string{p})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func FuzzPixelFile(f *testing.F) {
	path := filepath.Join(f.TempDir(), "x.pix")
	if err := WritePixelFile(path, PixMeta{Mean: []float64{0.5}, Std: []float64{0.2}}, testPixels("s", 3, 1, 2, 2, 0)); err == nil {
		b, _ := os.ReadFile(path)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sets, _, err := parsePixelFile(b)
		if err != nil {
			return
		}
		for _, d := range sets {
			d.Rows(0, d.N, make([]float32, d.N*d.Dim)) // every row readable
		}
	})
}
