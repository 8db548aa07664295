package gossip

import (
	"net"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Gossipsub peer scoring for a run's two topics. A small swarm's topics
// are quiet and bursty (a heartbeat every half second, progress per
// minibatch, silence while a round averages), so the scores that punish a
// peer for delivering too little (mesh deliveries, mesh failures) are off:
// they would punish honest peers during every round. What is scored is
// what a peer does wrong, and a little of what it does right:
//
//   - Invalid messages (they fail Decode, name another kind, run or
//     author): −10 × count², the count decaying to 1% over 10 minutes.
//     One costs −10, which an honest peer's earned credit absorbs; 4
//     cost −160, past the gossip threshold; 7 cost −490, graylisted.
//   - First deliveries: +0.1 each, capped at 100 per topic, and time in
//     the mesh: +0.01 per second, capped at 100 s. At most +11 per topic
//     and busTopicScoreCap overall, so credit earned honestly cannot pay
//     for a flood of invalid messages later.
//   - More than 16 peers from one IP address: −1 × excess² (26 peers:
//     −100; 36: −400), so a crowd of identities on one machine loses its
//     standing while a lab of 16 volunteers behind one NAT keeps it.
//     Loopback is exempt: demos and tests run every node there.
//   - Gossipsub protocol misbehaviour (broken IHAVE promises, GRAFTs
//     during backoff) beyond 6: −1 × excess², decaying over 10 minutes.
//
// Scores are kept 10 minutes after a peer disconnects, so reconnecting
// does not wash a penalty away.
const (
	busGossipThreshold    = -100 // below: no gossip (IHAVE/IWANT) to or from the peer
	busPublishThreshold   = -200 // below: our own messages are not sent to it
	busGraylistThreshold  = -400 // below: everything it sends is ignored
	busAcceptPXThreshold  = 5    // peer exchange only from peers that earned some credit
	busOpportunisticGraft = 2    // mesh median below this: graft better-scoring peers
	busTopicScoreCap      = 20
	busColocationLimit    = 16
)

// MisbehavingPenalty is the Gate.Penalty for a peer the application
// caught misbehaving: it takes the peer below busGossipThreshold (out of
// our mesh and gossip) but not below busPublishThreshold, so its
// heartbeats and ours still flow and it can be seen to recover.
const MisbehavingPenalty = 150

// busScore is the scoring for run's topics. appScore, when not nil, adds
// what the application knows about a peer (admission, verified rounds).
func busScore(run string, appScore func(peer.ID) float64) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	if appScore == nil {
		appScore = func(peer.ID) float64 { return 0 }
	}
	topic := func() *pubsub.TopicScoreParams {
		return &pubsub.TopicScoreParams{
			TopicWeight:                    1,
			TimeInMeshWeight:               0.01,
			TimeInMeshQuantum:              time.Second,
			TimeInMeshCap:                  100,
			FirstMessageDeliveriesWeight:   0.1,
			FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(10 * time.Minute),
			FirstMessageDeliveriesCap:      100,
			InvalidMessageDeliveriesWeight: -10,
			InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(10 * time.Minute),
		}
	}
	_, v4loop, _ := net.ParseCIDR("127.0.0.0/8")
	_, v6loop, _ := net.ParseCIDR("::1/128")
	params := &pubsub.PeerScoreParams{
		Topics: map[string]*pubsub.TopicScoreParams{
			TopicName(run, KindHeartbeat): topic(),
			TopicName(run, KindProgress):  topic(),
		},
		TopicScoreCap:               busTopicScoreCap,
		AppSpecificScore:            appScore,
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -1,
		IPColocationFactorThreshold: busColocationLimit,
		IPColocationFactorWhitelist: []*net.IPNet{v4loop, v6loop},
		BehaviourPenaltyWeight:      -1,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
	}
	thresholds := &pubsub.PeerScoreThresholds{
		GossipThreshold:             busGossipThreshold,
		PublishThreshold:            busPublishThreshold,
		GraylistThreshold:           busGraylistThreshold,
		AcceptPXThreshold:           busAcceptPXThreshold,
		OpportunisticGraftThreshold: busOpportunisticGraft,
	}
	return params, thresholds
}
