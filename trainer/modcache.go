package trainer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// moduleDir finds, without the network, the module cache folder of a
// module in this program's build list for which ok holds (the data files
// it ships are there): first at the version recorded in this binary's
// build info, which works for an installed binary far from any source
// tree; then via `go list -m` with GOPROXY=off, which works inside this
// module's tree (test binaries record no dependencies); then any cached
// version, newest first. It returns "" and the places it tried when none
// holds.
func moduleDir(module string, ok func(dir string) bool) (dir string, tried []string) {
	cache := modCache()
	if bi, found := debug.ReadBuildInfo(); found {
		for _, dep := range bi.Deps {
			if dep.Path != module {
				continue
			}
			switch {
			case dep.Replace != nil && dep.Replace.Version == "": // replaced by a local directory
				dir = dep.Replace.Path
			case dep.Replace != nil:
				dir = filepath.Join(cache, escapeModule(dep.Replace.Path)+"@"+escapeModule(dep.Replace.Version))
			default:
				dir = filepath.Join(cache, escapeModule(dep.Path)+"@"+escapeModule(dep.Version))
			}
			if ok(dir) {
				return dir, nil
			}
			tried = append(tried, dir)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Env = append(os.Environ(), "GOPROXY=off")
	if out, err := cmd.Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" {
			if ok(d) {
				return d, nil
			}
			tried = append(tried, d)
		}
	} else {
		tried = append(tried, "go list -m "+module+" ("+firstLine(err)+")")
	}

	glob := filepath.Join(cache, escapeModule(module)+"@*")
	matches, _ := filepath.Glob(glob)
	version := func(dir string) string { // "v1.20.4" of ".../compress@v1.20.4"
		_, v, _ := strings.Cut(filepath.Base(dir), "@")
		return v
	}
	slices.SortFunc(matches, func(a, b string) int { return semver.Compare(version(b), version(a)) }) // newest first
	for _, d := range matches {
		if ok(d) {
			return d, nil
		}
	}
	return "", append(tried, glob)
}

func firstLine(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		s := strings.TrimSpace(string(ee.Stderr))
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i]
		}
		return s
	}
	return err.Error()
}

// modCache is the Go module cache: $GOMODCACHE, else the first GOPATH entry
// plus pkg/mod, else $HOME/go/pkg/mod (the go command's own defaults).
func modCache() string {
	if c := os.Getenv("GOMODCACHE"); c != "" {
		return c
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		return filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, "go", "pkg", "mod")
}

// escapeModule applies the module cache's case encoding: every upper-case
// letter becomes '!' and its lower-case form, so GoMNIST is stored as
// !go!m!n!i!s!t on case-insensitive file systems.
func escapeModule(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return filepath.FromSlash(b.String())
}
