package trainer

import (
	"fmt"
	"math"
)

// maxImageChannels caps the channels of an image row (grey 1, RGB 3).
const maxImageChannels = 4

// Norm turns raw pixel bytes into model input, channel by channel:
// (v/255 − Mean[c]) / Std[c], PyTorch's ToTensor then Normalize. The
// values come from 256-entry tables computed once in float64 and rounded
// once, so every peer gets the same bits and a row costs one lookup a
// pixel. A row is channel-major: channel c is the c-th equal part of it.
type Norm struct {
	Mean, Std []float64
	tab       [][256]float32
}

// NewNorm builds the tables; mean and std have one value per channel
// (when they do not, the Norm has no channels and Check says why).
func NewNorm(mean, std []float64) *Norm {
	n := &Norm{Mean: append([]float64(nil), mean...), Std: append([]float64(nil), std...)}
	if len(mean) != len(std) || len(mean) > maxImageChannels {
		return n
	}
	n.tab = make([][256]float32, len(mean))
	for c := range n.tab {
		for v := range n.tab[c] {
			n.tab[c][v] = float32((float64(v)/255 - mean[c]) / std[c])
		}
	}
	return n
}

// Check says whether the values are usable: one mean and std per channel,
// 1..maxImageChannels channels, std in (0, 1], mean in [0, 1].
func (n *Norm) Check() error {
	if len(n.Mean) < 1 || len(n.Mean) > maxImageChannels || len(n.Std) != len(n.Mean) {
		return fmt.Errorf("normalisation: %d means and %d stds, want 1..%d of each, as many", len(n.Mean), len(n.Std), maxImageChannels)
	}
	for c := range n.Mean {
		if !(n.Mean[c] >= 0 && n.Mean[c] <= 1) || !(n.Std[c] > 0 && n.Std[c] <= 1) || math.IsNaN(n.Std[c]) {
			return fmt.Errorf("normalisation: channel %d mean %g std %g, want mean in [0,1] and std in (0,1]", c, n.Mean[c], n.Std[c])
		}
	}
	return nil
}

// Channels is the number of channels n normalises.
func (n *Norm) Channels() int { return len(n.tab) }

// Apply writes the normalised pixels of one row into dst (len(dst) ==
// len(pix), a multiple of the channel count).
func (n *Norm) Apply(dst []float32, pix []uint8) {
	plane := len(pix) / len(n.tab)
	for c := range n.tab {
		t := &n.tab[c]
		src, out := pix[c*plane:(c+1)*plane], dst[c*plane:(c+1)*plane]
		for i, v := range src {
			out[i] = t[v]
		}
	}
}

// StatsOf computes the per-channel mean and standard deviation (of
// pixels scaled to [0,1]) over rows of dim bytes, channel-major with the
// given channels. Integer sums make the result exact and independent of
// order, so peers agree to the bit. A channel with no spread gets std 1.
func StatsOf(pix []uint8, dim, channels int) (mean, std []float64) {
	mean, std = make([]float64, channels), make([]float64, channels)
	s, s2 := make([]uint64, channels), make([]uint64, channels)
	plane := dim / channels
	for lo := 0; lo+dim <= len(pix); lo += dim {
		for c := range channels {
			for _, v := range pix[lo+c*plane : lo+(c+1)*plane] {
				s[c] += uint64(v)
				s2[c] += uint64(v) * uint64(v)
			}
		}
	}
	count := float64(len(pix) / dim * plane)
	for c := range channels {
		if count == 0 {
			mean[c], std[c] = 0, 1
			continue
		}
		m := float64(s[c]) / count / 255
		v := float64(s2[c])/count/(255*255) - m*m
		mean[c], std[c] = m, 1
		if v > 1e-12 {
			std[c] = math.Sqrt(v)
		}
	}
	return mean, std
}
