package main

import (
	"fmt"
	"time"
)

// etaClock estimates the time left in a run from the steps it has seen
// go by, so the estimate follows the swarm's real pace (peers joining,
// rounds waiting) rather than one machine's speed. It keeps the first
// step it saw after training started: the mean rate since then.
type etaClock struct {
	t0    time.Time
	step0 int
	ok    bool
}

// observe records step of steps at now and says how long the rest
// should take: "?" until two distinct steps were seen.
func (e *etaClock) observe(now time.Time, step, steps int) string {
	if !e.ok || step < e.step0 {
		// First sight, or a restart from an older state: start over.
		e.t0, e.step0, e.ok = now, step, true
		return "?"
	}
	d, ok := eta(step-e.step0, now.Sub(e.t0), steps-step)
	if !ok {
		return "?"
	}
	return fmtETA(d)
}

// eta is the time left for left steps when done steps took took.
func eta(done int, took time.Duration, left int) (time.Duration, bool) {
	if done <= 0 || took <= 0 {
		return 0, false
	}
	if left <= 0 {
		return 0, true
	}
	return time.Duration(float64(took) / float64(done) * float64(left)), true
}

// fmtETA writes d to the second, or the minute beyond an hour: 45s,
// 12m05s, 3h20m.
func fmtETA(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}
