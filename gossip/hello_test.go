package gossip

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

var (
	ourConfig   = json.RawMessage(`{"version":2,"seed":1234567,"model":{"hidden":[256]},"optimizer":{"lr":0.002,"steps":1000}}`)
	theirConfig = json.RawMessage(`{"version":2,"seed":1,"model":{"hidden":[256]},"optimizer":{"lr":0.003,"steps":1000}}`)
)

const ourRun, theirRun = "00aa11bb22cc", "ddee"

// rawHello sends a hello for run/config to p and returns the welcome as
// it arrived, so the test sees every byte a refused peer is told.
func rawHello(t *testing.T, tr Transport, p peer.ID, run string, config json.RawMessage) ([]byte, *Welcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := tr.Open(ctx, p, ProtoHello)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Encode(Message{Kind: KindHello, Hello: &Hello{Run: run, Config: config}})
	if err := s.Send(b); err != nil {
		t.Fatal(err)
	}
	raw, err := s.Recv(MaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(raw)
	if err != nil || m.Kind != KindWelcome {
		t.Fatalf("answer %q: %v", raw, err)
	}
	return raw, m.Welcome
}

// A refused hello tells the peer which fields differ and nothing else
// about the run: no run ID, and our values only to insiders (peers that
// hold the swarm key). An accepted one admits the peer (Admit) before
// it is answered.
func TestRefusedHelloLearnsNothing(t *testing.T) {
	for _, insiders := range []bool{true, false} {
		net := NewMemNetwork()
		us, them := testutil.PeerID(1), testutil.PeerID(2)
		ours, theirs := net.Add(us), net.Add(them)
		var admitted []peer.ID
		refused := make(chan string, 4)
		adm := &Admission{Run: ourRun, Config: ourConfig, Insiders: insiders,
			Admit: func(p peer.ID) error { admitted = append(admitted, p); return nil },
			OnResult: func(p peer.ID, ok bool, reason string, inbound bool) {
				if !ok {
					time.Sleep(20 * time.Millisecond) // a slow revocation: the answer must wait for it
					refused <- reason
				}
			}}
		adm.Serve(ours)

		raw, w := rawHello(t, theirs, us, theirRun, theirConfig)
		if w.OK || len(admitted) != 0 {
			t.Fatalf("insiders %v: another run was welcomed (admitted %v)", insiders, admitted)
		}
		if w.Run != "" || strings.Contains(string(raw), ourRun) {
			t.Errorf("insiders %v: the refusal carries our run ID: %s", insiders, raw)
		}
		if !strings.Contains(w.Reason, "optimizer.lr") || !strings.Contains(w.Reason, "seed") {
			t.Errorf("insiders %v: reason %q does not name the fields that differ", insiders, w.Reason)
		}
		// Our values (seed 1234567, lr 0.002) reach insiders only.
		for _, v := range []string{"1234567", "0.002"} {
			if got := strings.Contains(string(raw), v); got != insiders {
				t.Errorf("insiders %v: the refusal shows our value %s: %v (%s)", insiders, v, got, raw)
			}
		}
		// The node revokes what the refusal revokes before the peer
		// reads it (an admitted peer refused on a second hello must not
		// use the old admission meanwhile).
		select {
		case <-refused:
		default:
			t.Errorf("insiders %v: the refusal reached the peer before OnResult saw it", insiders)
		}

		_, w = rawHello(t, theirs, us, ourRun, ourConfig)
		if !w.OK || w.Run != ourRun || len(admitted) != 1 || admitted[0] != them {
			t.Errorf("insiders %v: our own run: welcome %+v, admitted %v", insiders, w, admitted)
		}
	}
}

// Admit can turn a hello away (a full table): the peer is refused with
// the reason, and Greet fails on our side when our admission fails.
func TestAdmitCanRefuse(t *testing.T) {
	net := NewMemNetwork()
	a, b := testutil.PeerID(1), testutil.PeerID(2)
	ta, tb := net.Add(a), net.Add(b)
	full := errors.New("this node admits no more peers (1024)")
	(&Admission{Run: ourRun, Config: ourConfig, Admit: func(peer.ID) error { return full }}).Serve(ta)
	_, w := rawHello(t, tb, a, ourRun, ourConfig)
	if w.OK || w.Reason != full.Error() || w.Run != "" {
		t.Errorf("welcome %+v, want a refusal saying %q", w, full)
	}

	(&Admission{Run: ourRun, Config: ourConfig}).Serve(tb)
	greeter := &Admission{Run: ourRun, Config: ourConfig, Admit: func(peer.ID) error { return full }}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := greeter.Greet(ctx, ta, b); err == nil || !strings.Contains(err.Error(), "admits no more") {
		t.Errorf("Greet = %v, want our admission's error", err)
	}
}

func TestConfigFieldsNamesNoValues(t *testing.T) {
	if d := ConfigFields(ourConfig, theirConfig); d != "optimizer.lr, seed differ" {
		t.Errorf("ConfigFields = %q", d)
	}
	if d := ConfigFields(ourConfig, json.RawMessage(`{"lr":0.002}`)); strings.Contains(d, "2") {
		t.Errorf("another version: %q shows a value", d)
	}
}

// An admitted peer's welcome lists the peers Admission.Peers names (at
// most MaxWelcomePeers); a refused one's lists none.
func TestWelcomeListsPeers(t *testing.T) {
	net := NewMemNetwork()
	a, b := testutil.PeerID(1), testutil.PeerID(2)
	ta, tb := net.Add(a), net.Add(b)
	var asked []peer.ID
	many := make([]PeerAddrs, MaxWelcomePeers+3)
	for i := range many {
		many[i] = PeerAddrs{ID: testutil.PeerID(10 + i), Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}}
	}
	(&Admission{Run: ourRun, Config: ourConfig, Peers: func(p peer.ID) []PeerAddrs { asked = append(asked, p); return many }}).Serve(ta)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := (&Admission{Run: ourRun, Config: ourConfig}).GreetPeers(ctx, tb, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != MaxWelcomePeers || got[0].ID != many[0].ID || len(asked) != 1 || asked[0] != b {
		t.Errorf("welcome listed %d peers (first %v) for %v; want the first %d, asked for %v", len(got), got[0].ID, asked, MaxWelcomePeers, b)
	}
	_, w := rawHello(t, tb, a, theirRun, theirConfig)
	if w.OK || len(w.Peers) != 0 {
		t.Errorf("a refused hello was told peers: %+v", w)
	}
}
