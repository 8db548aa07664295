package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/statesync"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// gatedProtos are the protocols only admitted peers may open.
var gatedProtos = []protocol.ID{gossip.ProtoMatch, gossip.ProtoAllReduce, gossip.ProtoState, gossip.ProtoPart}

// A stream from a peer that is not admitted is reset before its handler
// runs, on every protocol but hello; once admitted, the handler runs.
func TestGateResetsStrangersStreams(t *testing.T) {
	sw := newMemSwarm()
	us, them := sw.add(), sw.add()
	adm := newAdmitted(maxAdmitted)
	g := gatedNetwork{Network: us, admitted: adm.has}
	ran := make(chan protocol.ID, 16)
	echo := func(proto protocol.ID) func(gossip.Stream) {
		return func(s gossip.Stream) {
			ran <- proto
			b, err := s.Recv(64)
			if err != nil {
				s.Reset()
				return
			}
			s.Send(b)
			s.Close()
		}
	}
	for _, proto := range append(gatedProtos, gossip.ProtoHello) {
		g.Handle(proto, echo(proto))
	}
	ask := func(proto protocol.ID) error { return echoFrom(them, us.Self(), proto) }
	for _, proto := range gatedProtos {
		if err := ask(proto); err == nil {
			t.Errorf("%s: a stranger got an answer", proto)
		}
	}
	if err := ask(gossip.ProtoHello); err != nil {
		t.Errorf("hello: a stranger cannot say hello: %v", err)
	}
	if got := <-ran; got != gossip.ProtoHello {
		t.Errorf("the %s handler ran for a stranger", got)
	}
	select {
	case got := <-ran:
		t.Errorf("the %s handler ran for a stranger", got)
	default:
	}
	if err := adm.add(them.Self()); err != nil {
		t.Fatal(err)
	}
	for _, proto := range gatedProtos {
		if err := ask(proto); err != nil {
			t.Errorf("%s: an admitted peer got no answer: %v", proto, err)
		}
		if got := <-ran; got != proto {
			t.Errorf("asked %s, the %s handler ran", proto, got)
		}
	}
}

func TestAdmittedIsBounded(t *testing.T) {
	a := newAdmitted(2)
	p1, p2, p3 := testutil.PeerID(1), testutil.PeerID(2), testutil.PeerID(3)
	if a.add(p1) != nil || a.add(p2) != nil || a.add(p2) != nil {
		t.Fatal("could not admit two peers into a set of two")
	}
	if err := a.add(p3); err == nil || !strings.Contains(err.Error(), "admits no more peers") {
		t.Errorf("a third peer: %v", err)
	}
	a.remove(p1)
	if a.has(p1) || a.add(p3) != nil || !a.has(p3) {
		t.Error("a removed peer's place is not free")
	}
}

// The greeter paces hellos: one in flight per peer, a bounded number in
// all, a backoff that doubles after failures and ends on success.
func TestGreeterPaces(t *testing.T) {
	g := newGreeter()
	now := time.Unix(0, 0)
	p := testutil.PeerID(1)
	if !g.start(p, now) {
		t.Fatal("first greet refused")
	}
	if g.start(p, now) {
		t.Error("a second hello while one is in flight")
	}
	g.done(p, false, now)
	if g.start(p, now.Add(greetMin-time.Millisecond)) {
		t.Error("greeted again before the backoff ended")
	}
	if !g.start(p, now.Add(greetMin)) {
		t.Error("not greeted after the backoff")
	}
	g.done(p, false, now.Add(greetMin))
	if g.start(p, now.Add(greetMin+greetMin)) || !g.start(p, now.Add(greetMin+2*greetMin)) {
		t.Error("the backoff did not double after a second failure")
	}
	g.done(p, true, now)
	if !g.start(p, now) {
		t.Error("a success left a backoff behind")
	}
	g.done(p, true, now)
	for i := range maxGreeting {
		if !g.start(testutil.PeerID(10+i), now) {
			t.Fatalf("hello %d refused below the cap", i)
		}
	}
	if g.start(testutil.PeerID(99), now) {
		t.Errorf("more than %d hellos in flight", maxGreeting)
	}
}

