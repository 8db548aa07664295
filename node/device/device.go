// Package device says what hardware a node trains on: the CPU, and the
// NVIDIA GPUs that NVML can see.
//
// Detection never fails. A machine without a GPU, without the NVIDIA driver,
// or a binary built without cgo gets an Info with no GPUs and a GPUStatus
// that says why, so a node can always report itself and fall back to the CPU:
//
//	info := device.Detect()
//	log.Print(info.Summary()) // "AMD EPYC 9R45 (2 cores, linux/amd64), no GPU: no NVIDIA driver (nvml: ERROR_LIBRARY_NOT_FOUND)"
//	for _, g := range info.GPUs {
//		fmt.Println(g.Index, g.Name, g.MemoryTotal)
//	}
//
// NVML is reached only through this package, and only after nvml.Init has
// succeeded: on a machine without the driver any other NVML call kills the
// process with a symbol lookup error (exit 127) that recover cannot catch.
package device

import "runtime"

// StatusOK is Info.GPUStatus when NVML listed at least one GPU.
const StatusOK = "ok"

// GPU is one NVIDIA device as NVML reported it when Detect ran.
type GPU struct {
	Index int    `json:"index"` // NVML enumeration index, 0-based; the CUDA index when CUDA_DEVICE_ORDER=PCI_BUS_ID
	Name  string `json:"name"`  // e.g. "NVIDIA H100 80GB HBM3"; empty if NVML could not read it
	UUID  string `json:"uuid"`  // e.g. "GPU-5e1b…"; stable across reboots, unlike Index

	MemoryTotal uint64 `json:"memory_total"` // bytes of device memory
	MemoryUsed  uint64 `json:"memory_used"`  // bytes in use by any process at detection time

	UtilGPU    uint32 `json:"util_gpu"`    // percent of the last sample period a kernel ran; 0 if unsupported
	UtilMemory uint32 `json:"util_memory"` // percent of the last sample period memory was read or written; 0 if unsupported

	// Notes lists the readings NVML refused and why, e.g.
	// "utilization: nvml: ERROR_NOT_SUPPORTED"; nil when every reading
	// succeeded. A refused reading leaves its fields at zero but never
	// drops the GPU.
	Notes []string `json:"notes,omitempty"`
}

// Info describes the machine a node runs on.
type Info struct {
	CPUModel string `json:"cpu_model"` // "model name" from /proc/cpuinfo on Linux, else runtime.GOARCH
	Cores    int    `json:"cores"`     // logical CPUs usable by this process, runtime.NumCPU()
	OS       string `json:"os"`        // runtime.GOOS
	Arch     string `json:"arch"`      // runtime.GOARCH

	GPUs []GPU `json:"gpus"` // in NVML index order; empty when GPUStatus is not StatusOK

	// GPUStatus is StatusOK when GPUs is non-empty, and otherwise says why
	// it is empty, e.g. "no NVIDIA driver (nvml: ERROR_LIBRARY_NOT_FOUND)"
	// or "GPU detection needs a cgo build".
	GPUStatus string `json:"gpu_status"`
}

// Detect inspects this machine. It never fails and never panics: what it
// cannot learn about GPUs it explains in GPUStatus. It loads and initialises
// NVML for the duration of the call and shuts it down before returning;
// with a driver present that can take a second, so call it once at start.
func Detect() Info {
	i := host()
	i.GPUs, i.GPUStatus = detectGPUs()
	return i
}

// host fills the CPU half of an Info; it cannot fail.
func host() Info {
	return Info{
		CPUModel: cpuModel(),
		Cores:    runtime.NumCPU(),
		OS:       runtime.GOOS,
		Arch:     runtime.GOARCH,
	}
}
