package main

import "syscall"

// childAttr puts a demo's node in its own process group (a terminal's
// Ctrl-C reaches the demo alone, which stops its nodes in order) and has
// the kernel send it SIGTERM should the demo die without doing so, even
// by SIGKILL. (Pdeathsig follows the thread that started the child; Go
// keeps that thread while the demo runs.)
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
