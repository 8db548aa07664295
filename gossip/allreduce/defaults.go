package allreduce

import "time"

// The package's tunables, in one table: the defaults that NewAverager and
// NewMatchmaker fill into zero config fields, and the caps on what other
// peers can make this one hold. Each states its unit and what moving it
// trades.
const (
	// defaultRoundTimeout is AveragerConfig.RoundTimeout when unset: the
	// cap on a round of small vectors, and the base of MinRoundTimeout
	// and OpenTimeout. It agrees with node.DefaultConfig; node always
	// passes its own (validated, > 0) value, so this default only reaches
	// callers that leave the field zero, such as tests. Longer: fewer
	// rounds cut off on slow or loaded machines; shorter: a dead member
	// stalls the swarm less.
	defaultRoundTimeout = 15 * time.Second

	// minRoundDivisor: MinRoundTimeout defaults to RoundTimeout divided
	// by it. Larger: fast rounds get tight deadlines, so a stalled member
	// is caught sooner; smaller: more room for a round slower than the
	// recent ones.
	minRoundDivisor = 10

	// openDivisor: OpenTimeout defaults to RoundTimeout divided by it.
	// Larger: an unreachable member fails the round sooner; smaller: a
	// slow dial is waited for.
	openDivisor = 5

	// defaultDeadlineFactor is AveragerConfig.DeadlineFactor when unset
	// (or ≤ 1): a round may take this many times the recent round time.
	// Larger: fewer rounds cut off by a passing slowdown; smaller: a dead
	// member costs less.
	defaultDeadlineFactor = 5

	// defaultMinLinkRate is AveragerConfig.MinLinkRate when unset, in
	// bytes/s (1 Mbit/s): the uplink assumed for members that have not
	// measured theirs, and the slowest a round waits for. Lower: longer
	// first rounds on big models; higher: slow volunteers cut off.
	defaultMinLinkRate = 125e3

	// minLinkRate is the least MinLinkRate an averager accepts, in
	// bytes/s (1 kB/s): below it a large model's deadlines would overflow
	// a time.Duration.
	minLinkRate = 1e3

	// defaultTransferSlack is AveragerConfig.TransferSlack when unset (or
	// < 1): the factor on the transfer time the links predict, room for
	// congestion, encoding and a loaded CPU. Larger: fewer rounds cut off
	// on a busy link; smaller: a stalled member is caught sooner.
	defaultTransferSlack = 3

	// capFactor: a round's deadline backs off to at most this many times
	// what its bytes need on the measured links (or RoundTimeout, if
	// larger), so backing off can outgrow a mismeasured link. Larger:
	// more room for a link slower than measured; smaller: a dead member
	// costs less after failures.
	capFactor = 4

	// resultWait is the quarters of a round's budget a sender waits for
	// an owner's average before repairing it from the other members, who
	// wait for their own copies until the deadline. Larger: more time for
	// a slow owner; smaller: more time left for the repair.
	resultWait = 3

	// smoothing is the weight of the newest sample in the moving averages
	// of the uplink rate and of the round time. Larger: follows a changing
	// link sooner; smaller: one odd round moves them less.
	smoothing = 0.2

	// minRateSample is the least a round must send to measure the
	// uplink, in bytes: smaller parts time latency, not bandwidth.
	minRateSample = 64 << 10

	// maxShareFactor: a member owns at most this many times an even split
	// among the members that can own parts, so a wrong or stale
	// measurement cannot swamp anyone. Larger: fast members take more off
	// slow ones; smaller: parts stay nearer even.
	maxShareFactor = 4

	// chunkValues is how many values one chunk of a part carries (256 KiB
	// of fp32): parts move, are averaged and come back chunk by chunk
	// (chunks.go). Every member must use the same (it is part of
	// ProtoAllReduce). Larger: fewer frames and checksums; smaller: the
	// stages overlap sooner, and less sits in buffers.
	chunkValues = 1 << 16

	// maxHeader caps a part header or a repair request, in bytes.
	maxHeader = 1 << 10

	// maxPendingRounds caps the rounds a peer tracks at once (its own in
	// flight plus ones announced by senders but not yet started locally),
	// so strangers cannot grow the table. Larger: more rounds in flight
	// (PowerSGD, Moshpit) before senders are refused; smaller: less memory.
	maxPendingRounds = 64

	// maxPendingPerPeer caps the not-yet-started rounds one peer may
	// announce: an honest member is at most a round or two ahead of us.
	maxPendingPerPeer = 4

	// keepResults is how many recent rounds' parts a peer keeps for
	// repairs and reports: a whole vector's bytes each. A member lags
	// the others by a round or two at most (it cannot start a round
	// before its last one is over, and PowerSGD runs two a step), and a
	// peer's kept buffers are recycled once they leave (kept.go).
	// Larger: a member further behind can still repair; smaller: less
	// memory, and buffers come back sooner.
	keepResults = 4

	// defaultJoinWindow is MatchConfig.JoinWindow when unset: how long an
	// assembler waits for the peers it expects after the first join.
	// Longer tolerates slower peers; shorter bounds the stall a dead peer
	// causes.
	defaultJoinWindow = 2 * time.Second

	// defaultJoinSlack is MatchConfig.Slack when unset: how much longer
	// than the join window a joiner waits for the group. Longer: fewer
	// retries behind a slow assembler; shorter: a dead assembler costs
	// less.
	defaultJoinSlack = 3 * time.Second

	// joinPolls is how often per join window the assembler checks whether
	// every expected peer joined, besides at each join (the view may
	// change meanwhile). More: a group closes sooner after the view
	// changes; fewer: less work.
	joinPolls = 20

	// maxJoinAhead is how many steps ahead of the assembler a join may be;
	// further ahead it is refused. Larger: peers far ahead still join;
	// smaller: less a peer can make us keep.
	maxJoinAhead = 2

	// defaultPenalty is AveragerConfig.Penalty when unset: how long a
	// peer suspected of sending different results to different members
	// (or of a false report) owns no part. Longer: a liar gets fewer
	// chances to void rounds; shorter: an honest member framed by a liar
	// is back sooner.
	defaultPenalty = 5 * time.Minute

	// maxPenaltyDoublings: repeated offences double the penalty up to
	// this many times (5 min → 5 h 20 min by default).
	maxPenaltyDoublings = 6

	// maxPenalised caps the peers a penalty table holds; when full the
	// penalty that ends first is dropped. Only fellow members of our
	// rounds can be named, so this bounds memory only.
	maxPenalised = 1024

	// keepAssemblies is how many steps back an assembler keeps its
	// assemblies. A join that far behind is answered "behind" anyway
	// while this exceeds maxJoinAhead, so it bounds memory only.
	keepAssemblies = 16
)
