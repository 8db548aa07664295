package gossip

import (
	"context"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TopicName is the gossipsub topic of a run for one message kind; runs
// never share a topic, so peers of different runs never mix messages.
func TopicName(run string, kind Kind) string {
	return "swarmtrain/" + run + "/" + string(kind)
}

// Bus carries the small control messages of a run (heartbeats and
// progress) over gossipsub. Every message is validated before delivery:
// it must decode, belong to the topic's kind and run, and be signed by the
// peer it claims to come from. Invalid messages are rejected, which
// lowers the sender's gossipsub score (score.go): past a few, the peer's
// messages are ignored. Valid messages beyond an author's rate
// (busHeartbeatRate, busProgressRate) are ignored: not delivered, not
// forwarded, not penalised.
// A valid message whose author the Gate has not admitted is ignored:
// neither delivered nor relayed, and no penalty for the honest peer
// that relayed it.
type Bus struct {
	ps     *pubsub.PubSub
	topics map[Kind]*pubsub.Topic
	cancel context.CancelFunc

	mu     sync.Mutex
	scores map[peer.ID]float64 // gossipsub's latest scores, every busScoreEvery

	sent sentTally
}

// Gate decides whose gossip is delivered.
type Gate struct {
	// Admitted reports whether p's messages may be delivered (nil: all).
	Admitted func(p peer.ID) bool
	// Stranger, when set, is told of every valid message whose author
	// is not admitted (so the caller can greet it). It runs inside
	// gossipsub's validation and must not block.
	Stranger func(author peer.ID, m Message)
	// Penalty, when set, is what the application holds against p (0 or
	// more), subtracted from p's gossipsub score: a peer the all-reduce
	// caught misbehaving drops out of our mesh and our gossip (IHAVE/IWANT
	// below busGossipThreshold) while its penalty lasts. It runs inside
	// gossipsub's scoring and must not block.
	Penalty func(p peer.ID) float64
}

// Pass reports whether a valid message by author may be delivered, and
// tells Stranger of those that may not.
func (g Gate) Pass(author peer.ID, m Message) bool {
	if g.Admitted == nil || g.Admitted(author) {
		return true
	}
	if g.Stranger != nil {
		g.Stranger(author, m)
	}
	return false
}

// NewBus joins the run's topics on h and calls deliver for every valid
// message from another peer that gate passes, from one goroutine per topic.
func NewBus(ctx context.Context, h host.Host, run string, gate Gate, deliver func(from peer.ID, m Message)) (*Bus, error) {
	ctx, cancel := context.WithCancel(ctx)
	// Progress goes out after every minibatch of every peer: the queues
	// are sized for bursts (defaults.go).
	b := &Bus{topics: map[Kind]*pubsub.Topic{}, cancel: cancel}
	var appScore func(peer.ID) float64
	if gate.Penalty != nil {
		appScore = func(p peer.ID) float64 { return -gate.Penalty(p) }
	}
	params, thresholds := busScore(run, appScore)
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithPeerScore(params, thresholds),
		pubsub.WithPeerScoreInspect(b.inspect, busScoreEvery),
		pubsub.WithMaxMessageSize(busMaxMessage),
		pubsub.WithPeerExchange(true),
		pubsub.WithValidateQueueSize(busValidateQueue),
		pubsub.WithPeerOutboundQueueSize(busOutboundQueue),
		pubsub.WithRawTracer(&b.sent),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gossipsub: %w", err)
	}
	b.ps = ps
	for _, kind := range []Kind{KindHeartbeat, KindProgress} {
		name := TopicName(run, kind)
		kind := kind
		err := ps.RegisterTopicValidator(name, topicValidator(run, kind, OrWall(nil).Now, h.ID(), gate))
		if err != nil {
			cancel()
			return nil, err
		}
		t, err := ps.Join(name)
		if err != nil {
			cancel()
			return nil, err
		}
		sub, err := t.Subscribe(pubsub.WithBufferSize(busSubscriptionBuffer))
		if err != nil {
			cancel()
			return nil, err
		}
		b.topics[kind] = t
		go func() {
			for {
				pm, err := sub.Next(ctx)
				if err != nil {
					return
				}
				if pm.Local {
					continue
				}
				if m, ok := pm.ValidatorData.(Message); ok {
					deliver(pm.GetFrom(), m)
				}
			}
		}()
	}
	return b, nil
}

// topicValidator accepts kind's messages of run signed by the peer they
// name, at most the kind's rate per author (busHeartbeatRate,
// busProgressRate; bursts of twice that). Malformed ones are rejected
// (the sender's score pays), ones over the rate ignored.
func topicValidator(run string, kind Kind, now func() time.Time, self peer.ID, gate Gate) func(context.Context, peer.ID, *pubsub.Message) pubsub.ValidationResult {
	rate := float64(busProgressRate)
	if kind == KindHeartbeat {
		rate = busHeartbeatRate
	}
	var mu sync.Mutex
	limit := newAuthorLimiter(rate, 2*rate, busMaxAuthors)
	return func(_ context.Context, _ peer.ID, pm *pubsub.Message) pubsub.ValidationResult {
		m, err := Decode(pm.Data)
		if err != nil || m.Kind != kind || !fromMatches(m, run, pm.GetFrom()) {
			return pubsub.ValidationReject
		}
		// Our own messages pass validation too before they go out.
		if pm.GetFrom() != self && !gate.Pass(pm.GetFrom(), m) {
			return pubsub.ValidationIgnore
		}
		mu.Lock()
		ok := limit.allow(pm.GetFrom(), now())
		mu.Unlock()
		if !ok {
			return pubsub.ValidationIgnore
		}
		pm.ValidatorData = m
		return pubsub.ValidationAccept
	}
}

func fromMatches(m Message, run string, from peer.ID) bool {
	switch m.Kind {
	case KindHeartbeat:
		return m.Heartbeat.Peer == from && m.Heartbeat.Run == run
	case KindProgress:
		return m.Progress.Peer == from && m.Progress.Run == run
	}
	return false
}

func (b *Bus) inspect(scores map[peer.ID]float64) {
	b.mu.Lock()
	b.scores = scores
	b.mu.Unlock()
}

// Score is p's gossipsub score as of the last inspection (every
// busScoreEvery), and whether p had one. Below busGraylistThreshold,
// everything p sends is ignored.
func (b *Bus) Score(p peer.ID) (float64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.scores[p]
	return s, ok
}

// Sent is what this peer queued for sending on gossipsub since NewBus,
// by content: "msg:<kind>" for the messages of each kind (its own and
// the ones it relays), and gossipsub's control: ihave, iwant, graft,
// prune, idontwant, subscriptions.
func (b *Bus) Sent() map[string]SentStat { return b.sent.stats() }

// Publish sends m on the topic of its kind.
func (b *Bus) Publish(ctx context.Context, m Message) error {
	t, ok := b.topics[m.Kind]
	if !ok {
		return fmt.Errorf("gossip: no topic for %s", m.Kind)
	}
	data, err := Encode(m)
	if err != nil {
		return err
	}
	return t.Publish(ctx, data)
}

// Close leaves the topics.
func (b *Bus) Close() {
	b.cancel()
	for _, t := range b.topics {
		t.Close()
	}
}
