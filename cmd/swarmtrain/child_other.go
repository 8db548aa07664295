//go:build !linux

package main

import "syscall"

// childAttr is the default elsewhere: without Pdeathsig the demo stops
// its nodes itself on SIGINT, SIGTERM and on its own exit, and a demo
// killed outright leaves them to finish their run.
func childAttr() *syscall.SysProcAttr { return nil }
