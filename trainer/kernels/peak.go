package kernels

import "time"

// Peak measures this core's single-precision FMA throughput in GFLOP/s,
// spending about d, with the widest vector unit the CPU has (the loop keeps
// more independent FMAs in flight than any core's latency × ports), and
// names that unit. It returns 0, "" where no loop exists for the CPU (the
// portable build). It reports the best of many ~2 ms rounds: on a shared
// machine the others' load only ever lowers a round, so the best is the
// core's own ceiling.
func Peak(d time.Duration) (gflops float64, unit string) {
	if len(peaks) == 0 {
		return 0, ""
	}
	p := peaks[0]
	n := 1 << 10
	for { // size a round to about 2 ms; this also powers the unit up
		start := time.Now()
		p.fn(n)
		if time.Since(start) >= 2*time.Millisecond {
			break
		}
		n *= 2
	}
	var best float64
	for end := time.Now().Add(d); ; {
		start := time.Now()
		p.fn(n)
		best = max(best, float64(n)*float64(p.flops)/time.Since(start).Seconds()/1e9)
		if !start.Before(end) {
			return best, p.name
		}
	}
}
