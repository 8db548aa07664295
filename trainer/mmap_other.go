//go:build !unix

package trainer

import "os"

// canAdvise is false: mapFile reads the file whole, so pages cannot be
// dropped, and a memory budget cannot be kept.
const canAdvise = false

// mapFile reads path whole where this build has no mmap: correct, but
// every process holds its own copy.
func mapFile(path string) ([]byte, *os.File, error) {
	b, err := os.ReadFile(path)
	return b, nil, err
}

func unmapFile([]byte) {}

func dropPages([]byte, int, int) {}
