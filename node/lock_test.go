//go:build unix

package node

import (
	"strings"
	"testing"
)

// Two nodes may not share a directory (they would share an identity).
func TestNodeDirIsExclusive(t *testing.T) {
	cfg := testConfig(t)
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "in use by another node") {
		t.Fatalf("second node on the same dir: got %v", err)
	}
	first.net.Close()
	first.unlock()
	second, err := New(cfg)
	if err != nil {
		t.Fatalf("dir still locked after the first node closed: %v", err)
	}
	if second.ID() != first.ID() {
		t.Fatal("same directory, different identity")
	}
	second.net.Close()
	second.unlock()
}
