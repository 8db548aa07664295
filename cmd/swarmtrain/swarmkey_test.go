package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// Wrong key flags fail before anything starts, with an error that names
// the flag and what to do, and never repeats the key.
func TestKeyFlagErrors(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k")
	if err := os.WriteFile(keyFile, []byte("/key/swarm/psk/1.0.0/\n/base16/\n"+testSwarmKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad")
	if err := os.WriteFile(badFile, []byte("/key/swarm/psk/1.0.0/\n/base58/\nxyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := strings.Repeat("g", 64)
	join := []string{"--join", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--key", testSwarmKey, "--open"}, "--open with --key or --key-file"},
		{[]string{"--key-file", keyFile, "--open"}, "--open with --key or --key-file"},
		{[]string{"--key", testSwarmKey, "--key-file", keyFile}, "--key and --key-file both given"},
		{[]string{"--key", bad}, "--key: swarm key: not hexadecimal"},
		{[]string{"--key", testSwarmKey[:40]}, "--key: swarm key: 40 characters, want 64 hex digits"},
		{[]string{"--key-file", badFile}, "--key-file: swarm key: " + badFile},
		{[]string{"--key-file", filepath.Join(dir, "missing")}, "--key-file: swarm key: open"},
		{join, "--join needs the swarm's key: paste the whole join line"},
	} {
		cmd := nodeCmd()
		cmd.SetArgs(append([]string{"--dir", filepath.Join(t.TempDir(), "n"), "--quiet"}, c.args...))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.args, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), testSwarmKey[:40]) || strings.Contains(err.Error(), bad) {
			t.Errorf("%q: the error repeats the key: %v", c.args, err)
		}
	}
}

// A founder creates its key once, in its directory, and prints it in
// the join line; a restart in the same directory, as founder or with
// --join, reuses it; --open has none.
func TestKeyResolve(t *testing.T) {
	dir := t.TempDir()
	k1, err := keyFlags{}.resolve(dir, false)
	if err != nil || len(k1) != p2p.SwarmKeySize {
		t.Fatalf("founder: %x, %v", k1, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, p2p.SwarmKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the founder's key file: %v, %v; want mode 0600", fi, err)
	}
	for _, joining := range []bool{false, true} {
		k, err := keyFlags{}.resolve(dir, joining)
		if err != nil || !bytes.Equal(k, k1) {
			t.Errorf("restart (joining %v): %x, %v; want the key created first", joining, k, err)
		}
	}
	if k, err := (keyFlags{open: true}).resolve(t.TempDir(), true); err != nil || k != nil {
		t.Errorf("--open: %x, %v; want no key", k, err)
	}
	if k, err := (keyFlags{hex: testSwarmKey}).resolve(dir, true); err != nil || p2p.FormatSwarmKey(k) != testSwarmKey {
		t.Errorf("--key wins over the file: %x, %v", k, err)
	}
	// A given key is kept for restarts without it (and without --join).
	if k, err := (keyFlags{}).resolve(dir, false); err != nil || p2p.FormatSwarmKey(k) != testSwarmKey {
		t.Errorf("restart after --key: %x, %v; want the key given before", k, err)
	}
	line := joinLine("/ip4/1.2.3.4/tcp/1/p2p/X", node.Config{SwarmKey: k1})
	if line != "swarmtrain node --join /ip4/1.2.3.4/tcp/1/p2p/X --key "+p2p.FormatSwarmKey(k1) {
		t.Errorf("join line %q", line)
	}
	if line := joinLine("/ip4/1.2.3.4/tcp/1/p2p/X", node.Config{Open: true}); strings.Contains(line, "--key") || !strings.Contains(line, "--open") {
		t.Errorf("open join line %q", line)
	}
}

// Real processes: a founder started without a key creates one and prints
// it in its join line; a node given that line's key trains with it to one
// state; a node with another key cannot connect, and says what to check.
// The key is nowhere in the nodes' logs, node.json, result.json or /status.
func TestSwarmKeyKeepsOtherSwarmsOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := append([]string{"--min-peers", "2", "--linger", "2s"}, smallRun...)
	aDir := filepath.Join(dir, "a")
	// Not quiet, so it prints its join line; no key flags: it makes one.
	a := startProcess(t, aDir, exec.Command(exe, append([]string{"node", "--dir", aDir, "--log-file", filepath.Join(aDir, "node.log"),
		"--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0"}, run...)...))
	info := a.info()
	key, err := p2p.ReadSwarmKey(filepath.Join(aDir, p2p.SwarmKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	hexKey := p2p.FormatSwarmKey(key)
	if hexKey == testSwarmKey {
		t.Fatal("the founder made the tests' key")
	}
	other := startNode(t, filepath.Join(dir, "other"), append([]string{"--join", info.Addrs[0], "--key", testSwarmKey, "--join-timeout", "5s"}, run...)...)
	b := startNode(t, filepath.Join(dir, "b"), append([]string{"--join", info.Addrs[0], "--key", hexKey}, run...)...)
	st, err := fetchStatus(info.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(st); strings.Contains(string(b), hexKey) {
		t.Errorf("/status shows the swarm key: %s", b)
	}

	if err := other.wait(time.Minute); err == nil {
		t.Error("a node with another key joined")
	} else if msg := other.stderr.String(); !strings.Contains(msg, "another swarm key") {
		t.Errorf("the node with another key does not say what to check:\n%s", msg)
	}
	for _, p := range []*proc{a, b} {
		if err := p.wait(3 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, p.log())
		}
	}
	ra, rb := a.result(), b.result()
	if ra.Step != 40 || rb.Hash != ra.Hash || ra.Partners != 1 || rb.Rounds < 20 {
		t.Errorf("a: step %d, %s, %d partners; b: %s, %d rounds: want step 40, one state, b the only partner, in most rounds",
			ra.Step, ra.Hash, ra.Partners, rb.Hash, rb.Rounds)
	}
	if want := "join with: swarmtrain node --join " + info.Addrs[0] + " --key " + hexKey; !strings.Contains(a.stderr.String(), want) {
		t.Errorf("the founder did not print %q:\n%s", want, a.stderr)
	}
	for _, d := range []string{aDir, b.dir} {
		for _, f := range []string{"node.log", "node.json", "result.json"} {
			raw, err := os.ReadFile(filepath.Join(d, f))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), hexKey) {
				t.Errorf("%s holds the swarm key", filepath.Join(d, f))
			}
		}
	}
}

// --open: no key, QUIC stays, the trade-offs are printed (even with
// --quiet), and two open nodes train together.
func TestOpenSwarm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	run := append([]string{"--min-peers", "2", "--linger", "2s", "--open"}, smallRun...)
	both := "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1"
	a := startNodeWith(t, filepath.Join(dir, "a"), both, exec.Command, run...)
	info := a.info()
	if !slices.ContainsFunc(info.Addrs, func(s string) bool { return strings.Contains(s, "/quic-v1/") }) {
		t.Errorf("an open node listens on %v: want QUIC too", info.Addrs)
	}
	b := startNodeWith(t, filepath.Join(dir, "b"), both, exec.Command, append([]string{"--join", info.Addrs[0]}, run...)...)
	for _, p := range []*proc{a, b} {
		if err := p.wait(3 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, p.log())
		}
		if msg := p.stderr.String(); !strings.Contains(msg, "--open: this is a public swarm") || !strings.Contains(msg, "QUIC stays on") {
			t.Errorf("%s did not print the trade-offs of --open:\n%s", p.dir, msg)
		}
		if _, err := os.Stat(filepath.Join(p.dir, p2p.SwarmKeyFile)); err == nil {
			t.Errorf("%s: an open node made a swarm key", p.dir)
		}
	}
	ra, rb := a.result(), b.result()
	if ra.Step != 40 || rb.Hash != ra.Hash {
		t.Errorf("a ended at step %d with %s, b with %s: want step 40, one state", ra.Step, ra.Hash, rb.Hash)
	}
	// Strangers may join an open run, so its owners clip by default.
	clip := node.DefaultRunConfig()
	var args []flagArg
	for i := 0; i < len(smallRun); i += 2 {
		args = append(args, flagArg{strings.TrimPrefix(smallRun[i], "--"), smallRun[i+1]})
	}
	if err := setRunFlags(&clip, args); err != nil {
		t.Fatal(err)
	}
	clip.Averaging.Aggregate = "clip"
	if ra.Run != clip.ID() {
		t.Errorf("the open run is %s, want %s (the same run with --aggregate clip)", ra.Run, clip.ID())
	}
}
