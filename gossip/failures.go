package gossip

import (
	"errors"
	"fmt"
	"sort"

	"github.com/libp2p/go-libp2p/core/peer"
)

// JoinFailures joins the error of each peer in failed, each prefixed
// with its peer's short ID, in the order of the peers' IDs: the same
// failures read the same in every log line and error. Nil when failed
// is empty.
func JoinFailures(failed map[peer.ID]error) error {
	ps := make([]peer.ID, 0, len(failed))
	for p := range failed {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	var errs []error
	for _, p := range ps {
		errs = append(errs, fmt.Errorf("%s: %w", p.ShortString(), failed[p]))
	}
	return errors.Join(errs...)
}
