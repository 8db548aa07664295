package p2p

import (
	"syscall"

	"golang.org/x/sys/unix"
)

func setNotSentLowat(raw syscall.RawConn, bytes int) error {
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, bytes)
	}); err != nil {
		return err
	}
	return serr
}
