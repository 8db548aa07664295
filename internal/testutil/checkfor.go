// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"testing"
	"time"
)

// CheckFor polls f every poll until it returns nil or total has passed,
// then fails with f's last error. Tests wait for conditions with it
// instead of sleeping for a guessed time.
func CheckFor(t testing.TB, total, poll time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", total, err)
		}
		time.Sleep(poll)
	}
}
