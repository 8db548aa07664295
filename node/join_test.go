package node

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestJoinPlanBacksOff: a dead address is retried after 1, 2, 4 … s,
// capped at joinRetryMax, the last time at the deadline, never after.
func TestJoinPlanBacksOff(t *testing.T) {
	p := newJoinPlan([]string{"dead"}, nil, t0, 3*time.Minute)
	now := t0
	var waits []time.Duration
	for !p.over() {
		due := p.due(now)
		if len(due) == 0 {
			now = now.Add(p.wait(now))
			continue
		}
		if !slices.Equal(due, []string{"dead"}) {
			t.Fatalf("due at %v: %v", now.Sub(t0), due)
		}
		if d := p.due(now); len(d) != 0 {
			t.Fatalf("an address under way was due again: %v", d)
		}
		waits = append(waits, p.failed("dead", errors.New("connection refused"), false, now))
	}
	// 1+2+4+8+16+4×30 = 151 s; the next try would be at 181 s: 180 s.
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30, 30, 29, 0}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(waits, want) {
		t.Fatalf("retry waits %v, want %v", waits, want)
	}
	if now.Sub(t0) != 3*time.Minute {
		t.Fatalf("last dial at %v, want at the 3m deadline", now.Sub(t0))
	}
	if p.joined {
		t.Fatal("joined without a success")
	}
	err := p.err(3 * time.Minute)
	if !strings.Contains(err.Error(), "dead: 11 tries, last: connection refused") {
		t.Fatalf("error does not name the address, tries and cause: %v", err)
	}
}

// TestJoinPlanOneLiveIsEnough: with a dead and a live address, the live
// one's success ends the plan; the dead one is not dialled again.
func TestJoinPlanOneLiveIsEnough(t *testing.T) {
	p := newJoinPlan([]string{"dead", "live", "dead"}, []string{"live"}, t0, time.Minute)
	due := p.due(t0)
	if !slices.Equal(due, []string{"dead", "live"}) {
		t.Fatalf("first dials %v, want each address once", due)
	}
	p.failed("dead", errors.New("refused"), false, t0)
	p.succeeded("live")
	if !p.over() || len(p.due(t0.Add(time.Hour))) != 0 {
		t.Fatal("the plan dials on after a join")
	}
}

// TestJoinPlanDropsFinal: a refusal (another run) is not retried; with
// every address dropped the plan is over before its deadline.
func TestJoinPlanDropsFinal(t *testing.T) {
	p := newJoinPlan([]string{"other-run"}, nil, t0, time.Minute)
	p.due(t0)
	if w := p.failed("other-run", errors.New("refused"), true, t0); w != 0 {
		t.Fatalf("a final failure is retried in %v", w)
	}
	if !p.over() {
		t.Fatal("plan not over with its only address dropped")
	}
}

// TestJoinPlanSavedOnly: saved peers alone make no required plan, and
// the error counts them rather than listing them.
func TestJoinPlanSavedOnly(t *testing.T) {
	p := newJoinPlan(nil, []string{"a", "b"}, t0, time.Second)
	if p.required() {
		t.Fatal("saved peers alone are required")
	}
	p.due(t0)
	p.failed("a", errors.New("x"), false, t0)
	p.failed("b", errors.New("x"), false, t0)
	end := t0.Add(time.Second)
	if p.over() || len(p.due(end)) != 2 {
		t.Fatal("no last try at the deadline")
	}
	p.failed("a", errors.New("x"), false, end)
	p.failed("b", errors.New("x"), false, end)
	if !p.over() {
		t.Fatal("not over after the tries at the deadline")
	}
	if err := p.err(time.Second); !strings.Contains(err.Error(), "2 saved peers (2 tried)") {
		t.Fatalf("error: %v", err)
	}
	if !newJoinPlan([]string{"j"}, []string{"a"}, t0, time.Second).required() {
		t.Fatal("a --join address is not required")
	}
}

// TestJoinPlanWaitsForDialsUnderWay: the plan is not over while a dial
// is in flight, even past the deadline (its result may be a join).
func TestJoinPlanWaitsForDialsUnderWay(t *testing.T) {
	p := newJoinPlan([]string{"slow"}, nil, t0, time.Second)
	p.due(t0)
	if p.over() {
		t.Fatal("over while a dial is under way")
	}
	p.succeeded("slow")
	if !p.joined {
		t.Fatal("a late success was lost")
	}
}

// TestJoinPlanKeepsTheKeyHint: a handshake failure (a node on another
// key) is still named when the last try found nobody listening.
func TestJoinPlanKeepsTheKeyHint(t *testing.T) {
	p := newJoinPlan([]string{"a"}, nil, t0, time.Second)
	p.due(t0)
	p.failed("a", fmt.Errorf("EOF (%w)", errMaybeKey), false, t0)
	p.due(t0.Add(time.Second / 2))
	p.failed("a", errors.New("connection refused"), false, t0)
	if err := p.err(time.Second); !strings.Contains(err.Error(), "another swarm key") {
		t.Fatalf("error lost the key hint: %v", err)
	}
}
