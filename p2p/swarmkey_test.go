package p2p

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// newKeyedHost starts a loopback host (TCP and QUIC asked for) in the
// private network of psk; nil psk: an open host.
func newKeyedHost(t testing.TB, psk pnet.PSK) *Host {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ListenAddrs = loopbackAddrs
	cfg.PSK = psk
	return startTestHost(t, cfg)
}

// A host in a private network lets in only hosts holding its key: a host
// without one, or with another, cannot connect (in either direction);
// one with the key connects and speaks. The keyed host listens on TCP
// only, though QUIC was asked for.
func TestPrivateNetworkNeedsTheKey(t *testing.T) {
	key, err := NewSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	a := newKeyedHost(t, key)
	serveEcho(a)
	for _, addr := range a.JoinAddrs() {
		if strings.Contains(addr, "/quic") || strings.Contains(addr, "/udp/") {
			t.Errorf("keyed host listens on %s; want TCP only", addr)
		}
	}
	addr := pickAddr(t, a, "/tcp/")

	for name, psk := range map[string]pnet.PSK{"no key": nil, "another key": other} {
		stranger := newKeyedHost(t, psk)
		if _, err := stranger.Connect(testCtx(t, time.Second), addr); err == nil {
			t.Errorf("%s: connected to a keyed host", name)
		}
		// Nor the other way round: the keyed host cannot dial it.
		if _, err := a.Connect(testCtx(t, time.Second), pickAddr(t, stranger, "/tcp/")); err == nil {
			t.Errorf("%s: the keyed host connected to it", name)
		}
		if n := len(a.Network().Peers()); n != 0 {
			t.Errorf("%s: keyed host has %d peers after the refused dials", name, n)
		}
	}

	friend := newKeyedHost(t, key)
	p, err := friend.Connect(testCtx(t, 5*time.Second), addr)
	if err != nil {
		t.Fatalf("with the key: %v", err)
	}
	ns, err := friend.NewStream(testCtx(t, 5*time.Second), p, echoProto)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStream(ns, 5*time.Second)
	if err := s.Send([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Recv(16)
	if err != nil || string(got) != "cba" {
		t.Fatalf("echo through the private network: %q, %v", got, err)
	}
	s.Close()
}

func TestSwarmKeyFormats(t *testing.T) {
	key, err := NewSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	hexKey := FormatSwarmKey(key)
	if got, err := ParseSwarmKey(" " + hexKey + "\n"); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ParseSwarmKey(FormatSwarmKey(k)) = %x, %v", got, err)
	}
	secret := strings.Repeat("zz", 32)
	for in, want := range map[string]string{
		hexKey[:62]:       "62 characters, want 64 hex digits",
		hexKey + "00":     "66 characters",
		secret:            "not hexadecimal",
		"":                "0 characters",
		hexKey[:60] + "+": "61 characters",
	} {
		_, err := ParseSwarmKey(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSwarmKey(%q) = %v, want an error with %q", in, err, want)
		}
		if err != nil && in != "" && strings.Contains(err.Error(), in) {
			t.Errorf("ParseSwarmKey's error repeats the secret: %v", err)
		}
	}

	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := map[string]string{
		"base16": "/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey + "\n",
		"base64": "/key/swarm/psk/1.0.0/\n/base64/\n" + base64.StdEncoding.EncodeToString(key) + "\n",
		"crlf":   "/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + hexKey + "\r\n",
		"hex":    hexKey + "\n",
	}
	for name, body := range files {
		got, err := ReadSwarmKey(write(name, body))
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s: ReadSwarmKey = %x, %v; want %x", name, got, err, key)
		}
	}
	for name, body := range map[string]string{
		"bad header":   "/key/swarm/psk/2.0.0/\n/base16/\n" + hexKey + "\n",
		"bad encoding": "/key/swarm/psk/1.0.0/\n/base58/\n" + hexKey + "\n",
		"short":        "/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey[:20] + "\n",
		"garbage":      "hello\n",
	} {
		if _, err := ReadSwarmKey(write(name, body)); err == nil {
			t.Errorf("%s: ReadSwarmKey accepted it", name)
		}
	}
}

// A founder's key is created once, private to its owner, and read back
// on restart; a key file others may read is refused.
func TestLoadOrCreateSwarmKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node", SwarmKeyFile)
	k1, created, err := LoadOrCreateSwarmKey(path)
	if err != nil || !created || len(k1) != SwarmKeySize {
		t.Fatalf("first call: %x, created %v, %v", k1, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(raw), "/key/swarm/psk/1.0.0/\n/base16/\n") {
		t.Errorf("key file is not libp2p's swarm.key format:\n%s", raw)
	}
	k2, created, err := LoadOrCreateSwarmKey(path)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("restart: %x, created %v, %v; want the first key", k2, created, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSwarmKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: err = %v, want one saying chmod 600", err)
	}
}
