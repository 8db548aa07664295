package compression

import (
	"fmt"
	"math"
	"time"
)

// Measurement is what `swarmtrain bench compress` reports for one codec.
type Measurement struct {
	Codec    string  `json:"codec"`
	Lossless string  `json:"lossless"`
	Values   int     `json:"values"`
	Ratio    float64 `json:"ratio"`       // fp32 bytes / frame bytes
	EncodeGB float64 `json:"encode_gb_s"` // fp32 GB/s into EncodePart, one core
	DecodeGB float64 `json:"decode_gb_s"` // fp32 GB/s out of DecodePart, one core
	RelL2    float64 `json:"relative_l2"` // ‖decoded − src‖ / ‖src‖
}

// Measure encodes and decodes src with c and l, best of reps runs each
// (the best run is the one least disturbed by the rest of the machine).
func Measure(c Codec, l Lossless, src []float32, reps int) (Measurement, error) {
	m := Measurement{Codec: c.Name(), Lossless: l.String(), Values: len(src)}
	var den float64
	for _, x := range src {
		den += float64(x) * float64(x)
	}
	if den == 0 {
		return m, fmt.Errorf("measure: all-zero input") // before any timing
	}
	var frame []byte
	best := func(f func() error) (time.Duration, error) {
		var b time.Duration
		for i := range max(reps, 1) {
			start := time.Now()
			if err := f(); err != nil {
				return 0, err
			}
			if d := time.Since(start); i == 0 || d < b {
				b = d
			}
		}
		return b, nil
	}
	enc, err := best(func() (err error) {
		frame, err = EncodePart(frame[:0], c, l, src)
		return err
	})
	if err != nil {
		return m, err
	}
	dst := make([]float32, len(src))
	dec, err := best(func() error { return DecodePart(dst, frame) })
	if err != nil {
		return m, err
	}
	raw := float64(4 * len(src))
	m.Ratio = raw / float64(len(frame))
	m.EncodeGB = raw / enc.Seconds() / 1e9
	m.DecodeGB = raw / dec.Seconds() / 1e9
	var num float64
	for i, x := range src {
		d := float64(dst[i]) - float64(x)
		num += d * d
	}
	m.RelL2 = math.Sqrt(num / den)
	return m, nil
}
