package compression

import (
	"testing"
)

// Reproduce with: go test ./compression -run '^$' -bench Part -benchtime 20x
// MB/s counts the fp32 input bytes (4 per value); ratio is fp32 bytes per
// frame byte, so fp16 without zstd shows 2.
func BenchmarkEncodePart(b *testing.B) {
	v := normals(1<<20, 1)
	for _, c := range Codecs() {
		for _, l := range losslesses {
			b.Run(c.Name()+"-"+l.String(), func(b *testing.B) {
				var frame []byte
				b.SetBytes(int64(4 * len(v)))
				for b.Loop() {
					var err error
					if frame, err = EncodePart(frame[:0], c, l, v); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(4*len(v))/float64(len(frame)), "ratio")
			})
		}
	}
}

func BenchmarkDecodePart(b *testing.B) {
	v := normals(1<<20, 1)
	dst := make([]float32, len(v))
	for _, c := range Codecs() {
		for _, l := range losslesses {
			b.Run(c.Name()+"-"+l.String(), func(b *testing.B) {
				frame := mustEncode(b, c, l, v)
				b.SetBytes(int64(4 * len(v)))
				for b.Loop() {
					if err := DecodePart(dst, frame); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(4*len(v))/float64(len(frame)), "ratio")
			})
		}
	}
}

func BenchmarkHalf(b *testing.B) {
	v := normals(1<<20, 1)
	buf := make([]byte, 0, 2*len(v))
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(4 * len(v)))
		for b.Loop() {
			buf = FP16{}.Encode(buf[:0], v)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(4 * len(v)))
		for b.Loop() {
			if err := (FP16{}).Decode(v, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
