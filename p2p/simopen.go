package p2p

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/upgrader"
)

// Security protocol IDs of the role-settling layer. They differ from
// libp2p's (/tls/1.0.0, /noise) because the layer adds a preamble to the
// wire: a peer without it must not "agree" on the protocol.
const (
	TLSID   = "/swarmtrain/tls/1.0.0"
	NoiseID = "/swarmtrain/noise/1.0.0"
)

// Why this layer exists: with SO_REUSEPORT (which TCP hole punching and
// identify's observed addresses need) every outgoing TCP connection leaves
// from the listen port. Two peers that dial each other at once then send
// SYNs between the same two ports, and when they cross TCP's simultaneous
// open joins them into one connection that both ends dialed. Multistream
// happily "agrees" on the security protocol (both propose the same ID),
// both start the handshake as the client, and it fails on both sides
// (libp2p/go-libp2p#2925). So before the handshake each end writes a
// preamble: magic, its role, a random nonce. A dialer facing a listener
// goes on as usual; two dialers settle by nonce (the lower one acts as the
// server). Hole punches need nothing extra: libp2p settles their roles
// itself and calls SecureInbound on one end, which then says "listener".

// preamble is what each end sends first on a new connection.
type preamble struct {
	Dialer bool
	Nonce  uint64
}

const (
	preambleLen   = 16
	preambleMagic = "swtrole\x01" // 8 bytes; the last is the version
	roleDialer    = 'D'
	roleListener  = 'L'
)

// preambleTimeout bounds the preamble exchange when ctx has no deadline
// sooner: a peer that sends nothing must not hold the connection.
const preambleTimeout = 15 * time.Second

func (p preamble) encode() []byte {
	b := make([]byte, 0, preambleLen)
	b = append(b, preambleMagic...)
	role := byte(roleListener)
	if p.Dialer {
		role = roleDialer
	}
	b = append(b, role)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], p.Nonce)
	return append(b, n[1:]...) // 7 bytes of nonce keep the preamble at 16
}

// decodePreamble parses a peer's preamble; anything else is an error that
// says what was wrong.
func decodePreamble(b []byte) (preamble, error) {
	if len(b) != preambleLen {
		return preamble{}, fmt.Errorf("p2p: role preamble has %d bytes, want %d", len(b), preambleLen)
	}
	if !bytes.Equal(b[:8], []byte(preambleMagic)) {
		return preamble{}, fmt.Errorf("p2p: role preamble starts %q, want %q (not a swarmtrain peer, or another version)", b[:8], preambleMagic)
	}
	var p preamble
	switch b[8] {
	case roleDialer:
		p.Dialer = true
	case roleListener:
	default:
		return preamble{}, fmt.Errorf("p2p: role preamble has role byte %#x, want 'D' or 'L'", b[8])
	}
	var n [8]byte
	copy(n[1:], b[9:])
	p.Nonce = binary.BigEndian.Uint64(n[:])
	return p, nil
}

// settle decides whether this end runs the handshake as the server, from
// both preambles. simOpen reports that both ends dialed.
func settle(local, remote preamble) (server, simOpen bool, err error) {
	switch {
	case local.Dialer && !remote.Dialer:
		return false, false, nil
	case !local.Dialer && remote.Dialer:
		return true, false, nil
	case !local.Dialer && !remote.Dialer:
		return false, false, errors.New("p2p: both ends of the connection accepted it; nobody dialed")
	}
	switch {
	case local.Nonce < remote.Nonce:
		return true, true, nil
	case local.Nonce > remote.Nonce:
		return false, true, nil
	}
	return false, true, fmt.Errorf("p2p: simultaneous open with equal role nonces %#x; cannot settle roles", local.Nonce)
}

// roleSecurity wraps a security transport with the preamble exchange.
type roleSecurity struct {
	sec.SecureTransport
	nonces  io.Reader     // crypto/rand in production
	simOpen *atomic.Int64 // counts connections both ends dialed
}

