package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/buildinfo"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// --version and version print the version, commit and Go version; the
// libp2p user agent names the version.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out bytes.Buffer
		if err := execute(args, nil, &out); err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"swarmtrain " + buildinfo.Version() + "\n", "commit ", "go        " + runtime.Version(), "tags ", "cgo "} {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: no %q in\n%s", args, w, out.String())
			}
		}
	}
	if want := "swarmtrain/" + buildinfo.Version(); p2p.UserAgent != want {
		t.Errorf("user agent %q, want %q", p2p.UserAgent, want)
	}
}
