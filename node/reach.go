package node

import "github.com/libp2p/go-libp2p/core/network"

// ClientMode says whether a node runs as a client and why. A client owns
// no part of the all-reduce and is never a round's assembler or a state
// donor: every other peer would have to dial it. It still trains and
// sends its gradients to the part owners, over connections it dials.
// forced is --client; r is AutoNAT's verdict on the node's host.
//
// Unknown counts as reachable: AutoNAT tests only public addresses, so on
// a LAN or in a lab (private addresses everywhere) it never decides, and
// there every peer can dial every other. A node behind a home router
// starts as an owner and turns client within seconds, once peers have
// failed to dial its observed public address back; a round it owned in
// between fails and is retried like any churn.
func ClientMode(r network.Reachability, forced bool) (bool, string) {
	switch {
	case forced:
		return true, "--client given: this node sends its gradients to the part owners and owns no part"
	case r == network.ReachabilityPrivate:
		return true, "peers could not dial this machine (behind a NAT or firewall): it dials the part owners with its gradients, owns no part, and never assembles a round or serves state"
	case r == network.ReachabilityPublic:
		return false, "peers can dial this machine: it owns a part of each all-reduce, may assemble rounds and serve state"
	}
	return false, "no public address was tested (a LAN, or too few peers yet): it runs as an owner, which peers on its network can dial"
}

// ReachabilityName is how /status and doctor spell r.
func ReachabilityName(r network.Reachability) string {
	switch r {
	case network.ReachabilityPublic:
		return "public"
	case network.ReachabilityPrivate:
		return "private"
	}
	return "unknown"
}