// settleRoles turns a security constructor (as tuneSecurity returns) into
// one for libp2p.Security whose transports settle roles first.
func settleRoles[T sec.SecureTransport](newSec func(protocol.ID, crypto.PrivKey, []upgrader.StreamMuxer) (T, error), simOpen *atomic.Int64) func(protocol.ID, crypto.PrivKey, []upgrader.StreamMuxer) (*roleSecurity, error) {
	return func(id protocol.ID, key crypto.PrivKey, muxers []upgrader.StreamMuxer) (*roleSecurity, error) {
		st, err := newSec(id, key, muxers)
		if err != nil {
			return nil, err
		}
		return &roleSecurity{SecureTransport: st, nonces: rand.Reader, simOpen: simOpen}, nil
	}
}

func (r *roleSecurity) SecureInbound(ctx context.Context, c net.Conn, p peer.ID) (sec.SecureConn, error) {
	return r.secure(ctx, c, p, false)
}

func (r *roleSecurity) SecureOutbound(ctx context.Context, c net.Conn, p peer.ID) (sec.SecureConn, error) {
	return r.secure(ctx, c, p, true)
}

func (r *roleSecurity) secure(ctx context.Context, c net.Conn, p peer.ID, dialer bool) (sec.SecureConn, error) {
	local := preamble{Dialer: dialer}
	var n [8]byte
	if _, err := io.ReadFull(r.nonces, n[1:]); err != nil {
		return nil, fmt.Errorf("p2p: role nonce: %w", err)
	}
	local.Nonce = binary.BigEndian.Uint64(n[:])
	remote, err := exchange(ctx, c, local)
	if err != nil {
		return nil, fmt.Errorf("p2p: role preamble with %s: %w", c.RemoteAddr(), err)
	}
	server, sim, err := settle(local, remote)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Time{}); err != nil { // the handshake sets its own
		return nil, err
	}
	if sim {
		r.simOpen.Add(1)
	}
	var sc sec.SecureConn
	if server {
		sc, err = r.SecureTransport.SecureInbound(ctx, c, p)
	} else {
		sc, err = r.SecureTransport.SecureOutbound(ctx, c, p)
	}
	if err != nil {
		return nil, err
	}
	return &settledConn{SecureConn: sc, server: server}, nil
}

// exchange writes local's preamble and reads the peer's at the same time
// (on an unbuffered pipe a write waits for the reader), within ctx's
// deadline or preambleTimeout, whichever is sooner. The deadline stays
// set; the caller clears it.
func exchange(ctx context.Context, c net.Conn, local preamble) (preamble, error) {
	deadline := time.Now().Add(preambleTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetDeadline(deadline); err != nil {
		return preamble{}, err
	}
	wrote := make(chan error, 1)
	go func() { _, err := c.Write(local.encode()); wrote <- err }()
	buf := make([]byte, preambleLen)
	remote, err := func() (preamble, error) {
		if _, err := io.ReadFull(c, buf); err != nil {
			return preamble{}, fmt.Errorf("read: %w", err)
		}
		return decodePreamble(buf)
	}()
	if err != nil {
		c.SetDeadline(time.Now()) // unblock the writer
		<-wrote
		return preamble{}, err
	}
	if err := <-wrote; err != nil {
		return preamble{}, fmt.Errorf("write: %w", err)
	}
	return remote, nil
}

// settledConn remembers which end ran the handshake as the server, for
// settledMuxer: libp2p's upgrader hands the muxer its own idea of the role
// (the dial direction), which for a simultaneous open is "client" on both
// ends, and two yamux clients would both open odd-numbered streams.
type settledConn struct {
	sec.SecureConn
	server bool
}

// settledMuxer makes the muxer's role follow the security handshake's.
type settledMuxer struct{ network.Multiplexer }

func (m settledMuxer) NewConn(c net.Conn, isServer bool, scope network.PeerScope) (network.MuxedConn, error) {
	if s, ok := c.(*settledConn); ok {
		isServer = s.server
	}
	return m.Multiplexer.NewConn(c, isServer, scope)
}
