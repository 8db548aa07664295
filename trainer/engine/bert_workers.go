package engine

import (
	"runtime"
	"sync"
)

// ranger is a loop body over [lo, hi): a pointer to a job struct planned
// with the model, so that handing it to the pool allocates nothing.
type ranger interface{ run(lo, hi int) }

// span is one worker's share of a loop.
type span struct {
	job    ranger
	lo, hi int
	done   *sync.WaitGroup
}

// The pool: long-lived goroutines fed through an unbuffered channel, as
// kernels' Sgemm does. Jobs never call parallel themselves (they may
// call Sgemm, whose own pool is separate), so the pool cannot deadlock.
var (
	spans     = make(chan span)
	poolMu    sync.Mutex
	poolAlive int
)

func startPool(n int) {
	poolMu.Lock()
	defer poolMu.Unlock()
	for ; poolAlive < n; poolAlive++ {
		go func() {
			for s := range spans {
				s.job.run(s.lo, s.hi)
				s.done.Done()
			}
		}()
	}
}

// parallel runs job over [0, n) split into at most GOMAXPROCS chunks of
// at least grain iterations; the caller runs the last chunk. wg is the
// caller's, reused between calls.
func parallel(n, grain int, job ranger, wg *sync.WaitGroup) {
	workers := min(runtime.GOMAXPROCS(0), n/max(grain, 1))
	if workers <= 1 {
		job.run(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	startPool(workers - 1)
	lo := 0
	for ; lo+chunk < n; lo += chunk {
		wg.Add(1)
		spans <- span{job: job, lo: lo, hi: lo + chunk, done: wg}
	}
	job.run(lo, n)
	wg.Wait()
}