// A node with one admitted peer, and two strangers on the same swarm:
// one that never says hello, one whose hello was refused (another run).
// Neither can download the state (which the admitted peer can, the same
// way), the stranger's heartbeats are not delivered (it is not a live
// peer) but get it greeted, and the refused peer is told no run ID and,
// with a key, only the fields that differ.
func TestInProcessStrangersGetNothing(t *testing.T) {
	sw, data := newMemSwarm(), tinyData(t)
	cfg := memConfig(t, sw, data, 20)
	cfg.MinPeers = 5 // stays at step 0, waiting: the state is still
	cfg.SwarmKey = make([]byte, 32)
	a := start(t, cfg)
	addr := a.n.Addrs()[0]

	friend, stranger, refused := sw.add(), sw.add(), sw.add()
	for _, p := range []*memNode{friend, stranger, refused} {
		if _, err := p.Connect(context.Background(), addr); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := (&gossip.Admission{Run: a.n.RunID(), Config: cfg.Run.JSON()}).Greet(ctx, friend, a.n.ID()); err != nil {
		t.Fatalf("the friend's hello: %v", err)
	}
	other := cfg.Run
	other.Optimizer.LR *= 2
	err := (&gossip.Admission{Run: other.ID(), Config: other.JSON()}).Greet(ctx, refused, a.n.ID())
	var ref *gossip.RefusedError
	if !errors.As(err, &ref) {
		t.Fatalf("another run's hello: %v, want a refusal", err)
	}
	if strings.Contains(ref.Reason, a.n.RunID()) || !strings.Contains(ref.Reason, "optimizer.lr") {
		t.Errorf("the refusal %q shows our run ID, or does not name the field", ref.Reason)
	}

	snap, err := a.n.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(p *memNode) error {
		_, err := statesync.Fetch(ctx, p, []peer.ID{a.n.ID()}, statesync.Request{Run: a.n.RunID(), NParams: len(snap.Params), NOpt: len(snap.Opt), Wait: time.Second})
		return err
	}
	if err := fetch(friend); err != nil {
		t.Fatalf("the admitted peer cannot download the state: %v", err)
	}
	for name, p := range map[string]*memNode{"stranger": stranger, "refused": refused} {
		if err := fetch(p); err == nil {
			t.Errorf("the %s downloaded the state", name)
		}
	}

	// Heartbeats: the friend's count, the stranger's (with a step far
	// ahead) do not, and get the stranger greeted.
	buses := map[*memNode]Publisher{}
	for _, p := range []*memNode{friend, stranger} {
		if buses[p], err = p.Bus(ctx, a.n.RunID(), gossip.Gate{}, func(peer.ID, gossip.Message) {}); err != nil {
			t.Fatal(err)
		}
	}
	var seq uint64
	beat := func(p *memNode, step uint64) {
		seq++
		hb := gossip.Heartbeat{Peer: p.Self(), Run: a.n.RunID(), Seq: seq, Step: step}
		buses[p].Publish(ctx, gossip.Message{Kind: gossip.KindHeartbeat, Heartbeat: &hb})
	}
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		beat(stranger, 1000)
		beat(friend, 0)
		if _, ok := a.n.view.Get(friend.Self(), time.Now()); !ok {
			return errors.New("the friend is not a member yet")
		}
		return nil
	})
	if _, ok := a.n.view.Get(stranger.Self(), time.Now()); ok || a.n.admitted.has(stranger.Self()) {
		t.Error("the stranger is a member")
	}
	if n := a.n.Status().LivePeers; n != 2 {
		t.Errorf("live peers %d, want 2 (us and the friend)", n)
	}
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		beat(stranger, 1000)
		a.n.greets.mu.Lock()
		defer a.n.greets.mu.Unlock()
		if s := a.n.greets.peers[stranger.Self()]; s == nil || s.backoff == 0 {
			return errors.New("the stranger's heartbeats did not get it greeted")
		}
		return nil
	})
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if a.n.net.Connected(refused.Self()) {
			return fmt.Errorf("still connected to the refused peer")
		}
		return nil
	})

	// An admitted peer whose next hello is refused (restarted on another
	// run) is admitted no more; a new accepted hello admits it again.
	if err := (&gossip.Admission{Run: other.ID(), Config: other.JSON()}).Greet(ctx, friend, a.n.ID()); !errors.As(err, &ref) {
		t.Fatalf("the friend's hello on another run: %v, want a refusal", err)
	}
	if a.n.admitted.has(friend.Self()) {
		t.Error("a refused peer is still admitted")
	}
	if err := fetch(friend); err == nil {
		t.Error("a refused peer downloaded the state")
	}
	if err := (&gossip.Admission{Run: a.n.RunID(), Config: cfg.Run.JSON()}).Greet(ctx, friend, a.n.ID()); err != nil {
		t.Fatalf("the friend's hello back on the run: %v", err)
	}

	// A peer that disconnects is a stranger again until a new hello.
	friend.ClosePeer(a.n.ID())
	if a.n.admitted.has(friend.Self()) {
		t.Error("a disconnected peer is still admitted")
	}
	if err := fetch(friend); err == nil {
		t.Error("a disconnected peer downloaded the state without a new hello")
	}
}

// A stream from a peer not admitted yet asks the gate's contact hook
// (the node greets the peer there) before it is reset: a round's
// assembler may list a member the others have only heard of, whose
// first part must not fail the round. The handler runs only if the
// hook admits the peer.
func TestGateAsksContactBeforeReset(t *testing.T) {
	sw := newMemSwarm()
	us, them := sw.add(), sw.add()
	adm := newAdmitted(maxAdmitted)
	var asked []peer.ID
	welcome := false
	g := gatedNetwork{Network: us, admitted: adm.has, contact: func(p peer.ID) bool {
		asked = append(asked, p)
		if welcome {
			adm.add(p)
		}
		return welcome
	}}
	ran := make(chan struct{}, 4)
	g.Handle(gossip.ProtoPart, func(s gossip.Stream) {
		ran <- struct{}{}
		b, err := s.Recv(64)
		if err != nil {
			s.Reset()
			return
		}
		s.Send(b)
		s.Close()
	})
	ask := func() error { return echoFrom(them, us.Self(), gossip.ProtoPart) }
	if err := ask(); err == nil || len(ran) != 0 {
		t.Fatalf("a peer the contact hook did not admit: err %v, handler runs %d; want reset, none", err, len(ran))
	}
	welcome = true
	if err := ask(); err != nil || len(ran) != 1 {
		t.Fatalf("a peer admitted on contact: err %v, handler runs %d; want an answer", err, len(ran))
	}
	if len(asked) != 2 || asked[0] != them.Self() {
		t.Fatalf("contact asked about %v, want %s twice", asked, them.Self())
	}
	if err := ask(); err != nil || len(asked) != 2 {
		t.Fatalf("an admitted peer: err %v, contact asked %d times; want no more asking", err, len(asked))
	}
}

// echoFrom sends a frame from t to p on proto and waits for the answer.
func echoFrom(t gossip.Transport, p peer.ID, proto protocol.ID) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := t.Open(ctx, p, proto)
	if err != nil {
		return err
	}
	if err := s.Send([]byte("hi")); err != nil {
		return err
	}
	_, err = s.Recv(64)
	return err
}
