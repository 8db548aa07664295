//go:build cgo

package device

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// The mocks panic on any method whose Func field is nil, so a mock that
// leaves a method unset also asserts that it is never called.

func TestDetectWithDGXH100(t *testing.T) {
	s := dgxh100.New()
	// The fixture leaves GetUtilizationRates unset (calling it would panic);
	// give every device a reading, and make one GPU refuse it.
	for k, d := range s.Devices {
		md := d.(*server.Device)
		md.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			if k == 3 {
				return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
			}
			return nvml.Utilization{Gpu: uint32(10 * k), Memory: uint32(k)}, nvml.SUCCESS
		}
	}

	info := DetectWith(s)
	if info.GPUStatus != StatusOK {
		t.Fatalf("GPUStatus = %q, want %q", info.GPUStatus, StatusOK)
	}
	if len(info.GPUs) != 8 {
		t.Fatalf("got %d GPUs, want 8", len(info.GPUs))
	}
	uuids := map[string]bool{}
	for k, g := range info.GPUs {
		if g.Index != k || g.Name != "NVIDIA H100 80GB HBM3" || g.MemoryTotal != 80<<30 || g.MemoryUsed != 0 {
			t.Errorf("GPU %d = %+v", k, g)
		}
		if !strings.HasPrefix(g.UUID, "GPU-") || uuids[g.UUID] {
			t.Errorf("GPU %d UUID %q is malformed or repeated", k, g.UUID)
		}
		uuids[g.UUID] = true
		wantNotes := 0
		if k == 3 {
			wantNotes = 1
		} else if g.UtilGPU != uint32(10*k) || g.UtilMemory != uint32(k) {
			t.Errorf("GPU %d utilization = %d/%d, want %d/%d", k, g.UtilGPU, g.UtilMemory, 10*k, k)
		}
		if len(g.Notes) != wantNotes {
			t.Errorf("GPU %d notes = %q, want %d", k, g.Notes, wantNotes)
		}
	}
	if n := info.GPUs[3].Notes; len(n) == 1 && n[0] != "utilization: nvml: "+nvml.ERROR_NOT_SUPPORTED.Error() {
		t.Errorf("GPU 3 note = %q", n[0])
	}
	if got := len(s.ShutdownCalls()); got != 1 {
		t.Errorf("Shutdown called %d times, want 1", got)
	}
	want := ", 8 GPUs: 8x NVIDIA H100 80GB HBM3 (80 GiB)"
	if got := info.Summary(); !strings.HasSuffix(got, want) {
		t.Errorf("Summary = %q, want suffix %q", got, want)
	}
}

// TestDetectWithInitFails is the mock half of the exit-127 regression: after
// a failed Init nothing else may be called, not even Shutdown.
func TestDetectWithInitFails(t *testing.T) {
	for _, tc := range []struct {
		ret nvml.Return
		why string
	}{
		{nvml.ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver"},
		{nvml.ERROR_DRIVER_NOT_LOADED, "NVIDIA driver not loaded"},
		{nvml.ERROR_NO_PERMISSION, "no permission to use the NVIDIA driver"},
		{nvml.ERROR_UNKNOWN, "NVML failed to initialise"},
	} {
		m := &mock.Interface{
			InitFunc: func() nvml.Return { return tc.ret },
			ShutdownFunc: func() nvml.Return {
				t.Fatal("Shutdown called after a failed Init")
				return nvml.SUCCESS
			},
			DeviceGetCountFunc: func() (int, nvml.Return) {
				t.Fatal("DeviceGetCount called after a failed Init")
				return 0, nvml.SUCCESS
			},
			DeviceGetHandleByIndexFunc: func(int) (nvml.Device, nvml.Return) {
				t.Fatal("DeviceGetHandleByIndex called after a failed Init")
				return nil, nvml.SUCCESS
			},
		}
		info := DetectWith(m)
		want := tc.why + " (nvml: " + tc.ret.Error() + ")"
		if len(info.GPUs) != 0 || info.GPUStatus != want {
			t.Errorf("Init %d: %d GPUs, status %q; want none, %q", int32(tc.ret), len(info.GPUs), info.GPUStatus, want)
		}
		if info.Cores <= 0 || info.CPUModel == "" {
			t.Errorf("Init %d: host not filled in: %+v", int32(tc.ret), info)
		}
		if len(m.InitCalls()) != 1 {
			t.Errorf("Init called %d times, want 1", len(m.InitCalls()))
		}
	}
}

func TestDetectWithNoDevices(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		ret    nvml.Return
		status string
	}{
		{"count fails", 0, nvml.ERROR_UNKNOWN, "NVIDIA driver could not count GPUs (nvml: " + nvml.ERROR_UNKNOWN.Error() + ")"},
		{"zero GPUs", 0, nvml.SUCCESS, "NVIDIA driver loaded but sees no GPU"},
	} {
		m := &mock.Interface{
			InitFunc:           func() nvml.Return { return nvml.SUCCESS },
			ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
			DeviceGetCountFunc: func() (int, nvml.Return) { return tc.n, tc.ret },
		}
		info := DetectWith(m)
		if len(info.GPUs) != 0 || info.GPUStatus != tc.status {
			t.Errorf("%s: %d GPUs, status %q; want none, %q", tc.name, len(info.GPUs), info.GPUStatus, tc.status)
		}
		if got := len(m.ShutdownCalls()); got != 1 {
			t.Errorf("%s: Shutdown called %d times, want 1", tc.name, got)
		}
	}
}

