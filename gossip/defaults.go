package gossip

import "time"

// The package's tunables, in one table: the caps on what a peer may claim
// in a message (checked before anything is used), the gossipsub queues
// of Bus, and MemNetwork's frame timeout. Each states its unit and what
// moving it trades.
const (
	// MaxMessageSize caps every gossip and control message (heartbeats,
	// progress, joins, groups, hellos), in bytes. Bulk tensors never travel
	// this way: gossipsub silently drops anything above 1 MiB, so we stay
	// far below. Larger: longer address lists and groups fit; smaller:
	// less a peer can make us parse.
	MaxMessageSize = 64 << 10

	// MaxMembers caps a group's member list (a Group, a downloaded
	// state's group), in peers. Larger: bigger rounds; smaller: less a
	// peer can make us allocate and hash.
	MaxMembers = 1024

	// MaxShare caps one member's part share in a Group: package
	// allreduce sizes parts in units of 1/MaxShare of the vector, so no
	// share exceeds the whole. It is part of the wire: a peer with a
	// smaller cap refuses the groups of one with a larger.
	MaxShare = 1024

	// maxMembership caps the peers a Membership holds; new keys beyond it
	// are ignored until members expire. MaxMembers: a group can hold no
	// more. Larger: bigger swarms; smaller: less a crowd of identities
	// can make every peer track (and hand to the swarm policy).
	maxMembership = MaxMembers

	// maxAddrs caps the addresses a heartbeat lists. Larger: peers with
	// many interfaces stay reachable on all; smaller: smaller heartbeats.
	maxAddrs = 16

	// maxStringField caps a free-text field (a device summary, one
	// address), in bytes; reasons get 4× it. Larger: longer reasons in
	// logs; smaller: smaller messages.
	maxStringField = 512

	// maxID caps a hex or peer identifier (run ID, peer ID, state hash,
	// round ID), in characters. Real ones are 32 to 64; more only grows
	// what a peer can make us keep.
	maxID = 128

	// maxSamples caps the samples a peer may claim for one step. Larger:
	// bigger batches per peer; smaller: less weight one peer can claim.
	maxSamples = 1 << 30

	// maxRate caps the link rate a peer may claim, in bytes/s (80
	// Tbit/s): above any real link, below float overflow in the deadline
	// arithmetic.
	maxRate = 1e13

	// busMaxMessage is the largest message gossipsub relays, in bytes;
	// above MaxMessageSize, so the cap that decides is Decode's. Larger
	// only lets peers send messages we refuse anyway.
	busMaxMessage = 4 * MaxMessageSize

	// busValidateQueue, busOutboundQueue and busSubscriptionBuffer are
	// gossipsub's queues, in messages: validation backlog, per-peer
	// outbound queue, and deliveries not yet read. Progress goes out
	// after every minibatch of every peer, and gossipsub's defaults (32)
	// drop silently when a busy CPU delays a reader, so they are sized
	// for bursts from a few hundred peers. Larger: fewer drops under
	// load; smaller: less memory per peer.
	busValidateQueue      = 1024
	busOutboundQueue      = 256
	busSubscriptionBuffer = 1024

	// busHeartbeatRate and busProgressRate are the messages per second
	// one author may have delivered on each topic, with bursts of twice
	// that; beyond them messages are ignored (not delivered, not
	// forwarded). Heartbeats go out every HeartbeatInterval (500 ms; 50 ms
	// in the in-process tests): 20/s is ten times the default. Progress
	// goes out per minibatch, 500/s is one every 2 ms; an ignored one is
	// superseded by the next (each carries the step's running total), so
	// a faster trainer loses only freshness. Larger: faster peers are
	// heard in full; smaller: less a flooding author costs every peer.
	busHeartbeatRate = 20
	busProgressRate  = 500

	// busMaxAuthors caps the authors the rate limiters track; past it,
	// idle ones are forgotten and new ones ignored until there is room.
	// Twice MaxMembers: every peer of the largest group, and as many
	// again arriving.
	busMaxAuthors = 2 * MaxMembers

	// busScoreEvery is how often the Bus copies gossipsub's peer scores
	// for Score. Shorter: fresher scores; longer: less copying.
	busScoreEvery = time.Second

	// memFrameTimeout is MemNetwork's default per-frame timeout, like the
	// real transport's frame deadlines. Longer: fewer spurious failures
	// on a loaded machine; shorter: dead peers fail tests sooner.
	memFrameTimeout = 5 * time.Second
)
