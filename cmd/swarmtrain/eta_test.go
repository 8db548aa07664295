package main

import (
	"testing"
	"time"
)

func TestETA(t *testing.T) {
	var e etaClock
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		after time.Duration
		step  int
		want  string
	}{
		{0, 100, "?"},                     // first sight: no pace yet
		{2 * time.Second, 100, "?"},       // no step since
		{10 * time.Second, 110, "14m50s"}, // 1 s a step, 890 left
		{20 * time.Second, 120, "14m40s"},
		{30 * time.Second, 50, "?"}, // restarted from an older state
		{40 * time.Second, 60, "15m40s"},
	}
	for _, s := range steps {
		if got := e.observe(t0.Add(s.after), s.step, 1000); got != s.want {
			t.Errorf("at %v step %d: ETA %s, want %s", s.after, s.step, got, s.want)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0s", 59 * time.Second: "59s", 61 * time.Second: "1m01s", 3*time.Hour + 20*time.Minute + 29*time.Second: "3h20m",
	} {
		if got := fmtETA(d); got != want {
			t.Errorf("fmtETA(%v) = %s, want %s", d, got, want)
		}
	}
	if d, ok := eta(10, 10*time.Second, 0); !ok || d != 0 {
		t.Errorf("no steps left: %v %v", d, ok)
	}
}
