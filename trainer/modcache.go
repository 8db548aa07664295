package trainer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// moduleDir finds, without the network, the module cache folder of a
// module in this program's build list for which ok holds (the data files
// it ships are there): first at the version recorded in this binary's
// build info, which works for an installed binary far from any source
// tree; then via `go list -m` with GOPROXY=off, which works inside this
// module's tree (test binaries record no dependencies); then any cached
// version, newest first. It returns "" and the places it tried when none
// holds; a path or version the module cache cannot hold is reported
// there too, never a panic.
func moduleDir(mod string, ok func(dir string) bool) (dir string, tried []string) {
	cache := modCache()
	if bi, found := debug.ReadBuildInfo(); found {
		for _, dep := range bi.Deps {
			if dep.Path != mod {
				continue
			}
			var err error
			switch {
			case dep.Replace != nil && dep.Replace.Version == "": // replaced by a local directory
				dir = dep.Replace.Path
			case dep.Replace != nil:
				dir, err = cacheDir(cache, dep.Replace.Path, dep.Replace.Version)
			default:
				dir, err = cacheDir(cache, dep.Path, dep.Version)
			}
			if err != nil {
				tried = append(tried, err.Error())
				continue
			}
			if ok(dir) {
				return dir, nil
			}
			tried = append(tried, dir)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), goListTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", mod)
	cmd.Env = append(os.Environ(), "GOPROXY=off")
	if out, err := cmd.Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" {
			if ok(d) {
				return d, nil
			}
			tried = append(tried, d)
		}
	} else {
		tried = append(tried, "go list -m "+mod+" ("+firstLine(err)+")")
	}

	esc, err := module.EscapePath(mod)
	if err != nil {
		return "", append(tried, "module cache: "+err.Error())
	}
	glob := filepath.Join(cache, filepath.FromSlash(esc)+"@*")
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

// cacheDir is the folder of path@version in the module cache: both
// escaped as the go command does (every upper-case letter becomes '!' and
// its lower-case form, so GoMNIST is stored as !go!m!n!i!s!t on
// case-insensitive file systems). A malformed path or version is an error.
func cacheDir(cache, path, version string) (string, error) {
	p, err := module.EscapePath(path)
	if err != nil {
		return "", fmt.Errorf("module cache: %w", err)
	}
	v, err := module.EscapeVersion(version)
	if err != nil {
		return "", fmt.Errorf("module cache: %s: %w", path, err)
	}
	return filepath.Join(cache, filepath.FromSlash(p)+"@"+v), nil
}
