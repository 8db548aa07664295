//go:build !cgo

package device

// statusNoCgo is Info.GPUStatus in a binary built with CGO_ENABLED=0:
// go-nvml is a cgo package, so such a binary cannot ask NVML at all.
const statusNoCgo = "GPU detection needs a cgo build"

// detectGPUs cannot reach NVML without cgo; the node runs on the CPU.
func detectGPUs() ([]GPU, string) {
	return nil, statusNoCgo
}
