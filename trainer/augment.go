package trainer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Augment is the random change made to each training image before it is
// normalised, torchvision-style: an affine jitter (rotation and scale),
// then a crop of the original size from the image padded with black,
// then a mirror. Test images are never augmented. The draws come from a
// PCG the Batcher seeds with its seed and the row's (epoch, position),
// so a peer's run is reproducible and a resumed peer draws the same.
type Augment struct {
	Crop   int     // padding in pixels each side; the crop shifts the image up to Crop pixels
	Flip   bool    // mirror left–right with probability 1/2
	Affine float64 // rotate by up to ±Affine degrees and scale by up to ±Affine percent
}

// Augmentation limits.
const (
	maxAugmentCrop   = 64
	maxAugmentAffine = 45
)

// ParseAugment reads a comma-separated list: crop=P, flip, affine=D;
// "" and "none" are no augmentation. The error names the bad item.
func ParseAugment(s string) (Augment, error) {
	var a Augment
	if s == "" || s == "none" {
		return a, nil
	}
	for _, item := range strings.Split(s, ",") {
		k, v, hasV := strings.Cut(strings.TrimSpace(item), "=")
		switch {
		case k == "flip" && !hasV:
			a.Flip = true
		case k == "crop" && hasV:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxAugmentCrop {
				return a, fmt.Errorf("augment %q: crop=%s, want pixels in 1..%d", s, v, maxAugmentCrop)
			}
			a.Crop = n
		case k == "affine" && hasV:
			d, err := strconv.ParseFloat(v, 64)
			if err != nil || !(d > 0 && d <= maxAugmentAffine) {
				return a, fmt.Errorf("augment %q: affine=%s, want degrees (and percent) in (0, %d]", s, v, maxAugmentAffine)
			}
			a.Affine = d
		default:
			return a, fmt.Errorf("augment %q: unknown item %q, want crop=P, flip or affine=D", s, item)
		}
	}
	return a, nil
}

// String is the canonical spelling: what the run config records.
func (a Augment) String() string {
	var parts []string
	if a.Crop > 0 {
		parts = append(parts, "crop="+strconv.Itoa(a.Crop))
	}
	if a.Flip {
		parts = append(parts, "flip")
	}
	if a.Affine > 0 {
		parts = append(parts, "affine="+strconv.FormatFloat(a.Affine, 'g', -1, 64))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// On says whether a changes anything.
func (a Augment) On() bool { return a.Crop > 0 || a.Flip || a.Affine > 0 }

// apply writes src (one row of shape c×h×w bytes) augmented into dst,
// using tmp (len(src)) as scratch.
func (a Augment) apply(dst, src, tmp []uint8, shape []int, src64 *rand.PCG) {
	c, h, w := shape[0], shape[1], shape[2]
	unit := func() float64 { return float64(src64.Uint64()>>11) / (1 << 53) } // [0,1)
	copy(dst, src)
	if a.Affine > 0 {
		theta := (2*unit() - 1) * a.Affine * math.Pi / 180
		scale := 1 + (2*unit()-1)*a.Affine/100
		// Inverse map: each output pixel samples the source at the
		// rotated and scaled position about the centre (bilinear).
		cs, sn := math.Cos(theta)/scale, math.Sin(theta)/scale
		cx, cy := float64(w-1)/2, float64(h-1)/2
		for y := range h {
			for x := range w {
				dx, dy := float64(x)-cx, float64(y)-cy
				sx, sy := cs*dx+sn*dy+cx, -sn*dx+cs*dy+cy
				x0, y0 := int(math.Floor(sx)), int(math.Floor(sy))
				fx, fy := sx-float64(x0), sy-float64(y0)
				for ch := range c {
					p := dst[ch*h*w : (ch+1)*h*w]
					at := func(x, y int) float64 {
						if x < 0 || y < 0 || x >= w || y >= h {
							return 0
						}
						return float64(p[y*w+x])
					}
					v := (1-fy)*((1-fx)*at(x0, y0)+fx*at(x0+1, y0)) + fy*((1-fx)*at(x0, y0+1)+fx*at(x0+1, y0+1))
					tmp[ch*h*w+y*w+x] = uint8(math.Min(255, math.Round(v)))
				}
			}
		}
		copy(dst, tmp)
	}
	if a.Crop > 0 {
		// Cutting an h×w window at (ox, oy) of the image padded by Crop
		// is a shift by (Crop−ox, Crop−oy), black where it uncovers.
		span := uint64(2*a.Crop + 1)
		ox, oy := int(boundedUint64(src64, span))-a.Crop, int(boundedUint64(src64, span))-a.Crop
		for i := range tmp[:c*h*w] {
			tmp[i] = 0
		}
		for ch := range c {
			for y := range h {
				sy := y + oy
				if sy < 0 || sy >= h {
					continue
				}
				for x := range w {
					if sx := x + ox; sx >= 0 && sx < w {
						tmp[ch*h*w+y*w+x] = dst[ch*h*w+sy*w+sx]
					}
				}
			}
		}
		copy(dst, tmp)
	}
	if a.Flip && src64.Uint64()&1 == 1 {
		for ch := range c {
			for y := range h {
				r := dst[ch*h*w+y*w : ch*h*w+(y+1)*w]
				for i, j := 0, w-1; i < j; i, j = i+1, j-1 {
					r[i], r[j] = r[j], r[i]
				}
			}
		}
	}
}
