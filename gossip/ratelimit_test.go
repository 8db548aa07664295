package gossip

import (
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// An author gets its burst at once, then rate per second; others are not
// affected.
func TestAuthorLimiterBudget(t *testing.T) {
	l := newAuthorLimiter(10, 20, 8)
	a, b := testutil.PeerID(1), testutil.PeerID(2)
	now := time.Unix(1000, 0)
	n := 0
	for range 100 {
		if l.allow(a, now) {
			n++
		}
	}
	if n != 20 {
		t.Fatalf("a burst let %d messages through, want 20", n)
	}
	if !l.allow(b, now) {
		t.Fatal("another author was refused while one was over its budget")
	}
	now = now.Add(time.Second)
	n = 0
	for range 100 {
		if l.allow(a, now) {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("a second later %d messages went through, want the rate, 10", n)
	}
}

// The table holds at most maxAuthors: a flood of fresh keys is refused
// while the known authors are active, and idle authors make room.
func TestAuthorLimiterCapsAuthors(t *testing.T) {
	l := newAuthorLimiter(10, 20, 4)
	now := time.Unix(1000, 0)
	for i := range 4 {
		if !l.allow(testutil.PeerID(i), now) {
			t.Fatalf("author %d refused below the cap", i)
		}
	}
	for i := 4; i < 100; i++ {
		if l.allow(testutil.PeerID(i), now) {
			t.Fatalf("author %d admitted past the cap of 4", i)
		}
	}
	if len(l.authors) != 4 {
		t.Fatalf("the table holds %d authors, want 4", len(l.authors))
	}
	if !l.allow(testutil.PeerID(0), now) {
		t.Fatal("a known author was refused")
	}
	now = now.Add(10 * time.Second) // every known author's budget refilled: idle
	if !l.allow(testutil.PeerID(50), now) {
		t.Fatal("a new author was refused once the known ones were idle")
	}
}
