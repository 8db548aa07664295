package datasync

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// File is one file of a dataset, with its bytes.
type File struct {
	Name string
	Data []byte
}

// Entry is one file as a manifest lists it.
type Entry struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// Manifest describes a dataset: its files in order, and the SHA-256 of
// each ChunkSize chunk of their concatenation.
type Manifest struct {
	Files  []Entry  `json:"files"`
	Chunks [][]byte `json:"chunks"`
}

// rootTag starts every root: the format and the chunk size are part of
// the name, so a change of either never reads as the same dataset.
const rootTag = "swarmtrain-data-1"

// Root names the dataset: SHA-256, in hex, over the tag, the chunk size,
// each file's name and size, and each chunk's hash.
func (m Manifest) Root() string {
	h := sha256.New()
	h.Write([]byte(rootTag))
	h.Write(binary.BigEndian.AppendUint64(nil, ChunkSize))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(m.Files))))
	for _, f := range m.Files {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(f.Name))))
		h.Write([]byte(f.Name))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(f.Size)))
	}
	for _, c := range m.Chunks {
		h.Write(c)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Size is the dataset's total bytes.
func (m Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// numChunks is how many chunks hold size bytes.
func numChunks(size int64) int { return int((size + ChunkSize - 1) / ChunkSize) }

// chunkLen is the length of chunk k of a dataset of size bytes.
func chunkLen(size int64, k int) int {
	return int(min(size-int64(k)*ChunkSize, ChunkSize))
}

// Validate checks a manifest from a peer before anything is allocated
// for it: file count, names, sizes, and one 32-byte hash per chunk.
func (m Manifest) Validate() error {
	if len(m.Files) == 0 || len(m.Files) > MaxFiles {
		return fmt.Errorf("manifest lists %d files, want 1..%d", len(m.Files), MaxFiles)
	}
	seen := map[string]bool{}
	var total int64
	for i, f := range m.Files {
		if err := ValidName(f.Name); err != nil {
			return fmt.Errorf("manifest file %d: %w", i, err)
		}
		if seen[f.Name] {
			return fmt.Errorf("manifest lists %q twice", f.Name)
		}
		seen[f.Name] = true
		if f.Size < 0 || f.Size > MaxBytes-total {
			return fmt.Errorf("manifest file %q: size %d takes the dataset past %d bytes", f.Name, f.Size, MaxBytes)
		}
		total += f.Size
	}
	if n := numChunks(total); len(m.Chunks) != n {
		return fmt.Errorf("manifest lists %d chunk hashes for %d bytes, want %d", len(m.Chunks), total, n)
	}
	for i, c := range m.Chunks {
		if len(c) != sha256.Size {
			return fmt.Errorf("manifest chunk %d: hash of %d bytes, want %d", i, len(c), sha256.Size)
		}
	}
	return nil
}

// ValidName accepts a plain file name: 1 to 128 bytes of letters,
// digits, '.', '_' and '-', not starting with '.'. A downloader writes
// files under these names, so nothing else (no '/', no "..") gets in.
func ValidName(name string) error {
	switch {
	case name == "" || len(name) > maxNameLen:
		return fmt.Errorf("file name of %d bytes, want 1..%d", len(name), maxNameLen)
	case name[0] == '.':
		return fmt.Errorf("file name %q starts with '.'", name)
	case strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "":
		return fmt.Errorf("file name %q has characters other than letters, digits, '.', '_' and '-'", truncate(name, 64))
	}
	return nil
}

// Dataset is a set of files ready to serve: their concatenation and
// manifest.
type Dataset struct {
	m    Manifest
	root string
	data []byte
}

// NewDataset builds the manifest of files, in order. It copies nothing
// but the concatenation; files may be reused after.
func NewDataset(files []File) (*Dataset, error) {
	m := Manifest{}
	var total int64
	for _, f := range files {
		m.Files = append(m.Files, Entry{Name: f.Name, Size: int64(len(f.Data))})
		total += int64(len(f.Data))
	}
	if total > MaxBytes {
		return nil, fmt.Errorf("dataset of %d bytes, more than the %d served", total, MaxBytes)
	}
	data := make([]byte, 0, total)
	for _, f := range files {
		data = append(data, f.Data...)
	}
	for k := range numChunks(total) {
		sum := sha256.Sum256(data[int64(k)*ChunkSize : int64(k)*ChunkSize+int64(chunkLen(total, k))])
		m.Chunks = append(m.Chunks, sum[:])
	}
	if len(m.Chunks) == 0 {
		m.Chunks = [][]byte{} // JSON [] rather than null
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &Dataset{m: m, root: m.Root(), data: data}, nil
}

// Root names the dataset (Manifest.Root).
func (d *Dataset) Root() string { return d.root }

// Manifest is the dataset's manifest.
func (d *Dataset) Manifest() Manifest { return d.m }

// Files are the dataset's files; their Data share the dataset's bytes.
func (d *Dataset) Files() []File { return split(d.m, d.data) }

func (d *Dataset) chunk(k int) []byte {
	lo := int64(k) * ChunkSize
	return d.data[lo : lo+int64(chunkLen(int64(len(d.data)), k))]
}

// split cuts the concatenation into m's files.
func split(m Manifest, data []byte) []File {
	out := make([]File, len(m.Files))
	var off int64
	for i, f := range m.Files {
		out[i] = File{Name: f.Name, Data: data[off : off+f.Size : off+f.Size]}
		off += f.Size
	}
	return out
}

// truncate shortens s to n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
