//go:build !unix

package trainer

import "os"

// mapFile reads path whole where this build has no mmap: correct, but
// every process holds its own copy.
func mapFile(path string) ([]byte, error) { return os.ReadFile(path) }

func unmapFile([]byte) {}
