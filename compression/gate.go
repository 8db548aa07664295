package compression

import (
	"sync"
	"time"
)

// Gate decides, frame by frame, whether the lossless stage pays on a link.
// Compressing B bytes at speed E to B/ρ and sending them at link rate L
// beats sending them raw when B/E + B/(ρL) < B/L, that is when
//
//	L < E·(1 − 1/ρ).
//
// On a fast link (or for noise that does not shrink, ρ ≈ 1) the stage only
// costs time; on a slow one it saves it. E and ρ are measured on the frames
// the stage runs on; while it is skipped, every probeEvery-th frame still
// runs it, so a change of data or link is noticed. The zero Gate is ready.
type Gate struct {
	mu      sync.Mutex
	speed   float64 // EWMA of raw bytes per second through the stage
	ratio   float64 // EWMA of raw / compressed bytes
	skipped int
}

const (
	probeEvery = 16
	gateAlpha  = 0.25
)

// Use reports whether to run the stage for the next frame on a link that
// moves link bytes per second (0: not measured yet, run it).
func (g *Gate) Use(link float64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if link <= 0 || g.speed == 0 || link < g.speed*(1-1/g.ratio) {
		g.skipped = 0
		return true
	}
	g.skipped++
	if g.skipped >= probeEvery {
		g.skipped = 0
		return true
	}
	return false
}

// Observe records what the stage did on one frame (zero stats are ignored).
func (g *Gate) Observe(st StageStats) {
	if st.Raw <= 0 || st.Out <= 0 {
		return
	}
	speed := float64(st.Raw) / max(st.Took, time.Microsecond).Seconds()
	ratio := max(float64(st.Raw)/float64(st.Out), 1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.speed == 0 {
		g.speed, g.ratio = speed, ratio
		return
	}
	g.speed += gateAlpha * (speed - g.speed)
	g.ratio += gateAlpha * (ratio - g.ratio)
}
