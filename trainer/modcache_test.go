package trainer

import (
	"os"
	"path/filepath"
	"testing"
)

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
