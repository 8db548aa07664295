package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFrom(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/swarmtrain/swarmtrain", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "-tags", Value: "netns,openblas"}, {Key: "CGO_ENABLED", Value: "1"},
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
			{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"},
		},
	}
	i := from(bi, "", "")
	want := Info{Version: Devel, Commit: "abc123", Modified: true, GoVersion: "go1.26.8", Platform: "linux/arm64", Tags: "netns,openblas", CGO: true}
	if i != want {
		t.Errorf("a checkout build: %+v, want %+v", i, want)
	}
	// The linker's values win; a module version stands in for a missing one.
	if i := from(bi, "v0.4.0", "def456"); i.Version != "v0.4.0" || i.Commit != "def456" {
		t.Errorf("-ldflags: %+v", i)
	}
	bi.Main.Version = "v0.3.1"
	if i := from(bi, "", ""); i.Version != "v0.3.1" {
		t.Errorf("go install @v0.3.1: version %q", i.Version)
	}
	if i := from(nil, "", ""); i.Version != Devel || i.GoVersion == "" {
		t.Errorf("no build info: %+v", i)
	}
	s := from(&debug.BuildInfo{}, "v1", "").String()
	for _, w := range []string{"swarmtrain v1\n", "commit    unknown", "tags      none", "no GPU detection (built without cgo)"} {
		if !strings.Contains(s, w) {
			t.Errorf("String() lacks %q:\n%s", w, s)
		}
	}
}

// The test binary itself has build info: Read must find the Go version.
func TestRead(t *testing.T) {
	if i := Read(); i.GoVersion == "" || i.Version == "" || i.Platform == "" {
		t.Errorf("Read() = %+v", i)
	}
}
