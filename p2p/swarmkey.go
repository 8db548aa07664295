package p2p

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// SwarmKeyFile is the name of the swarm key a founding node keeps in its
// directory, in libp2p's swarm.key format.
const SwarmKeyFile = "swarm.key"

// SwarmKeySize is the length of a swarm key in bytes (libp2p's PSK).
const SwarmKeySize = 32

// swarmKeyHeader starts libp2p's swarm.key format (base16 flavour), the
// one IPFS private networks use, so keys move between the two.
const swarmKeyHeader = "/key/swarm/psk/1.0.0/\n/base16/\n"

// NewSwarmKey draws a fresh key from crypto/rand.
func NewSwarmKey() (pnet.PSK, error) {
	k := make([]byte, SwarmKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("swarm key: %w", err)
	}
	return k, nil
}

// ParseSwarmKey reads a key written as 64 hex digits (what a join line
// carries). The error never echoes the input: it is a secret.
func ParseSwarmKey(s string) (pnet.PSK, error) {
	s = strings.TrimSpace(s)
	if len(s) != 2*SwarmKeySize {
		return nil, fmt.Errorf("swarm key: %d characters, want %d hex digits (%d bytes)", len(s), 2*SwarmKeySize, SwarmKeySize)
	}
	k, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("swarm key: not hexadecimal (want 64 digits 0-9, a-f)")
	}
	return k, nil
}

// FormatSwarmKey writes k as the hex that ParseSwarmKey reads.
func FormatSwarmKey(k pnet.PSK) string { return hex.EncodeToString(k) }

// ReadSwarmKey reads a key file: libp2p's swarm.key format
// (/key/swarm/psk/1.0.0/, then /base16/, /base64/ or /bin/, then the key)
// or, for convenience, the 64 hex digits alone.
func ReadSwarmKey(path string) (pnet.PSK, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("swarm key: %w", err)
	}
	if !bytes.HasPrefix(raw, []byte("/key/")) {
		k, err := ParseSwarmKey(string(raw))
		if err != nil {
			return nil, fmt.Errorf("%s: %w, or libp2p's swarm.key format", path, err)
		}
		return k, nil
	}
	k, err := pnet.DecodeV1PSK(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("swarm key: %s: %w (want /key/swarm/psk/1.0.0/, a line /base16/, then 64 hex digits)", path, err)
	}
	return k, nil
}

// LoadOrCreateSwarmKey returns the key at path, creating one there (mode
// 0600) if the file is missing. Like the identity, a key file that others
// may read is refused on Unix: whoever reads it can join the swarm.
func LoadOrCreateSwarmKey(path string) (k pnet.PSK, created bool, err error) {
	fi, err := os.Stat(path)
	if err == nil {
		if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			return nil, false, fmt.Errorf("swarm key: %s has mode %v, readable or writable by others; run chmod 600 %s", path, fi.Mode().Perm(), path)
		}
		k, err := ReadSwarmKey(path)
		return k, false, err
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("swarm key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("swarm key: create directory: %w", err)
	}
	if k, err = NewSwarmKey(); err != nil {
		return nil, false, err
	}
	if err := writeNew(path, []byte(swarmKeyHeader+FormatSwarmKey(k)+"\n")); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race: use its key
			k, err := ReadSwarmKey(path)
			return k, false, err
		}
		return nil, false, fmt.Errorf("swarm key: %w", err)
	}
	return k, true, nil
}
