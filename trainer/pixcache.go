package trainer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
	sum := sha256.Sum256([]byte(pixMagic + kind + "\x00" + opts + "\x00" + key))
	path := filepath.Join(cacheDir, fmt.Sprintf("%s-%s.pix", kind, hex.EncodeToString(sum[:12])))
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
