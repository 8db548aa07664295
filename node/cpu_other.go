//go:build !unix

package node

import "time"

// processCPU is 0 where this build cannot read the process's CPU time.
func processCPU() time.Duration { return 0 }
