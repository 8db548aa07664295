package allreduce

// Kept buffers. Every round a member keeps the bytes of every part's
// average (for digests and repairs, keepResults rounds back): the whole
// vector's worth. Fresh memory each round costs a page fault per 4 KiB on
// first touch, which on the virtual machines this was measured on was the
// largest single cost of a loopback all-reduce. So kept buffers are
// recycled: each is counted by its users (the results table, an owner's
// streams sending from it, a repair answer), all under Averager.mu, and
// goes back to the averager's spares when the last one lets go.

// keptBuf is one part's kept average and its users.
type keptBuf struct {
	b    []byte
	refs int
}

// maxSpares caps the buffers an averager keeps for reuse: a round uses
// one per member.
const maxSpares = 64

// newKept returns a buffer of capacity at least n, empty, with one user.
func (a *Averager) newKept(n int) *keptBuf {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, b := range a.spares {
		if cap(b) >= n {
			last := len(a.spares) - 1
			a.spares[i], a.spares[last] = a.spares[last], nil
			a.spares = a.spares[:last]
			return &keptBuf{b: b[:0], refs: 1}
		}
	}
	return &keptBuf{b: make([]byte, 0, n), refs: 1}
}

// holdLocked adds a user to kb (nil: none); a.mu must be held.
func (a *Averager) holdLocked(kb *keptBuf) {
	if kb != nil {
		kb.refs++
	}
}

// dropLocked removes a user from kb (nil: none), and spares its buffer
// once it has none; a.mu must be held.
func (a *Averager) dropLocked(kb *keptBuf) {
	if kb == nil {
		return
	}
	if kb.refs--; kb.refs > 0 {
		return
	}
	if kb.refs < 0 {
		panic("allreduce: kept buffer released twice")
	}
	if len(a.spares) < maxSpares && cap(kb.b) > 0 {
		a.spares = append(a.spares, kb.b[:0])
	}
	kb.b = nil
}

func (a *Averager) drop(kb *keptBuf) {
	a.mu.Lock()
	a.dropLocked(kb)
	a.mu.Unlock()
}
