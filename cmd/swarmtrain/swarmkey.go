package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// keyFlags are how a node gets the swarm's secret: --key, --key-file,
// the key a founder created in its directory, or none with --open.
type keyFlags struct {
	hex, file string
	open      bool
}

func (k *keyFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&k.hex, "key", "", "the swarm's secret key, 64 hex digits, as the join line prints it; without --join and without a key, a new swarm's key is created in --dir/swarm.key")
	fs.StringVar(&k.file, "key-file", "", "read the swarm key from FILE: libp2p's swarm.key format (/key/swarm/psk/1.0.0/, /base16/, the key) or 64 hex digits")
	fs.BoolVar(&k.open, "open", false, "a public swarm: no key, anyone who can reach a node may join (QUIC stays on); prints the trade-offs at start")
}

// errNoKey is what a joiner without a key is told.
var errNoKey = errors.New("--join needs the swarm's key: paste the whole join line the first node printed (it ends in --key …), give --key-file FILE, or --open to join a public swarm")

// resolve returns the key this node uses (nil with --open). A node that
// starts a swarm with no key given creates one in dir (or reuses the one
// it created or was given before); a joiner must be given one the first
// time.
func (k keyFlags) resolve(dir string, joining bool) ([]byte, error) {
	if key, given, err := k.given(); err != nil || given {
		if err != nil || key == nil {
			return key, err
		}
		return key, rememberKey(dir, key)
	}
	path := filepath.Join(dir, p2p.SwarmKeyFile)
	if _, err := os.Stat(path); err != nil && joining {
		return nil, errNoKey
	}
	// A restart in the same --dir (founder or not) finds its key here.
	key, _, err := p2p.LoadOrCreateSwarmKey(path)
	return key, err
}

// given returns the key the flags give (nil with --open) and whether they
// give one at all.
func (k keyFlags) given() ([]byte, bool, error) {
	switch {
	case k.open && (k.hex != "" || k.file != ""):
		return nil, false, errors.New("--open with --key or --key-file: an open swarm has no key; give one or the other")
	case k.hex != "" && k.file != "":
		return nil, false, errors.New("--key and --key-file both given; give one")
	case k.open:
		return nil, true, nil
	case k.hex != "":
		key, err := p2p.ParseSwarmKey(k.hex)
		if err != nil {
			return nil, false, fmt.Errorf("--key: %w", err)
		}
		return key, true, nil
	case k.file != "":
		key, err := p2p.ReadSwarmKey(k.file)
		if err != nil {
			return nil, false, fmt.Errorf("--key-file: %w", err)
		}
		return key, true, nil
	}
	return nil, false, nil
}

// rememberKey keeps a given key in dir (mode 0600, like the identity),
// so a restart on dir without --join and without the key rejoins the
// swarm through its saved peers instead of founding a new one.
func rememberKey(dir string, key []byte) error {
	path := filepath.Join(dir, p2p.SwarmKeyFile)
	if old, err := p2p.ReadSwarmKey(path); err == nil && bytes.Equal(old, key) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(path, []byte(p2p.FormatSwarmKey(key)+"\n")); err != nil {
		return fmt.Errorf("saving the swarm key in %s: %w", dir, err)
	}
	return nil
}

// joinLine is the one line others paste to join this node's swarm.
func joinLine(addr string, cfg node.Config) string {
	if cfg.Open {
		return "swarmtrain node --open --join " + addr
	}
	return "swarmtrain node --join " + addr + " --key " + p2p.FormatSwarmKey(cfg.SwarmKey)
}

// openTradeOffs is printed when a node starts with --open.
const openTradeOffs = `swarmtrain: --open: this is a public swarm with no key.
  - Anyone who can reach a node may connect, say hello and, on the same run, join:
    train with you, gossip, serve state, and send parts to the all-reduce.
  - What still holds: peers on other runs are refused and learn only which fields
    differ (not our values, not the run ID); only peers whose hello was accepted
    open streams or are counted; messages are validated and size-capped.
  - What an admitted stranger can still do is bounded only by the swarm's other
    defences (capped sample counts, state adopted on a quorum, and the part
    owners' robust rule: clip, unless --aggregate says otherwise); it can still
    slow rounds down or leave mid-round.
  - QUIC stays on (a swarm key would make the swarm TCP only).
  For a closed swarm, start without --open: the join line then carries a key.
`
