//go:build !linux

package trainer

import "os"

// readAhead is a no-op where posix_fadvise is missing: reads wait for the disk.
func readAhead(*os.File, int64, int64) {}
