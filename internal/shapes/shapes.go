// Package shapes writes a synthetic image-classification folder for
// tests and demos: ten classes of coloured shapes on a noisy background,
// one subfolder per class, as an image folder run reads it.
package shapes

import (
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Classes are the shape names, one folder each.
var Classes = []string{"square", "disc", "triangle", "cross", "ring", "hbar", "vbar", "diamond", "saltire", "frame"}

// Write makes dir/<class>/NNN.png, perClass images of size×size RGB per
// class, drawn from seed: a shape of random position, size and saturated
// colour on a dark noisy background. Every seventh image is a JPEG and
// every eleventh a GIF, and every thirteenth is larger than size, so a
// reader's decoders and resizing are exercised too.
func Write(dir string, perClass, size int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 0x5348))
	for c, name := range Classes {
		cd := filepath.Join(dir, name)
		if err := os.MkdirAll(cd, 0o755); err != nil {
			return err
		}
		for i := range perClass {
			s := size
			if i%13 == 5 {
				s = size * 3 / 2
			}
			img := draw(r, c, s)
			var err error
			switch {
			case i%7 == 3:
				err = save(filepath.Join(cd, fmt.Sprintf("%03d.jpg", i)), func(f *os.File) error { return jpeg.Encode(f, img, &jpeg.Options{Quality: 95}) })
			case i%11 == 4:
				err = save(filepath.Join(cd, fmt.Sprintf("%03d.gif", i)), func(f *os.File) error { return gif.Encode(f, img, nil) })
			default:
				err = save(filepath.Join(cd, fmt.Sprintf("%03d.png", i)), func(f *os.File) error { return png.Encode(f, img) })
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func save(path string, enc func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := enc(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func draw(r *rand.Rand, class, s int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, s, s))
	for i := 0; i < len(img.Pix); i += 4 {
		v := uint8(r.IntN(60))
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = v, v+uint8(r.IntN(10)), v, 255
	}
	fs := float64(s)
	half := fs * (0.22 + 0.12*r.Float64())     // half the shape's extent
	cx := half + 1 + r.Float64()*(fs-2*half-2) // centre inside the image
	cy := half + 1 + r.Float64()*(fs-2*half-2)
	col := hue(r.Float64())
	t := math.Max(1.5, half*0.35) // stroke width
	for y := range s {
		for x := range s {
			dx, dy := (float64(x)+0.5-cx)/half, (float64(y)+0.5-cy)/half
			ax, ay := math.Abs(dx), math.Abs(dy)
			th := t / half
			var in bool
			switch Classes[class] {
			case "square":
				in = ax <= 0.8 && ay <= 0.8
			case "disc":
				in = dx*dx+dy*dy <= 0.8
			case "triangle":
				in = dy <= 0.9 && dy >= -0.9 && ax <= (dy+0.9)/1.8
			case "cross":
				in = (ax <= th/2 && ay <= 1) || (ay <= th/2 && ax <= 1)
			case "ring":
				d := math.Sqrt(dx*dx + dy*dy)
				in = d <= 1 && d >= 1-th
			case "hbar":
				in = ax <= 1 && ay <= th/2
			case "vbar":
				in = ay <= 1 && ax <= th/2
			case "diamond":
				in = ax+ay <= 1
			case "saltire":
				in = ax <= 1 && ay <= 1 && (math.Abs(dx-dy) <= th*0.7 || math.Abs(dx+dy) <= th*0.7)
			case "frame":
				in = ax <= 1 && ay <= 1 && (ax >= 1-th || ay >= 1-th)
			}
			if in {
				img.SetRGBA(x, y, col)
			}
		}
	}
	return img
}

// hue is a bright saturated colour at h in [0,1) around the colour wheel.
func hue(h float64) color.RGBA {
	f := func(n float64) uint8 {
		k := math.Mod(n+h*6, 6)
		v := 1 - math.Max(0, math.Min(math.Min(k, 4-k), 1))
		return uint8(80 + 175*v)
	}
	return color.RGBA{f(5), f(3), f(1), 255}
}
