// Package buildinfo says which build this binary is: version, commit, Go
// version, build tags and cgo, read from runtime/debug.ReadBuildInfo. A
// release build sets the version and commit with the linker (see
// scripts/release.sh):
//
//	go build -ldflags "-X github.com/swarmtrain/swarmtrain/internal/buildinfo.version=v0.4.0 \
//	  -X github.com/swarmtrain/swarmtrain/internal/buildinfo.commit=$(git rev-parse HEAD)" ./cmd/swarmtrain
//
// Without them the module version (go install …@v0.4.0) and the VCS
// stamp (a build inside a git checkout) stand in.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by -ldflags -X; empty in a plain go build.
var (
	version string
	commit  string
)

// Devel is the version of a build that has none: no -ldflags, not a
// tagged module, e.g. go build in a checkout.
const Devel = "devel"

// Info is one build's identity.
type Info struct {
	Version   string `json:"version"`    // v0.4.0, or Devel
	Commit    string `json:"commit"`     // VCS revision; empty when unknown
	Modified  bool   `json:"modified"`   // built from a tree with uncommitted changes
	Time      string `json:"time"`       // commit time (RFC 3339); empty when unknown
	GoVersion string `json:"go_version"` // go1.26.8
	Platform  string `json:"platform"`   // GOOS/GOARCH
	Tags      string `json:"tags"`       // -tags, comma-separated; empty for none
	CGO       bool   `json:"cgo"`        // cgo was on: NVML GPU detection is in
}

// Read is this binary's build.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return from(bi, version, commit)
}

// Version is this binary's version, e.g. for the libp2p user agent.
func Version() string { return Read().Version }

// from reads bi (nil when the binary has no build info) under the
// linker-set version and commit, which win over bi's.
func from(bi *debug.BuildInfo, ldVersion, ldCommit string) Info {
	i := Info{Version: ldVersion, Commit: ldCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		if i.Version == "" {
			i.Version = Devel
		}
		return i
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if i.Commit == "" {
				i.Commit = s.Value
			}
		case "vcs.modified":
			i.Modified = s.Value == "true"
		case "vcs.time":
			i.Time = s.Value
		case "-tags":
			i.Tags = s.Value
		case "CGO_ENABLED":
			i.CGO = s.Value == "1"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		i.Platform = goos + "/" + goarch
	}
	if i.Version == "" {
		// "(devel)" is what go build in a checkout records.
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			i.Version = v
		} else {
			i.Version = Devel
		}
	}
	return i
}

// String is the long form that swarmtrain version prints.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "swarmtrain %s\n", i.Version)
	c := i.Commit
	if c == "" {
		c = "unknown (built without VCS stamping or -ldflags)"
	} else if i.Modified {
		c += " (modified)"
	}
	fmt.Fprintf(&b, "  commit    %s\n", c)
	if i.Time != "" {
		fmt.Fprintf(&b, "  time      %s\n", i.Time)
	}
	fmt.Fprintf(&b, "  go        %s\n", i.GoVersion)
	fmt.Fprintf(&b, "  platform  %s\n", i.Platform)
	tags := i.Tags
	if tags == "" {
		tags = "none"
	}
	fmt.Fprintf(&b, "  tags      %s\n", tags)
	gpu := "no GPU detection (built without cgo)"
	if i.CGO {
		gpu = "NVML GPU detection"
	}
	fmt.Fprintf(&b, "  cgo       %t: %s\n", i.CGO, gpu)
	return b.String()
}
