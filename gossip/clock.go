package gossip

import "github.com/filecoin-project/go-clock"

// The protocols read time only through a clock.Clock (configs' Clock
// fields; nil means the wall clock), so tests can drive timeouts, join
// windows and round deadlines with clock.NewMock() and advance it
// explicitly instead of waiting for real time to pass.

var wallClock = clock.New()

// OrWall returns c, or the wall clock when c is nil: every protocol's
// Clock field means the wall clock when left nil.
func OrWall(c clock.Clock) clock.Clock {
	if c == nil {
		return wallClock
	}
	return c
}
