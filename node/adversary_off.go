//go:build !adversary

package node

import (
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/statesync"
)

// adversary is the malicious peer of the security tests, compiled in
// only with -tags adversary (adversary.go); here every hook is a no-op.
type adversary struct{}

func loadAdversary() (*adversary, error) { return nil, nil }

func (*adversary) gradient(uint64, []float32)   {}
func (*adversary) heartbeat(*gossip.Heartbeat)  {}
func (*adversary) snapshot(*statesync.Snapshot) {}

func (*adversary) dataNet(t gossip.Transport) gossip.Transport { return t }
