//go:build !linux

package p2p

import "syscall"

// setNotSentLowat is a no-op off Linux: TCPNotSentLowat is documented as
// Linux only.
func setNotSentLowat(syscall.RawConn, int) error { return nil }
