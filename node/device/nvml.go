//go:build cgo

package device

import (
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlMu serialises Detect: loading and unloading libnvidia-ml swaps
// go-nvml's package-level symbol table and error-string function, which
// is not safe to do from two goroutines at once.
var nvmlMu sync.Mutex

// detectGPUs asks the system's NVML library, loaded from libnvidia-ml.so.1.
func detectGPUs() ([]GPU, string) {
	nvmlMu.Lock()
	defer nvmlMu.Unlock()
	return probe(nvml.New())
}

// DetectWith is Detect over any NVML implementation, such as go-nvml's
// mocks. lib is initialised and shut down within the call; no method other
// than Init is called unless Init succeeds.
func DetectWith(lib nvml.Interface) Info {
	i := host()
	i.GPUs, i.GPUStatus = probe(lib)
	return i
}

// probe is the only place that calls NVML, and it calls nothing, not even
// Shutdown, until Init has succeeded: with the library missing, every other
// entry point is an unresolved symbol and calling it ends the process.
// Failures after Init are reported, never fatal; a GPU whose readings fail
// is still listed, with Notes saying what is missing.
func probe(lib nvml.Interface) (gpus []GPU, status string) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, initStatus(ret)
	}
	defer lib.Shutdown()

	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, "NVIDIA driver could not count GPUs (" + nvmlErr(ret) + ")"
	}
	if n <= 0 {
		return nil, "NVIDIA driver loaded but sees no GPU"
	}
	for idx := 0; idx < n; idx++ {
		gpus = append(gpus, readGPU(lib, idx))
	}
	return gpus, StatusOK
}

// initStatus explains a failed Init in the words an operator would search for.
func initStatus(ret nvml.Return) string {
	var why string
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		why = "no NVIDIA driver"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		why = "NVIDIA driver not loaded"
	case nvml.ERROR_NO_PERMISSION:
		why = "no permission to use the NVIDIA driver"
	case nvml.ERROR_LIB_RM_VERSION_MISMATCH:
		why = "NVIDIA driver and library versions differ; reload the driver or reboot"
	default:
		why = "NVML failed to initialise"
	}
	return why + " (" + nvmlErr(ret) + ")"
}

// nvmlErr names a Return. With the library loaded the name comes from
// nvmlErrorString ("Not Supported"); without it, from go-nvml's own table
// ("ERROR_NOT_SUPPORTED"). Both are safe to call in either state.
func nvmlErr(ret nvml.Return) string {
	return "nvml: " + ret.Error()
}

// readGPU reads what it can about device idx; each failed reading becomes a
// note instead of dropping the GPU.
func readGPU(lib nvml.Interface, idx int) GPU {
	g := GPU{Index: idx}
	note := func(what string, ret nvml.Return) {
		g.Notes = append(g.Notes, what+": "+nvmlErr(ret))
	}

	d, ret := lib.DeviceGetHandleByIndex(idx)
	if ret == nvml.SUCCESS && d == nil {
		ret = nvml.ERROR_UNKNOWN
	}
	if ret != nvml.SUCCESS {
		note("handle", ret)
		return g
	}
	if name, ret := d.GetName(); ret == nvml.SUCCESS {
		g.Name = name
	} else {
		note("name", ret)
	}
	if uuid, ret := d.GetUUID(); ret == nvml.SUCCESS {
		g.UUID = uuid
	} else {
		note("uuid", ret)
	}
	if mem, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
		g.MemoryTotal, g.MemoryUsed = mem.Total, mem.Used
	} else {
		note("memory", ret)
	}
	if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
		g.UtilGPU, g.UtilMemory = u.Gpu, u.Memory
	} else {
		note("utilization", ret)
	}
	return g
}
