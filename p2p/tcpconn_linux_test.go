package p2p

import (
	"net"
	"os"
	"strconv"
	"testing"

	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/sys/unix"

	"github.com/libp2p/go-libp2p/core/network"
)

// notSentLowat reads TCP_NOTSENT_LOWAT back from the socket behind c. No
// libp2p API reaches the socket, so it finds it among this process's file
// descriptors by its two addresses.
func notSentLowat(t *testing.T, c network.Conn) int {
	t.Helper()
	local, err := manet.ToNetAddr(c.LocalMultiaddr())
	if err != nil {
		t.Fatal(err)
	}
	remote, err := manet.ToNetAddr(c.RemoteMultiaddr())
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list file descriptors: %v", err)
	}
	same := func(sa unix.Sockaddr, a net.Addr) bool {
		in, ok := sa.(*unix.SockaddrInet4)
		ta := a.(*net.TCPAddr)
		return ok && net.IP(in.Addr[:]).Equal(ta.IP) && in.Port == ta.Port
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		la, err1 := unix.Getsockname(fd)
		ra, err2 := unix.Getpeername(fd)
		if err1 != nil || err2 != nil || !same(la, local) || !same(ra, remote) {
			continue
		}
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT)
		if err != nil {
			t.Fatalf("getsockopt TCP_NOTSENT_LOWAT on %s->%s: %v", local, remote, err)
		}
		return v
	}
	t.Fatalf("no socket %s->%s among this process's descriptors", local, remote)
	return 0
}

// Every TCP connection, dialed or accepted, gets TCPNotSentLowat, so a
// bulk transfer cannot park seconds of data in the kernel ahead of other
// streams' frames.
func TestTCPNotSentLowat(t *testing.T) {
	for _, want := range []int{DefaultConfig().TCPNotSentLowat, 32 << 10} {
		cfg := DefaultConfig()
		cfg.TCPNotSentLowat = want
		a, b := newTCPHost(t, cfg), newTCPHost(t, cfg)
		dialed, accepted := tcpConn(t, a, b)
		if got := notSentLowat(t, dialed); got != want {
			t.Errorf("dialed connection: TCP_NOTSENT_LOWAT %d, want %d", got, want)
		}
		if got := notSentLowat(t, accepted); got != want {
			t.Errorf("accepted connection: TCP_NOTSENT_LOWAT %d, want %d", got, want)
		}
	}
}
