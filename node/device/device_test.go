package device

import (
	"runtime"
	"strings"
	"testing"
)

// TestDetectSurvives is the regression test for the NVML trap: on a machine
// without the driver, any NVML call after the failed Init ends the process
// with exit 127, which no recover catches and which fails this whole binary.
// On a GPU machine it checks the same contract from the other side.
func TestDetectSurvives(t *testing.T) {
	i := Detect()
	t.Logf("summary: %s", i.Summary())
	if i.Cores <= 0 {
		t.Errorf("Cores = %d, want > 0", i.Cores)
	}
	if i.CPUModel == "" {
		t.Error("CPUModel is empty")
	}
	if i.OS != runtime.GOOS || i.Arch != runtime.GOARCH {
		t.Errorf("OS/Arch = %s/%s, want %s/%s", i.OS, i.Arch, runtime.GOOS, runtime.GOARCH)
	}
	if len(i.GPUs) > 0 {
		if i.GPUStatus != StatusOK {
			t.Errorf("%d GPUs but GPUStatus = %q, want %q", len(i.GPUs), i.GPUStatus, StatusOK)
		}
		return
	}
	if i.GPUStatus == "" || i.GPUStatus == StatusOK {
		t.Errorf("no GPUs but GPUStatus = %q; want the reason", i.GPUStatus)
	}
	// Detect must leave NVML usable: a second call sees the same thing.
	if j := Detect(); j.GPUStatus != i.GPUStatus || len(j.GPUs) != 0 {
		t.Errorf("second Detect: %d GPUs, status %q; first: none, %q", len(j.GPUs), j.GPUStatus, i.GPUStatus)
	}
}

func TestParseCPUInfo(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"x86", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R45 96-Core Processor\nmodel\t\t: 17\nprocessor\t: 1\nmodel name\t: other\n",
			"AMD EPYC 9R45 96-Core Processor"},
		{"spaces collapsed", "model name\t:   Intel(R) Xeon(R)   CPU @ 2.20GHz  \n", "Intel(R) Xeon(R) CPU @ 2.20GHz"},
		{"arm64 has none", "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n", ""},
		{"empty", "", ""},
		{"capped", "model name: " + strings.Repeat("x", 200) + "\n", strings.Repeat("x", maxCPUModel)},
	} {
		if got := parseCPUInfo([]byte(tc.in)); got != tc.want {
			t.Errorf("%s: parseCPUInfo = %q, want %q", tc.name, got, tc.want)
		}
	}
}

const gib = 1 << 30

func testHost() Info {
	return Info{CPUModel: "AMD EPYC 9R45", Cores: 2, OS: "linux", Arch: "amd64"}
}

