package gossip

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// authorLimiter allows each message author rate messages per second with
// bursts of burst, and tracks at most maxAuthors authors: a flood of
// fresh keys cannot grow it without bound. It reads no clock (callers
// pass now) and is not safe for concurrent use.
type authorLimiter struct {
	rate, burst float64
	maxAuthors  int
	authors     map[peer.ID]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newAuthorLimiter(rate, burst float64, maxAuthors int) *authorLimiter {
	return &authorLimiter{rate: rate, burst: burst, maxAuthors: maxAuthors, authors: map[peer.ID]*bucket{}}
}

// allow reports whether one more message from author fits its budget at
// now, and spends it if so. When the table is full, authors whose budget
// has refilled (idle ones) are forgotten; a new author that still finds
// no room is refused until some do.
func (l *authorLimiter) allow(author peer.ID, now time.Time) bool {
	b := l.authors[author]
	if b == nil {
		if len(l.authors) >= l.maxAuthors {
			l.forgetIdle(now)
			if len(l.authors) >= l.maxAuthors {
				return false
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.authors[author] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *authorLimiter) refill(b *bucket, now time.Time) {
	if dt := now.Sub(b.at).Seconds(); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.rate)
		b.at = now
	}
}

func (l *authorLimiter) forgetIdle(now time.Time) {
	for a, b := range l.authors {
		if l.refill(b, now); b.tokens >= l.burst {
			delete(l.authors, a)
		}
	}
}
