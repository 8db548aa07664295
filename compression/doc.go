// Package compression turns a part of a flat float32 tensor into the bytes
// that travel between peers, and back.
//
// A part goes through two stages and one frame:
//
//	values ──Codec (fp32, fp16, …)──► raw ──Lossless (none, zstd)──► payload ──► frame
//
// The Codec is the lossy (or identity) step and is chosen by CodecID from a
// registry, so new codecs (int8, top-k, …) plug in with Register without a
// new frame version. The lossless stage is byte-level: zstd on byte-shuffled
// input buys about 1.17× on gradient-like data; without the shuffle and
// klauspost's all-literal entropy option it buys nothing on floats, and s2
// never does, so it is not offered.
//
// The frame (see EncodePart) is self-describing and checksummed. DecodePart
// treats it as hostile: every field is checked before use, decompression is
// capped at the size the header declares and the codec allows, and NaN/Inf
// values are refused, so a bad frame costs the sender, never the receiver.
//
// Bit-identity across peers comes from decoding, not encoding: an averaging
// owner encodes its result once, sends the same frame to every member and
// uses the decoded frame itself. Decoding is pure integer work and yields
// the same float32 bits on every platform.
//
// A round trip:
//
//	frame, err := compression.EncodePart(nil, compression.FP16{}, compression.LosslessZstd, grad)
//	...
//	n, err := compression.PeekCount(frame)  // header only, for sizing
//	out := make([]float32, n)
//	err = compression.DecodePart(out, frame) // out is finite or err != nil
package compression
