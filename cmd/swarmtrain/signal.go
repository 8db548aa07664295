package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// exitNow ends the process; a test replaces it.
var exitNow = osExit

var osExit = os.Exit

// leaveOnSignal returns a context cancelled by the first SIGINT or
// SIGTERM: the command winds down cleanly (a node announces its leave,
// evaluates and writes its checkpoint). A second signal exits at once,
// with the shell's code for a signal (128+n). stop releases the signals.
func leaveOnSignal(ctx context.Context, log io.Writer, what string) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(log, "swarmtrain: %v: %s (again to exit at once)\n", s, what)
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(log, "swarmtrain: %v again: exiting now\n", s)
			code := 130
			if s == syscall.SIGTERM {
				code = 143
			}
			exitNow(code)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
