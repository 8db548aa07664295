package node

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

func addrOf(p peer.ID, port int) string {
	return fmt.Sprintf("/ip4/192.0.2.1/tcp/%d/p2p/%s", port, p)
}

// TestPeerBookRoundTrip: what is saved reads back, newest first, within
// the caps, without self and without addresses that are not the peer's.
func TestPeerBookRoundTrip(t *testing.T) {
	self, a, b := testutil.PeerID(0), testutil.PeerID(1), testutil.PeerID(2)
	book := newPeerBook("run1", self)
	book.seen(self, []string{addrOf(self, 1)}, t0)
	book.seen(a, []string{addrOf(a, 1), addrOf(b, 2), "garbage", addrOf(a, 1), addrOf(a, 3)}, t0)
	book.seen(b, []string{addrOf(b, 2)}, t0.Add(time.Second))
	raw := book.encode()
	if raw == nil || book.encode() != nil {
		t.Fatal("encode: want bytes once, then nil until something changes")
	}
	ps, skipped, err := decodePeers(raw, "run1", self)
	if err != nil || skipped != 0 {
		t.Fatalf("decode: %v, %d skipped", err, skipped)
	}
	if len(ps) != 2 || ps[0].ID != b || ps[1].ID != a {
		t.Fatalf("peers %v, want b then a", ps)
	}
	if got := strings.Join(ps[1].Addrs, " "); got != addrOf(a, 1)+" "+addrOf(a, 3) {
		t.Fatalf("a's addresses %q", got)
	}
	if _, _, err := decodePeers(raw, "run2", self); err == nil {
		t.Fatal("peers of another run were accepted")
	}
}

// TestPeerBookIsBounded: however many peers are heard, the file keeps
// maxSavedPeers, the most recent.
func TestPeerBookIsBounded(t *testing.T) {
	book := newPeerBook("run", testutil.PeerID(0))
	for i := 1; i <= 3*maxSavedPeers; i++ {
		p := testutil.PeerID(i)
		book.seen(p, []string{addrOf(p, i)}, t0.Add(time.Duration(i)*time.Second))
	}
	ps, _, err := decodePeers(book.encode(), "run", "")
	if err != nil || len(ps) != maxSavedPeers {
		t.Fatalf("kept %d peers (%v), want %d", len(ps), err, maxSavedPeers)
	}
	if ps[0].ID != testutil.PeerID(3*maxSavedPeers) {
		t.Fatal("the newest peer is not first")
	}
}

// TestDecodePeersHostile: a damaged or edited file costs its bad entries
// (counted), never a panic or an error for the rest.
func TestDecodePeersHostile(t *testing.T) {
	self, a := testutil.PeerID(0), testutil.PeerID(1)
	good := fmt.Sprintf(`{"id":%q,"addrs":[%q]}`, a, addrOf(a, 1))
	for _, tc := range []struct {
		name    string
		file    string
		kept    int
		skipped int
		err     bool
	}{
		{"not json", `{"run":`, 0, 0, true},
		{"not an object", `[1,2]`, 0, 0, true},
		{"other run", `{"run":"x","peers":[` + good + `]}`, 0, 0, true},
		{"huge", `{"run":"r","peers":[` + strings.Repeat(good+",", maxPeersFileBytes/len(good)) + good + `]}`, 0, 0, true},
		{"bad entries", `{"run":"r","peers":[1,"x",{"id":"nope","addrs":["/ip4/1.2.3.4/tcp/1"]},` +
			fmt.Sprintf(`{"id":%q,"addrs":["/ip4/1.2.3.4/tcp/1"]},`, a) + // no /p2p part
			fmt.Sprintf(`{"id":%q,"addrs":[%q]},`, self, addrOf(self, 1)) + // ourselves
			good + "," + good + `]}`, 1, 6, false},
	} {
		ps, skipped, err := decodePeers([]byte(tc.file), "r", self)
		if (err != nil) != tc.err || len(ps) != tc.kept || skipped != tc.skipped {
			t.Errorf("%s: kept %d skipped %d err %v; want kept %d skipped %d err %v", tc.name, len(ps), skipped, err, tc.kept, tc.skipped, tc.err)
		}
	}
}

func FuzzDecodePeers(f *testing.F) {
	f.Add([]byte(`{"run":"r","peers":[{"id":"12D3KooWA","addrs":["/ip4/1.2.3.4/tcp/1/p2p/12D3KooWA"]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, _, err := decodePeers(b, "r", "")
		if err != nil && len(ps) > 0 {
			t.Fatal("peers with an error")
		}
		if len(ps) > maxSavedPeers {
			t.Fatalf("%d peers", len(ps))
		}
		for _, p := range ps {
			if len(p.Addrs) == 0 || len(p.Addrs) > maxSavedAddrs {
				t.Fatalf("%d addrs", len(p.Addrs))
			}
		}
		_, _ = json.Marshal(ps)
	})
}
