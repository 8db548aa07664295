package node

import (
	"cmp"
	"slices"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
)

// How others see a libp2p node (node.outsideNet): AutoNAT's verdict, the
// addresses peers observe, and how each connection was made.

func (t *hostNetwork) Reachability() network.Reachability { return t.h.Reachability() }

func (t *hostNetwork) ObservedAddrs() []string {
	out := []string{}
	for _, a := range t.h.ObservedAddrs() {
		out = append(out, a.String())
	}
	return out
}

// Conns lists one connection per connected peer, a direct one where there
// is one (libp2p opens streams on it in preference to a relayed one).
func (t *hostNetwork) Conns() []PeerConn {
	out := []PeerConn{}
	for _, p := range t.h.Network().Peers() {
		cs := t.h.Network().ConnsToPeer(p)
		if len(cs) == 0 {
			continue
		}
		i := slices.IndexFunc(cs, func(c network.Conn) bool { return !relayed(c.RemoteMultiaddr()) })
		pc := PeerConn{Peer: p.String(), Relayed: i < 0}
		if i < 0 {
			i = 0
		}
		pc.Addr = cs[i].RemoteMultiaddr().String()
		out = append(out, pc)
	}
	slices.SortFunc(out, func(a, b PeerConn) int { return cmp.Compare(a.Peer, b.Peer) })
	return out
}

func relayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}
