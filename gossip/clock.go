package gossip

import "github.com/filecoin-project/go-clock"

// The protocols read time only through a clock.Clock (configs' Clock
// fields; nil means the wall clock), so tests can drive timeouts, join
// windows and round deadlines with clock.NewMock() and advance it
// explicitly instead of waiting for real time to pass.

var wallClock = clock.New()

// orWall returns c, or the wall clock when c is nil.
func orWall(c clock.Clock) clock.Clock {
	if c == nil {
		return wallClock
	}
	return c
}