func TestSummary(t *testing.T) {
	h100 := GPU{Name: "NVIDIA H100 80GB HBM3", MemoryTotal: 80 * gib}
	a100 := GPU{Name: "NVIDIA A100-SXM4-40GB", MemoryTotal: 40 * gib}
	small := GPU{Name: "Tiny", MemoryTotal: 6 * gib / 4}
	real := GPU{Name: "NVIDIA H100 80GB HBM3", MemoryTotal: 81559 << 20} // what a real H100 reports

	withGPUs := func(g ...GPU) Info { i := testHost(); i.GPUs, i.GPUStatus = g, StatusOK; return i }
	noGPU := testHost()
	noGPU.GPUStatus = "no NVIDIA driver (nvml: ERROR_LIBRARY_NOT_FOUND)"
	oneCore := noGPU
	oneCore.Cores = 1
	unknown := withGPUs(GPU{Index: 0, Notes: []string{"handle: nvml: ERROR_UNKNOWN"}})

	for _, tc := range []struct {
		name string
		in   Info
		want string
	}{
		{"no gpu", noGPU, "AMD EPYC 9R45 (2 cores, linux/amd64), no GPU: no NVIDIA driver (nvml: ERROR_LIBRARY_NOT_FOUND)"},
		{"one core", oneCore, "AMD EPYC 9R45 (1 core, linux/amd64), no GPU: no NVIDIA driver (nvml: ERROR_LIBRARY_NOT_FOUND)"},
		{"zero info", Info{}, " (0 cores, /), no GPU: none found"},
		{"one gpu", withGPUs(h100), "AMD EPYC 9R45 (2 cores, linux/amd64), 1 GPU: NVIDIA H100 80GB HBM3 (80 GiB)"},
		{"real h100 rounds", withGPUs(real), "AMD EPYC 9R45 (2 cores, linux/amd64), 1 GPU: NVIDIA H100 80GB HBM3 (80 GiB)"},
		{"small memory", withGPUs(small), "AMD EPYC 9R45 (2 cores, linux/amd64), 1 GPU: Tiny (1.5 GiB)"},
		{"grouped", withGPUs(h100, a100, h100), "AMD EPYC 9R45 (2 cores, linux/amd64), 3 GPUs: 2x NVIDIA H100 80GB HBM3 (80 GiB), NVIDIA A100-SXM4-40GB (40 GiB)"},
		{"unreadable", unknown, "AMD EPYC 9R45 (2 cores, linux/amd64), 1 GPU: unknown GPU"},
		{"capped", withGPUs(h100, a100, small, GPU{Name: "D"}, GPU{Name: "E"}, GPU{Name: "D"}),
			"AMD EPYC 9R45 (2 cores, linux/amd64), 6 GPUs: NVIDIA H100 80GB HBM3 (80 GiB), NVIDIA A100-SXM4-40GB (40 GiB), Tiny (1.5 GiB), +3 more"},
	} {
		if got := tc.in.Summary(); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestSummaryFitsHeartbeat checks the bound that lets Summary travel in a
// heartbeat's 512-byte device field, with the longest names NVML and our
// CPU parser can produce.
func TestSummaryFitsHeartbeat(t *testing.T) {
	i := testHost()
	i.CPUModel = strings.Repeat("c", maxCPUModel)
	i.GPUStatus = StatusOK
	for k := 0; k < 64; k++ {
		i.GPUs = append(i.GPUs, GPU{Index: k, Name: strings.Repeat(string(rune('a'+k%26)), 96), MemoryTotal: 1 << 50})
	}
	if n := len(i.Summary()); n > 512 {
		t.Errorf("Summary is %d bytes, want <= 512: %s", n, i.Summary())
	}
}

func TestTable(t *testing.T) {
	noGPU := testHost()
	noGPU.GPUStatus = "GPU detection needs a cgo build"
	wantNoGPU := "" +
		"CPU     AMD EPYC 9R45\n" +
		"Cores   2\n" +
		"System  linux/amd64\n" +
		"GPUs    none: GPU detection needs a cgo build\n"
	if got := noGPU.Table(); got != wantNoGPU {
		t.Errorf("no GPU:\n got:\n%s\nwant:\n%s", got, wantNoGPU)
	}

	two := testHost()
	two.GPUStatus = StatusOK
	two.GPUs = []GPU{
		{Index: 0, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-aaaa", MemoryTotal: 80 * gib, MemoryUsed: gib / 2, UtilGPU: 97, UtilMemory: 41},
		{Index: 1, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-bbbb", MemoryTotal: 80 * gib,
			Notes: []string{"utilization: nvml: ERROR_NOT_SUPPORTED"}},
		{Index: 2, Notes: []string{"handle: nvml: ERROR_GPU_IS_LOST"}},
	}
	want := "" +
		"CPU     AMD EPYC 9R45\n" +
		"Cores   2\n" +
		"System  linux/amd64\n" +
		"GPUs    3\n" +
		"\n" +
		"INDEX  NAME                   MEMORY USED/TOTAL  UTIL GPU/MEM  UUID\n" +
		"0      NVIDIA H100 80GB HBM3  0.5/80.0 GiB       97%/41%       GPU-aaaa\n" +
		"1      NVIDIA H100 80GB HBM3  0.0/80.0 GiB       0%/0%         GPU-bbbb\n" +
		"2      unknown GPU            0.0/0.0 GiB        0%/0%         -\n" +
		"GPU 1: utilization: nvml: ERROR_NOT_SUPPORTED\n" +
		"GPU 2: handle: nvml: ERROR_GPU_IS_LOST\n"
	if got := two.Table(); got != want {
		t.Errorf("GPUs:\n got:\n%s\nwant:\n%s", got, want)
	}
}
