package engine

import "sync"

// minSplit is the iterations below which a second goroutine costs more
// than it saves; the loops split here do at least a few hundred floats'
// work an iteration.
const minSplit = 4

// split runs r over [0, n) on the worker pool (parallel), in chunks of
// at least minSplit/2 iterations. Every iteration computes the same
// values however the loop is cut, so the result does not depend on the
// thread count.
func split(r ranger, n int) {
	if n < minSplit {
		r.run(0, n)
		return
	}
	wg := waitGroups.Get().(*sync.WaitGroup)
	defer waitGroups.Put(wg)
	parallel(n, minSplit/2, r, wg)
}

var waitGroups = sync.Pool{New: func() any { return new(sync.WaitGroup) }}

// splitUnless is split, or r over [0, n) on this goroutine when serial.
func splitUnless(serial bool, r ranger, n int) {
	if serial {
		r.run(0, n)
		return
	}
	split(r, n)
}
