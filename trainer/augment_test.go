package trainer

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestParseAugment(t *testing.T) {
	for in, want := range map[string]string{"": "none", "none": "none", "flip": "flip", "flip,crop=4": "crop=4,flip", "affine=7.5,crop=2": ""} {
		a, err := ParseAugment(in)
		if in == "affine=7.5,crop=2" {
			want = "crop=2,affine=7.5"
		}
		if err != nil || a.String() != want {
			t.Errorf("%q: %v %v, want %s", in, a, err, want)
		}
	}
	for _, bad := range []string{"flip=1", "crop", "crop=-1", "crop=65", "affine=0", "affine=90", "blur", "flip,,crop=2"} {
		if _, err := ParseAugment(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// A flip mirrors each row; a crop shifts the image and keeps its pixels.
func TestAugmentApply(t *testing.T) {
	shape := []int{2, 3, 4}
	src := make([]uint8, 24)
	for i := range src {
		src[i] = uint8(i + 1)
	}
	dst, tmp := make([]uint8, 24), make([]uint8, 24)
	flips := 0
	for s := range uint64(20) {
		Augment{Flip: true}.apply(dst, src, tmp, shape, rand.NewPCG(s, 1))
		if !slices.Equal(dst, src) {
			flips++
			if dst[0] != 4 || dst[3] != 1 || dst[12] != 16 {
				t.Fatalf("flip: %v", dst)
			}
		}
	}
	if flips == 0 || flips == 20 {
		t.Errorf("%d of 20 flipped, want some but not all", flips)
	}
	moved := 0
	for s := range uint64(20) {
		Augment{Crop: 1}.apply(dst, src, tmp, shape, rand.NewPCG(s, 2))
		zeros := 0
		for i, v := range dst {
			if v == 0 {
				zeros++
			} else if v != src[i] {
				moved++
			}
		}
		if zeros > 2*(3+4-1) { // at most a row and a column a channel uncovered
			t.Fatalf("crop=1 blanked %d pixels: %v", zeros, dst)
		}
	}
	if moved == 0 {
		t.Error("crop never moved the image")
	}
	big := make([]uint8, 81)
	for i := range big {
		big[i] = uint8(i * 3)
	}
	out := make([]uint8, 81)
	Augment{Affine: 10}.apply(out, big, make([]uint8, 81), []int{1, 9, 9}, rand.NewPCG(1, 3))
	if slices.Equal(out, big) || out[40] != big[40] { // the centre stays
		t.Errorf("affine: %v", out)
	}
}

// Augmented batches follow the Batcher's seed and position: the same
// seed draws the same, a Seek back draws the same again, and the rows
// differ from the plain ones.
func TestBatcherAugment(t *testing.T) {
	d := testPixels("img", 8, 1, 6, 6, 3)
	d.Classes = 3
	draw := func(seed uint64, aug Augment, seek bool) []float32 {
		b := NewBatcher(d, 4, seed)
		if err := b.SetAugment(aug); err != nil {
			t.Fatal(err)
		}
		x, y := make([]float32, 4*d.Dim), make([]uint8, 4)
		b.Next(x, y)
		if seek {
			b.Seek(0, 0)
		}
		b.Next(x, y)
		return x
	}
	aug := Augment{Crop: 2, Flip: true}
	a, again, other, plain := draw(1, aug, true), draw(1, aug, true), draw(2, aug, true), draw(1, Augment{}, true)
	first := draw(1, aug, false)
	if !slices.Equal(a, again) || slices.Equal(a, plain) || slices.Equal(a, other) || slices.Equal(a, first) {
		t.Error("augmented batches do not follow seed and position")
	}
	text := &Dataset{Name: "t", X: make([]float32, 8), Y: make([]uint8, 2), N: 2, Dim: 4, Classes: 2}
	if err := NewBatcher(text, 1, 1).SetAugment(aug); err == nil {
		t.Error("augmenting rows without pixels: no error")
	}
}

// With every row alike, the batch order cannot tell batches apart: only
// the augmentation's draws can, and they follow the seed and position.
func TestBatcherAugmentSeeds(t *testing.T) {
	d := testPixels("same", 8, 1, 6, 6, 0)
	for i := range d.Pix {
		d.Pix[i] = uint8(1 + i%36*7)
	}
	rows := func(seed uint64) []float32 {
		b := NewBatcher(d, 8, seed)
		b.SetAugment(Augment{Crop: 2, Affine: 10})
		x := make([]float32, 8*d.Dim)
		b.Next(x, make([]uint8, 8))
		return x
	}
	a, b := rows(1), rows(2)
	if slices.Equal(a, b) {
		t.Error("two seeds augmented alike")
	}
	if slices.Equal(a[:d.Dim], a[d.Dim:2*d.Dim]) && slices.Equal(a[d.Dim:2*d.Dim], a[2*d.Dim:3*d.Dim]) {
		t.Error("positions in a batch augmented alike")
	}
	if !slices.Equal(a, rows(1)) {
		t.Error("one seed augmented two ways")
	}
}
