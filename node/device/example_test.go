package device_test

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/node/device"
)

// A node detects once at start, logs the summary, and picks where to train.
func Example() {
	info := device.Detect()
	fmt.Println(info.Summary() != "")
	if len(info.GPUs) == 0 {
		fmt.Println("training on the CPU")
		return
	}
	for _, g := range info.GPUs {
		fmt.Printf("GPU %d: %s, %d MiB free\n", g.Index, g.Name, (g.MemoryTotal-g.MemoryUsed)>>20)
	}
}

func ExampleInfo_Summary() {
	info := device.Info{
		CPUModel: "AMD EPYC 9R45", Cores: 2, OS: "linux", Arch: "amd64",
		GPUStatus: device.StatusOK,
		GPUs:      []device.GPU{{Index: 0, Name: "NVIDIA H100 80GB HBM3", MemoryTotal: 80 << 30}},
	}
	fmt.Println(info.Summary())
	info.GPUs, info.GPUStatus = nil, "no NVIDIA driver (nvml: ERROR_LIBRARY_NOT_FOUND)"
	fmt.Println(info.Summary())
	// Output:
	// AMD EPYC 9R45 (2 cores, linux/amd64), 1 GPU: NVIDIA H100 80GB HBM3 (80 GiB)
	// AMD EPYC 9R45 (2 cores, linux/amd64), no GPU: no NVIDIA driver (nvml: ERROR_LIBRARY_NOT_FOUND)
}