// TestDetectWithFailedReadings checks that no failed reading drops a GPU.
func TestDetectWithFailedReadings(t *testing.T) {
	good := &mock.Device{
		GetNameFunc: func() (string, nvml.Return) { return "NVIDIA L4", nvml.SUCCESS },
		GetUUIDFunc: func() (string, nvml.Return) { return "GPU-0000", nvml.SUCCESS },
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: 24 << 30, Used: 1 << 30, Free: 23 << 30}, nvml.SUCCESS
		},
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 55, Memory: 12}, nvml.SUCCESS
		},
	}
	fail := func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
	bad := &mock.Device{
		GetNameFunc:       fail,
		GetUUIDFunc:       fail,
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_GPU_IS_LOST },
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
		},
	}
	m := &mock.Interface{
		InitFunc:           func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return 4, nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			switch i {
			case 0:
				return good, nvml.SUCCESS
			case 1:
				return bad, nvml.SUCCESS
			case 2:
				return nil, nvml.ERROR_INSUFFICIENT_POWER
			default:
				return nil, nvml.SUCCESS // a broken library; must not be dereferenced
			}
		},
	}

	info := DetectWith(m)
	if info.GPUStatus != StatusOK || len(info.GPUs) != 4 {
		t.Fatalf("status %q with %d GPUs, want %q with 4", info.GPUStatus, len(info.GPUs), StatusOK)
	}
	e := func(what string, r nvml.Return) string { return what + ": nvml: " + r.Error() }
	want := []GPU{
		{Index: 0, Name: "NVIDIA L4", UUID: "GPU-0000", MemoryTotal: 24 << 30, MemoryUsed: 1 << 30, UtilGPU: 55, UtilMemory: 12},
		{Index: 1, Notes: []string{
			e("name", nvml.ERROR_GPU_IS_LOST), e("uuid", nvml.ERROR_GPU_IS_LOST),
			e("memory", nvml.ERROR_GPU_IS_LOST), e("utilization", nvml.ERROR_NOT_SUPPORTED),
		}},
		{Index: 2, Notes: []string{e("handle", nvml.ERROR_INSUFFICIENT_POWER)}},
		{Index: 3, Notes: []string{e("handle", nvml.ERROR_UNKNOWN)}},
	}
	for k := range want {
		g, w := info.GPUs[k], want[k]
		if g.Index != w.Index || g.Name != w.Name || g.UUID != w.UUID || g.MemoryTotal != w.MemoryTotal ||
			g.MemoryUsed != w.MemoryUsed || g.UtilGPU != w.UtilGPU || g.UtilMemory != w.UtilMemory ||
			strings.Join(g.Notes, "|") != strings.Join(w.Notes, "|") {
			t.Errorf("GPU %d:\n got %+v\nwant %+v", k, g, w)
		}
	}
	if got := len(m.ShutdownCalls()); got != 1 {
		t.Errorf("Shutdown called %d times, want 1", got)
	}
}
