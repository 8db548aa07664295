package compression_test

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/compression"
)

// An averaging owner encodes once and every member, the owner included,
// decodes the same bytes, so all hold the same float32 bits.
func Example() {
	avg := []float32{0.5, -1.25, 3.0e-5, 70000} // 70000 is beyond half range

	frame, err := compression.EncodePart(nil, compression.FP16{}, compression.LosslessZstd, avg)
	if err != nil {
		panic(err)
	}

	n, err := compression.PeekCount(frame) // header only: size the buffer
	if err != nil {
		panic(err)
	}
	got := make([]float32, n)
	if err := compression.DecodePart(got, frame); err != nil {
		panic(err) // a real receiver drops the frame and blames the sender
	}
	fmt.Println(len(frame), got)
	// Output: 24 [0.5 -1.25 2.9981136e-05 65504]
}
