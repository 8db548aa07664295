package device

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strings"
)

// maxCPUModel caps the CPU name so that Summary stays short enough for a
// heartbeat whatever /proc/cpuinfo holds; x86 brand strings are 48 bytes.
const maxCPUModel = 64

// cpuModel names the CPU, falling back to runtime.GOARCH where the OS has
// no /proc/cpuinfo or the file has no "model name" (arm64 Linux, for one).
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	if m := parseCPUInfo(b); m != "" {
		return m
	}
	return runtime.GOARCH
}

// parseCPUInfo returns the first "model name" value in a /proc/cpuinfo
// dump, with runs of spaces collapsed, or "" if there is none.
func parseCPUInfo(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "model name" {
			continue
		}
		val = strings.Join(strings.Fields(val), " ")
		if len(val) > maxCPUModel {
			val = strings.TrimSpace(strings.ToValidUTF8(val[:maxCPUModel], ""))
		}
		return val
	}
	return ""
}
