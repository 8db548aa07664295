package engine

import (
	"runtime"
	"sync"
)

// ranger is a loop over [lo, hi) whose iterations write disjoint memory,
// so that halves can run at once. The layers keep theirs in their plan
// (a pointer in an interface does not allocate), so that splitting a loop
// allocates nothing.
type ranger interface{ run(lo, hi int) }

// minSplit is the iterations below which a second goroutine costs more
// than it saves; the loops split here do at least a few hundred floats'
// work an iteration.
const minSplit = 4

// split runs r over [0, n): in two halves at once, the second on a pool
// goroutine, where GOMAXPROCS allows; on the caller alone otherwise. Every
// iteration computes the same values either way, so the result does not
// depend on the thread count.
func split(r ranger, n int) {
	if n < minSplit || runtime.GOMAXPROCS(0) < 2 {
		r.run(0, n)
		return
	}
	helperOnce.Do(func() { go helperLoop() })
	wg := waitGroups.Get().(*sync.WaitGroup)
	defer waitGroups.Put(wg)
	wg.Add(1)
	mid := n / 2
	select {
	case helperJobs <- job{r: r, lo: mid, hi: n, done: wg}:
	default: // the helper is busy with another model's loop
		r.run(mid, n)
		wg.Done()
	}
	r.run(0, mid)
	wg.Wait()
}

// job is the helper's half of a split loop.
type job struct {
	r      ranger
	lo, hi int
	done   *sync.WaitGroup
}

// The helper: one long-lived goroutine fed through an unbuffered channel,
// as trainer/kernels' sgemm workers are. A caller that finds it busy (two
// models stepping at once) runs both halves itself.
var (
	helperJobs = make(chan job)
	helperOnce sync.Once
	waitGroups = sync.Pool{New: func() any { return new(sync.WaitGroup) }}
)

func helperLoop() {
	for j := range helperJobs {
		j.r.run(j.lo, j.hi)
		j.done.Done()
	}
}
