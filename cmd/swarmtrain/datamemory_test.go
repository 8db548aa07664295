package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/node"
)

func TestParseDataMemory(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "64MB": 64e6, "64MiB": 64 << 20, "1GiB": 1 << 30, "123456": 123456, "1.5 GB": 1.5e9} {
		got, err := parseMemory(in)
		if err != nil || got != want {
			t.Errorf("--data-memory %q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "-5MB", "64XB", "99999999EB"} {
		if _, err := parseMemory(in); err == nil || !strings.Contains(err.Error(), "--data-memory") || !strings.Contains(err.Error(), in) {
			t.Errorf("--data-memory %q: %v, want an error naming the flag and the value", in, err)
		}
	}
	// A demo's children get the parent's budget.
	args := dataArgs(node.Config{DataMemory: 64 << 20})
	if i := slices.Index(args, "--data-memory"); i < 0 || args[i+1] != "67108864" {
		t.Fatalf("child args %v, want --data-memory 67108864", args)
	}
}
