//go:build unix

package engine

import "syscall"

// cpuSeconds is the process's user and system CPU time: on a machine
// shared with other jobs a step's CPU time moves far less than its wall
// time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
