package trainer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// SourceHash is the SHA-256 over the files at paths, in order: for each,
// its name (relative to base when base is set, so copies in other
// folders agree), its length and its bytes, streamed.
func SourceHash(base string, paths []string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		name := p
		if base != "" {
			if r, err := filepath.Rel(base, p); err == nil {
				name = filepath.ToSlash(r)
			}
		}
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		fi, err := f.Stat()
		if err == nil {
			h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(name))))
			h.Write([]byte(name))
			h.Write(binary.BigEndian.AppendUint64(nil, uint64(fi.Size())))
			_, err = io.Copy(h, f)
		}
		f.Close()
		if err != nil {
			return "", fmt.Errorf("hashing %s: %w", p, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CachedPixels returns the datasets decoded from a source, through a
// pixel file in cacheDir whose name is kind and a hash of key (the
// source's SourceHash) and opts (the decoding options, e.g. the image size): an
// existing file is mapped; otherwise build decodes, the result is written
// and mapped. cacheDir "" or an unwritable one only builds, on the heap.
func CachedPixels(cacheDir, kind, key, opts string, build func() (PixMeta, []*Dataset, error)) ([]*Dataset, *PixMeta, error) {
	if cacheDir == "" {
		meta, sets, err := build()
		return sets, &meta, err
	}
	path := cachePath(cacheDir, kind, key, opts)
	if sets, meta, err := MapPixelFile(path); err == nil {
		return sets, meta, nil
	}
	meta, sets, err := build()
	if err != nil {
		return nil, nil, err
	}
	if err := WritePixelFile(path, meta, sets...); err != nil {
		return sets, &meta, nil // a cache we cannot write: train from the heap
	}
	mapped, mmeta, err := MapPixelFile(path)
	if err != nil {
		return sets, &meta, nil
	}
	return mapped, mmeta, nil
}

// CachedPixelFile is CachedPixels for a source too large to decode onto
// the heap: write decodes it straight into a pixel file at the path it is
// given. Without a cache folder, or when write fails with a
// cacheWriteError (the folder is not writable), the file is written to
// the temporary folder, read onto the heap and removed; other errors
// (a bad image) are returned.
func CachedPixelFile(cacheDir, kind, key, opts string, write func(path string) error) ([]*Dataset, *PixMeta, error) {
	if cacheDir != "" {
		path := cachePath(cacheDir, kind, key, opts)
		if sets, meta, err := MapPixelFile(path); err == nil {
			return sets, meta, nil
		}
		err := write(path)
		if err == nil {
			if sets, meta, err := MapPixelFile(path); err == nil {
				return sets, meta, nil
			}
		} else if !errors.As(err, new(cacheWriteError)) {
			return nil, nil, err
		}
	}
	dir, err := os.MkdirTemp("", "swarmtrain-pix")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, kind+".pix")
	if err := write(path); err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	sets, meta, err := parsePixelFile(b)
	if err != nil {
		return nil, nil, fmt.Errorf("pixel file %s: %w", path, err)
	}
	return sets, meta, nil
}

// cacheWriteError is a failure to write a pixel file (not to decode its
// source): CachedPixelFile then falls back to the heap.
type cacheWriteError struct{ error }

func (e cacheWriteError) Unwrap() error { return e.error }

// cachePath names the pixel file of a source in cacheDir.
func cachePath(cacheDir, kind, key, opts string) string {
	sum := sha256.Sum256([]byte(pixMagic + kind + "\x00" + opts + "\x00" + key))
	return filepath.Join(cacheDir, fmt.Sprintf("%s-%s.pix", kind, hex.EncodeToString(sum[:12])))
}
