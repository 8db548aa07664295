package p2p

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/upgrader"
)

// tunedSecurity wraps a security transport (TLS, Noise) so that each raw
// TCP connection gets TCPNotSentLowat before its handshake. The security
// transport is the one place libp2p hands over dialed and accepted TCP
// connections alike while they are still plain sockets: the TCP transport
// takes a custom dialer but accepts on its own listener, and
// network.Conn.As reaches no deeper than the yamux session. QUIC never
// passes through here.
type tunedSecurity struct {
	sec.SecureTransport
	notSentLowat int // bytes; 0 leaves the kernel's default
}

// tuneSecurity turns a security transport's constructor (tlssec.New,
// noise.New) into one for libp2p.Security that wraps its result.
func tuneSecurity[T sec.SecureTransport](newSec func(protocol.ID, crypto.PrivKey, []upgrader.StreamMuxer) (T, error), notSentLowat int) func(protocol.ID, crypto.PrivKey, []upgrader.StreamMuxer) (*tunedSecurity, error) {
	return func(id protocol.ID, key crypto.PrivKey, muxers []upgrader.StreamMuxer) (*tunedSecurity, error) {
		st, err := newSec(id, key, muxers)
		if err != nil {
			return nil, err
		}
		return &tunedSecurity{SecureTransport: st, notSentLowat: notSentLowat}, nil
	}
}

func (t *tunedSecurity) SecureInbound(ctx context.Context, c net.Conn, p peer.ID) (sec.SecureConn, error) {
	if err := t.tune(c); err != nil {
		return nil, err
	}
	return t.SecureTransport.SecureInbound(ctx, c, p)
}

func (t *tunedSecurity) SecureOutbound(ctx context.Context, c net.Conn, p peer.ID) (sec.SecureConn, error) {
	if err := t.tune(c); err != nil {
		return nil, err
	}
	return t.SecureTransport.SecureOutbound(ctx, c, p)
}

// tune sets the socket options on c if it is a TCP socket; other
// connections (none today: only TCP reaches a security transport) pass
// untouched.
func (t *tunedSecurity) tune(c net.Conn) error {
	if t.notSentLowat == 0 {
		return nil
	}
	if _, ok := c.LocalAddr().(*net.TCPAddr); !ok {
		return nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("p2p: TCP connection to %s: %w", c.RemoteAddr(), err)
	}
	if err := setNotSentLowat(raw, t.notSentLowat); err != nil {
		return fmt.Errorf("p2p: set TCP_NOTSENT_LOWAT %d on connection to %s: %w", t.notSentLowat, c.RemoteAddr(), err)
	}
	return nil
}
