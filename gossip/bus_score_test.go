package gossip

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

func heartbeatFrom(t *testing.T, p peer.ID, run string, seq uint64) []byte {
	t.Helper()
	b, err := Encode(Message{Kind: KindHeartbeat, Heartbeat: &Heartbeat{Peer: p, Run: run, Seq: seq}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A flooding author gets its burst and then its rate; the rest is
// ignored (not rejected: valid messages cost it no score), and another
// author is heard meanwhile.
func TestBusValidatorLimitsEachAuthor(t *testing.T) {
	now := time.Unix(1000, 0)
	validate := topicValidator("ab", KindHeartbeat, func() time.Time { return now }, "", Gate{})
	flood, other := testutil.PeerID(1), testutil.PeerID(2)
	msg := func(p peer.ID, seq uint64) *pubsub.Message {
		return &pubsub.Message{Message: &pb.Message{From: []byte(p), Data: heartbeatFrom(t, p, "ab", seq)}}
	}
	counts := map[pubsub.ValidationResult]int{}
	for i := range 1000 {
		counts[validate(context.Background(), flood, msg(flood, uint64(i)))]++
	}
	if burst := 2 * busHeartbeatRate; counts[pubsub.ValidationAccept] != burst || counts[pubsub.ValidationIgnore] != 1000-burst {
		t.Fatalf("1000 heartbeats at once: %d accepted, %d ignored, %d rejected; want the burst of %d accepted and the rest ignored",
			counts[pubsub.ValidationAccept], counts[pubsub.ValidationIgnore], counts[pubsub.ValidationReject], burst)
	}
	if r := validate(context.Background(), other, msg(other, 1)); r != pubsub.ValidationAccept {
		t.Fatalf("another author's heartbeat: %v, want accepted", r)
	}
	now = now.Add(time.Second)
	accepted := 0
	for i := range 100 {
		if validate(context.Background(), flood, msg(flood, uint64(2000+i))) == pubsub.ValidationAccept {
			accepted++
		}
	}
	if accepted != busHeartbeatRate {
		t.Fatalf("a second later %d heartbeats accepted, want the rate, %d", accepted, busHeartbeatRate)
	}
	bad := &pubsub.Message{Message: &pb.Message{From: []byte(other), Data: heartbeatFrom(t, flood, "ab", 1)}}
	if r := validate(context.Background(), other, bad); r != pubsub.ValidationReject {
		t.Fatalf("a heartbeat naming another author: %v, want rejected", r)
	}
}

func loopbackHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// A peer that sends invalid messages is penalised by gossipsub's peer
// scoring until everything it sends is ignored, while an honest peer's
// heartbeats are delivered and its score stays above every threshold.
// Real libp2p hosts on loopback; the attacker runs plain gossipsub with
// no validator, so its garbage goes out.
func TestBusScoresInvalidSendersDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hHonest, hBus, hBad := loopbackHost(t), loopbackHost(t), loopbackHost(t)
	delivered := make(chan peer.ID, 100)
	bus, err := NewBus(ctx, hBus, "ab", Gate{}, func(from peer.ID, m Message) { delivered <- from })
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	honest, err := NewBus(ctx, hHonest, "ab", Gate{}, func(peer.ID, Message) {})
	if err != nil {
		t.Fatal(err)
	}
	defer honest.Close()
	ps, err := pubsub.NewGossipSub(ctx, hBad)
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(TopicName("ab", KindHeartbeat))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topic.Subscribe(); err != nil { // into the bus's mesh
		t.Fatal(err)
	}
	for _, h := range []host.Host{hHonest, hBad} {
		if err := h.Connect(ctx, peer.AddrInfo{ID: hBus.ID(), Addrs: hBus.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	name := TopicName("ab", KindHeartbeat)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := len(bus.ps.ListPeers(name)); n != 2 {
			return fmt.Errorf("the bus has %d peers on the topic, want 2", n)
		}
		if n := len(ps.ListPeers(name)); n != 1 {
			return errors.New("the attacker does not see the bus on the topic yet")
		}
		return nil
	})
	seq := uint64(0)
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		seq++
		if err := topic.Publish(ctx, []byte(fmt.Sprintf("not a message %d", seq))); err != nil {
			return err
		}
		honest.Publish(ctx, Message{Kind: KindHeartbeat, Heartbeat: &Heartbeat{Peer: hHonest.ID(), Run: "ab", Seq: seq}})
		bad, okBad := bus.Score(hBad.ID())
		good, okGood := bus.Score(hHonest.ID())
		switch {
		case !okBad || !okGood:
			return errors.New("no scores yet")
		case bad >= busGraylistThreshold:
			return fmt.Errorf("the invalid sender scores %.1f, want below the graylist threshold %d", bad, busGraylistThreshold)
		case good < 0:
			return fmt.Errorf("the honest peer scores %.1f, want ≥ 0", good)
		}
		return nil
	})
	select {
	case from := <-delivered:
		if from != hHonest.ID() {
			t.Fatalf("delivered a message from %s, want only the honest peer's", from)
		}
	case <-ctx.Done():
		t.Fatal("the honest peer's heartbeats were never delivered")
	}
}

// A peer the application penalises (Gate.Penalty: an all-reduce owner
// caught sending different results) scores below the gossip threshold
// while the penalty lasts, and back to ≥ 0 once it is lifted; an
// unpenalised peer stays ≥ 0 throughout.
func TestBusPenaltyLowersScore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hBus, hCulprit, hOther := loopbackHost(t), loopbackHost(t), loopbackHost(t)
	var penalised atomic.Bool
	penalised.Store(true)
	gate := Gate{Penalty: func(p peer.ID) float64 {
		if p == hCulprit.ID() && penalised.Load() {
			return MisbehavingPenalty
		}
		return 0
	}}
	bus, err := NewBus(ctx, hBus, "ab", gate, func(peer.ID, Message) {})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	for _, h := range []host.Host{hCulprit, hOther} {
		b, err := NewBus(ctx, h, "ab", Gate{}, func(peer.ID, Message) {})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := h.Connect(ctx, peer.AddrInfo{ID: hBus.ID(), Addrs: hBus.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	scores := func() (culprit, other float64, err error) {
		culprit, ok1 := bus.Score(hCulprit.ID())
		other, ok2 := bus.Score(hOther.ID())
		if !ok1 || !ok2 {
			return 0, 0, errors.New("no scores yet")
		}
		if other < 0 {
			return 0, 0, fmt.Errorf("the unpenalised peer scores %.1f, want ≥ 0", other)
		}
		return culprit, other, nil
	}
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		c, _, err := scores()
		if err == nil && c >= busGossipThreshold {
			err = fmt.Errorf("the penalised peer scores %.1f, want below the gossip threshold %d", c, busGossipThreshold)
		}
		return err
	})
	if c, _, _ := scores(); c < busPublishThreshold {
		t.Fatalf("the penalised peer scores %.1f, below the publish threshold %d: it would no longer hear us", c, busPublishThreshold)
	}
	penalised.Store(false)
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		c, _, err := scores()
		if err == nil && c < 0 {
			err = fmt.Errorf("with the penalty lifted the peer scores %.1f, want ≥ 0", c)
		}
		return err
	})
}
