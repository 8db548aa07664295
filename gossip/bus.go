package gossip

import (
	"context"
	"fmt"

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
// lowers the sender's gossipsub score. A valid message whose author the
// Gate has not admitted is ignored: neither delivered nor relayed, and
// no penalty for the honest peer that relayed it.
type Bus struct {
	ps     *pubsub.PubSub
	topics map[Kind]*pubsub.Topic
	cancel context.CancelFunc
}

// Gate decides whose gossip is delivered.
type Gate struct {
	// Admitted reports whether p's messages may be delivered (nil: all).
	Admitted func(p peer.ID) bool
	// Stranger, when set, is told of every valid message whose author
	// is not admitted (so the caller can greet it). It runs inside
	// gossipsub's validation and must not block.
	Stranger func(author peer.ID, m Message)
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
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithMaxMessageSize(busMaxMessage),
		pubsub.WithPeerExchange(true),
		pubsub.WithValidateQueueSize(busValidateQueue),
		pubsub.WithPeerOutboundQueueSize(busOutboundQueue),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gossipsub: %w", err)
	}
	b := &Bus{ps: ps, topics: map[Kind]*pubsub.Topic{}, cancel: cancel}
	for _, kind := range []Kind{KindHeartbeat, KindProgress} {
		name := TopicName(run, kind)
		kind := kind
		err := ps.RegisterTopicValidator(name, func(_ context.Context, _ peer.ID, pm *pubsub.Message) pubsub.ValidationResult {
			m, err := Decode(pm.Data)
			if err != nil || m.Kind != kind || !fromMatches(m, run, pm.GetFrom()) {
				return pubsub.ValidationReject
			}
			// Our own messages pass validation too before they go out.
			if pm.GetFrom() != h.ID() && !gate.Pass(pm.GetFrom(), m) {
				return pubsub.ValidationIgnore
			}
			pm.ValidatorData = m
			return pubsub.ValidationAccept
		})
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

func fromMatches(m Message, run string, from peer.ID) bool {
	switch m.Kind {
	case KindHeartbeat:
		return m.Heartbeat.Peer == from && m.Heartbeat.Run == run
	case KindProgress:
		return m.Progress.Peer == from && m.Progress.Run == run
	}
	return false
}

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
