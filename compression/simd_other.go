//go:build !amd64 || purego

// Portable stand-ins for the amd64 fast paths (F16C fp16, AVX2 bf16 and int8).

package compression

const useF16C = false

func encodeHalvesFast([]byte, []float32) (int, bool) { return 0, false }

func decodeHalvesFast([]float32, []byte) (int, bool) { return 0, false }

const useAVX2 = false

func encodeBF16Fast([]byte, []float32) (int, bool) { return 0, false }

func decodeBF16Fast([]float32, []byte) (int, bool) { return 0, false }

func absMaxFast([]float32) (float32, int, bool) { return 0, 0, false }

func quantize8Fast([]byte, []float32, float32) int { return 0 }

func dequantize8Fast([]float32, []byte, float32) (int, bool) { return 0, false }
