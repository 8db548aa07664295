package device

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

// maxSummaryGroups bounds how many distinct GPU models Summary names, so
// that the line fits a heartbeat's 512-byte device field: three NVML names
// (at most 96 bytes each) plus a 64-byte CPU name stay well inside it.
const maxSummaryGroups = 3

// Summary describes the machine in one line for logs and heartbeats, e.g.
// "AMD EPYC 9R45 (2 cores, linux/amd64), no GPU: no NVIDIA driver (nvml: ERROR_LIBRARY_NOT_FOUND)"
// or "Intel Xeon (32 cores, linux/amd64), 8 GPUs: 8x NVIDIA H100 80GB HBM3 (80 GiB)".
// Identical GPUs are counted once; beyond three models the rest are "+N more".
func (i Info) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, %s/%s)", i.CPUModel, plural(i.Cores, "core"), i.OS, i.Arch)
	if len(i.GPUs) == 0 {
		fmt.Fprintf(&b, ", no GPU: %s", i.noGPUReason())
		return b.String()
	}
	fmt.Fprintf(&b, ", %s: ", plural(len(i.GPUs), "GPU"))

	// Group identical models in first-seen order.
	var labels []string
	count := map[string]int{}
	for _, g := range i.GPUs {
		l := g.label()
		if count[l] == 0 {
			labels = append(labels, l)
		}
		count[l]++
	}
	rest := len(i.GPUs)
	for k, l := range labels {
		if k == maxSummaryGroups {
			fmt.Fprintf(&b, ", +%d more", rest)
			break
		}
		if k > 0 {
			b.WriteString(", ")
		}
		if count[l] > 1 {
			fmt.Fprintf(&b, "%dx ", count[l])
		}
		b.WriteString(l)
		rest -= count[l]
	}
	return b.String()
}

// Table describes the machine over several lines for `swarmtrain devices`:
// the host, then one row per GPU, then any readings NVML refused.
func (i Info) Table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "CPU\t%s\n", i.CPUModel)
	fmt.Fprintf(w, "Cores\t%d\n", i.Cores)
	fmt.Fprintf(w, "System\t%s/%s\n", i.OS, i.Arch)
	if len(i.GPUs) == 0 {
		fmt.Fprintf(w, "GPUs\tnone: %s\n", i.noGPUReason())
		w.Flush()
		return b.String()
	}
	fmt.Fprintf(w, "GPUs\t%d\n", len(i.GPUs))
	w.Flush()

	b.WriteString("\n")
	w = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "INDEX\tNAME\tMEMORY USED/TOTAL\tUTIL GPU/MEM\tUUID")
	for _, g := range i.GPUs {
		fmt.Fprintf(w, "%d\t%s\t%.1f/%.1f GiB\t%d%%/%d%%\t%s\n",
			g.Index, g.name(), toGiB(g.MemoryUsed), toGiB(g.MemoryTotal),
			g.UtilGPU, g.UtilMemory, orDash(g.UUID))
	}
	w.Flush()

	for _, g := range i.GPUs {
		for _, n := range g.Notes {
			fmt.Fprintf(&b, "GPU %d: %s\n", g.Index, n)
		}
	}
	return b.String()
}

// noGPUReason is GPUStatus, or a placeholder for an Info not made by Detect.
func (i Info) noGPUReason() string {
	if i.GPUStatus == "" || i.GPUStatus == StatusOK {
		return "none found"
	}
	return i.GPUStatus
}

// name is the GPU's name, or a placeholder when NVML could not read it.
func (g GPU) name() string {
	if g.Name == "" {
		return "unknown GPU"
	}
	return g.Name
}

// label is how Summary names a model: "NVIDIA H100 80GB HBM3 (80 GiB)".
func (g GPU) label() string {
	if g.MemoryTotal == 0 {
		return g.name()
	}
	gib := toGiB(g.MemoryTotal)
	if gib >= 10 {
		return fmt.Sprintf("%s (%.0f GiB)", g.name(), gib)
	}
	return fmt.Sprintf("%s (%.1f GiB)", g.name(), gib)
}

func toGiB(bytes uint64) float64 { return float64(bytes) / (1 << 30) }

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
