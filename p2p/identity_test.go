package p2p

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func peerOf(t *testing.T, k crypto.PrivKey) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestIdentityCreatedOnceThenReloaded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node", "deeper", IdentityFile)
	k1, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Type() != crypto.Ed25519 {
		t.Fatalf("key type %v, want Ed25519", k1.Type())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if peerOf(t, k1) != peerOf(t, k2) {
		t.Fatalf("reload changed the peer ID: %s then %s", peerOf(t, k1), peerOf(t, k2))
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only %s (temp file left behind?)", len(entries), IdentityFile)
	}
}

func TestIdentityTwoDirsDiffer(t *testing.T) {
	k1, err := LoadOrCreateIdentity(filepath.Join(t.TempDir(), IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateIdentity(filepath.Join(t.TempDir(), IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if peerOf(t, k1) == peerOf(t, k2) {
		t.Fatal("two directories share a peer ID")
	}
}

func TestIdentityCorruptFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), IdentityFile)
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateIdentity(path)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("err = %v, want a 'corrupt' error", err)
	}
	if raw, _ := os.ReadFile(path); string(raw) != "not a key" {
		t.Fatal("a corrupt identity was overwritten")
	}
}

func TestIdentityUnsafePermissionsIsAnError(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	path := filepath.Join(t.TempDir(), IdentityFile)
	if _, err := LoadOrCreateIdentity(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateIdentity(path)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("err = %v, want advice to chmod 600", err)
	}
}

func TestIdentityConcurrentCreateAgrees(t *testing.T) {
	path := filepath.Join(t.TempDir(), IdentityFile)
	const n = 8
	ids := make([]peer.ID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadOrCreateIdentity(path)
			errs[i] = err
			if err == nil {
				ids[i], errs[i] = peer.IDFromPrivateKey(k)
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("caller %d got %s, caller 0 got %s", i, ids[i], ids[0])
		}
	}
}
