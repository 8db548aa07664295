// Package atomicfile replaces files so that a reader, or a crash at any
// moment, sees the old content or the new, never a mix.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes b to a temporary file next to path, syncs it, renames it
// over path and syncs the folder (so the rename survives a crash too).
// Temporary files left by writers killed mid-write are removed first:
// callers keep one writer per path.
func Write(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	// Temporary files of writers killed mid-write (one writer per folder).
	if stale, _ := filepath.Glob(path + ".tmp-*"); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil { // the rename itself must survive a crash
		d.Sync()
		d.Close()
	}
	return nil
}
