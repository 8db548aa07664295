package allreduce

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
)

// Round is one averaging round as announced by its assembler. Every
// member holds the same Round, so every member derives the same parts.
type Round struct {
	ID      string
	Step    uint64
	Members []peer.ID // ordered; member i owns part i
	Samples []int     // weight of each member: samples behind its gradient
	// Shares sizes the parts: member i owns a slice of the vector
	// proportional to Shares[i]; 0 owns nothing (a peer that cannot take
	// inbound streams). Nil splits evenly.
	Shares []int
	// Rates are the members' measured uplinks in bytes/s (0 or missing:
	// unknown); they size the round's deadline (see TransferTime).
	Rates []float64
	// Refs are the members' Moshpit reference tags (nil: none sent); see
	// gossip.Join.Ref. Part of the ID.
	Refs []string
	// Codecs, when set, chooses this round's codecs for the values
	// [lo, hi) of its vector, parts and averages, over the averager's
	// own: a protocol running several rounds of differently laid out
	// vectors (PowerSGD) says per round what each range holds. Every
	// member must set the same.
	Codecs func(lo, hi int) (part, result compression.Codec)
}

// Bounds returns the half-open range [lo, hi) of part i of a vector of n
// values.
func (r Round) Bounds(n, i int) (lo, hi int) {
	if r.Shares == nil {
		return PartBounds(n, len(r.Members), i)
	}
	var before, total int64
	for j, s := range r.Shares {
		if j < i {
			before += int64(s)
		}
		total += int64(s)
	}
	return int(int64(n) * before / total), int(int64(n) * (before + int64(r.Shares[i])) / total)
}

// Index returns p's position in the round, or -1.
func (r Round) Index(p peer.ID) int { return slices.Index(r.Members, p) }

// RoundID derives the round identifier from what defines the round, so
// two assemblers can never announce different rounds under one ID.
func RoundID(run string, step uint64, attempt uint32, members []peer.ID, samples, shares []int) string {
	h := sha256.New()
	h.Write([]byte(run))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], step)
	h.Write(b[:])
	binary.LittleEndian.PutUint32(b[:4], attempt)
	h.Write(b[:4])
	for i, m := range members {
		h.Write([]byte(m))
		binary.LittleEndian.PutUint64(b[:], uint64(samples[i]))
		h.Write(b[:])
	}
	for _, s := range shares {
		binary.LittleEndian.PutUint64(b[:], uint64(s))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// groupID is the ID of round g announces: RoundID, with the members'
// reference tags folded into the run when there are any.
func groupID(g gossip.Group) string {
	run := g.Run
	if g.Refs != nil {
		run += "\x00refs\x00" + strings.Join(g.Refs, ",")
	}
	return RoundID(run, g.Step, g.Attempt, g.Members, g.Samples, g.Shares)
}

// PartBounds returns the half-open range [lo, hi) of part i when a vector
// of n values is split among k owners.
func PartBounds(n, k, i int) (lo, hi int) {
	return i * n / k, (i + 1) * n / k
}

// AveragerConfig tunes the all-reduce.
type AveragerConfig struct {
	Codec compression.Codec // lossy stage for parts (and results, unless Result is set); nil: fp32
	// Result encodes the owners' averages; nil: Codec. Top-k parts want
	// Sparse here: the average of a few sparse parts is sparse, and
	// truncating it again would lose what no error feedback recovers.
	Result compression.Codec
	// PartCodec and ResultCodec, when set, choose the codec of the values
	// [lo, hi) of the vector instead of Codec and Result: a per-tensor
	// compression.Policy. Every member must choose alike (they are part of
	// the run); receivers bound frames by the widest codec either way.
	PartCodec, ResultCodec func(lo, hi int) compression.Codec
	Lossless               compression.Lossless // lossless stage after it
	// RoundTimeout caps a round of small vectors (default 15 s): a
	// member that has not delivered its part by the deadline fails the
	// round for everyone waiting on it. The deadline actually used (see
	// roundBudget) is what the round's bytes need on the members'
	// measured links, or DeadlineFactor × the recent round time,
	// whichever is larger, never below MinRoundTimeout; failed rounds in
	// a row double it; the cap grows past RoundTimeout with the bytes (a
	// large model on a slow link). So a dead or stalled member costs
	// seconds, while a slow swarm is not cut off.
	RoundTimeout time.Duration
	// OnDrop hears of a contribution left out of a round because it held
	// NaN or Inf (nil: nobody hears).
	OnDrop func(round string, sender peer.ID, err error)
	// MinRoundTimeout floors the adaptive deadline (default RoundTimeout/10).
	MinRoundTimeout time.Duration
	// DeadlineFactor multiplies the recent round time (default 5).
	DeadlineFactor float64
	// OpenTimeout bounds opening a stream to a member, a dial included,
	// apart from moving its part (default RoundTimeout/5; doubled for
	// each failed round in a row, within the round's deadline): a member
	// that cannot be reached fails fast, one that is merely slow is
	// waited for.
	OpenTimeout time.Duration
	// MinLinkRate is the uplink, in bytes/s, assumed for members that have
	// not measured theirs (default 125 kB/s, 1 Mbit/s: the slowest link a
	// swarm is built for). Lower: longer first rounds on big models.
	MinLinkRate float64
	// TransferSlack multiplies the transfer time the links predict
	// (default 3): room for congestion, encoding and a loaded CPU.
	TransferSlack float64
	// Clock times rounds, deadlines and uplinks (nil: the wall clock);
	// tests pass a clock.Mock.
	Clock clock.Clock
	// MaxSamples caps the weight an owner gives any member's part (0: no
	// cap): a member's claimed sample count is its weight in the mean, so
	// without a cap one member claiming 2^30 samples dictates it. Every
	// owner caps alike, so members still get identical averages. A node
	// sets the run's target batch: no honest step needs more.
	MaxSamples int
	// Aggregate is how an owner combines the members' copies of its part
	// (default mean). Every member of a run must use the same rule; it
	// applies to every round, whatever protocol runs it (PowerSGD's P
	// and Q, Moshpit's parameters).
	Aggregate Aggregate
	// ContentOrder sums the copies of a part in an order set by their
	// contents (byContent) instead of by member: members are ordered by
	// peer ID, new every run, and float sums differ in the last bits by
	// order. A deterministic run sets it, so two runs of the same
	// command average to the same bits. Every member of a run must set
	// the same (it is part of the run config).
	ContentOrder bool
	// OnMisbehaving hears of a peer suspected of misbehaving in a round:
	// members hold different results of a part it owns, or its report of
	// the results or its repair answer contradicts what most members got
	// (nil: nobody hears). Such a peer also owns no part for a while (see
	// Penalty and Penalised); a peer score can hang off this hook.
	OnMisbehaving func(round string, p peer.ID, reason string)
	// Penalty is how long a suspect owns no part (default 5 min); each
	// repeat within the penalty's length again doubles it, up to 64×.
	// Longer: a liar voids fewer rounds; shorter: an honest owner framed
	// by a liar is back sooner.
	Penalty time.Duration
}

// Averager runs reduce-scatter + all-gather all-reduces over a Transport.
// Member i streams part j of its vector to member j; member j averages the
// parts in member order, weighted by samples, encodes the average once and
// sends those same bytes back to every member. Every member, the owner
// too, decodes the same bytes, so all end with bit-identical averages.
type Averager struct {
	t   gossip.Transport
	cfg AveragerConfig

	clk clock.Clock

	// mu guards the round bookkeeping below; goroutines waiting on it
	// (senders being served, the owner's reduction, repairs) block on
	// changed, which is closed and replaced whenever it moves (see await).
	mu        sync.Mutex
	changed   chan struct{}
	rounds    roundTable          // rounds we own a part of (roundstate.go)
	results   map[string]*results // recent rounds' final parts, for repairs
	resultSeq uint64              // orders results, oldest first
	// history of rounds by vector length: PowerSGD's two rounds per step
	// (and Moshpit's parameter rounds) differ in size, and one's success
	// must neither reset the other's backoff nor skew its round time.
	history map[int]*roundHistory
	// penalties: peers suspected of misbehaving, given no part for a
	// while (penalty.go).
	penalties penalties
	spares    [][]byte // kept buffers for reuse (kept.go)

	bytesSent, bytesRecv atomic.Int64
	gate                 compression.Gate // whether the lossless stage pays on our link
	last                 atomic.Int64     // the deadline of the latest round, ns; 0 = none yet
	uplink               atomic.Uint64    // moving average of the uplink rate, float64 bits of bytes/s; 0 = none yet
	held, verified       atomic.Int64     // the latest successful round's RoundTimes, ns
}

// RoundTimes is how a successful round's time split: from its start
// until every part was held, then waiting for the members' reports.
type RoundTimes struct{ Held, Verified time.Duration }

// LastRound is the split of the latest successful round (zero before
// the first): where a slow round's time went.
func (a *Averager) LastRound() RoundTimes {
	return RoundTimes{time.Duration(a.held.Load()), time.Duration(a.verified.Load())}
}

// Aggregate is the rule by which this peer's owned parts are averaged.
func (a *Averager) Aggregate() Aggregate { return a.cfg.Aggregate }

// Uplink is the rate, in bytes/s, at which this peer's parts reached
// their owners in recent rounds (0 until measured): from the first byte
// sent to the last owner's receipt, all parts together. It does not
// depend on how the vector is split, so sizing parts by it does not feed
// back on itself, and it is the link a home volunteer is short of.
func (a *Averager) Uplink() float64 { return math.Float64frombits(a.uplink.Load()) }

func (a *Averager) observeUplink(bytes int, d time.Duration) {
	if bytes < minRateSample || d <= 0 {
		return
	}
	rate := float64(bytes) / d.Seconds()
	if old := a.Uplink(); old > 0 {
		rate = (1-smoothing)*old + smoothing*rate
	}
	a.uplink.Store(math.Float64bits(rate))
}

// roundHistory is what past rounds of one vector length say: the moving
// average of successful round time (0: none yet), and failures in a row.
type roundHistory struct {
	recent   time.Duration
	failures int
}

// observe records a round over n values: its duration if it succeeded,
// else one more failure in a row.
func (a *Averager) observe(n int, d time.Duration, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.history[n]
	if h == nil {
		h = &roundHistory{}
		a.history[n] = h
	}
	switch {
	case !ok:
		h.failures++
	case h.recent == 0:
		h.recent, h.failures = d, 0
	default:
		h.recent, h.failures = time.Duration((1-smoothing)*float64(h.recent)+smoothing*float64(d)), 0
	}
}

// budget is the deadline of round r over n values and the time opening
// one of its streams may take (see roundBudget).
func (a *Averager) budget(r Round, n int) (round, open time.Duration) {
	transfer := TransferTime(r, n, a.cfg.MinLinkRate, func(lo, hi int) (int, int) {
		return a.partCodec(r, lo, hi).MaxEncodedLen(hi - lo), a.resultCodec(r, lo, hi).MaxEncodedLen(hi - lo)
	})
	a.mu.Lock()
	var h roundHistory
	if p := a.history[n]; p != nil {
		h = *p
	}
	a.mu.Unlock()
	b := roundBudget{
		open: a.cfg.OpenTimeout, transfer: transfer, slack: a.cfg.TransferSlack,
		recent: h.recent, factor: a.cfg.DeadlineFactor, floor: a.cfg.MinRoundTimeout,
		capFloor: a.cfg.RoundTimeout, failures: h.failures,
	}
	return b.deadline(), b.openTimeout()
}

// Deadline is the time the latest round was given (RoundTimeout before
// any): what a peer waiting on this one's next round should expect.
func (a *Averager) Deadline() time.Duration {
	if d := time.Duration(a.last.Load()); d > 0 {
		return d
	}
	return a.cfg.RoundTimeout
}

// NewAverager registers the all-reduce protocol on t.
func NewAverager(t gossip.Transport, cfg AveragerConfig) *Averager {
	if cfg.RoundTimeout <= 0 {
		cfg.RoundTimeout = defaultRoundTimeout
	}
	if cfg.MinRoundTimeout <= 0 || cfg.MinRoundTimeout > cfg.RoundTimeout {
		cfg.MinRoundTimeout = cfg.RoundTimeout / minRoundDivisor
	}
	if cfg.DeadlineFactor <= 1 {
		cfg.DeadlineFactor = defaultDeadlineFactor
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = cfg.RoundTimeout / openDivisor
	}
	if !(cfg.MinLinkRate > 0) {
		cfg.MinLinkRate = defaultMinLinkRate
	}
	cfg.MinLinkRate = max(cfg.MinLinkRate, minLinkRate)
	if !(cfg.TransferSlack >= 1) {
		cfg.TransferSlack = defaultTransferSlack
	}
	if cfg.Codec == nil {
		cfg.Codec = compression.FP32{} // a nil codec panicked in the first round
	}
	if cfg.Penalty <= 0 {
		cfg.Penalty = defaultPenalty
	}
	if cfg.Result == nil {
		cfg.Result = cfg.Codec
	}
	a := &Averager{t: t, cfg: cfg, clk: gossip.OrWall(cfg.Clock), changed: make(chan struct{}), rounds: newRoundTable(),
		results: map[string]*results{}, history: map[int]*roundHistory{}, penalties: newPenalties()}
	t.Handle(gossip.ProtoAllReduce, a.serve)
	t.Handle(gossip.ProtoPart, a.serveRepair)
	t.Handle(gossip.ProtoDigest, a.serveReport)
	return a
}

// BytesSent and BytesReceived count all-reduce payload bytes.
func (a *Averager) BytesSent() int64     { return a.bytesSent.Load() }
func (a *Averager) BytesReceived() int64 { return a.bytesRecv.Load() }

type partHeader struct {
	Round   string `json:"round"`
	Sender  int    `json:"sender"`
	Part    int    `json:"part"`
	Samples int    `json:"samples"`
}

// partCodec is the codec of our contribution to values [lo, hi) of r.
func (a *Averager) partCodec(r Round, lo, hi int) compression.Codec {
	switch {
	case r.Codecs != nil:
		part, _ := r.Codecs(lo, hi)
		return part
	case a.cfg.PartCodec != nil:
		return a.cfg.PartCodec(lo, hi)
	}
	return a.cfg.Codec
}

// resultCodec is the codec of the average of values [lo, hi) of r.
func (a *Averager) resultCodec(r Round, lo, hi int) compression.Codec {
	switch {
	case r.Codecs != nil:
		_, result := r.Codecs(lo, hi)
		return result
	case a.cfg.ResultCodec != nil:
		return a.cfg.ResultCodec(lo, hi)
	}
	return a.cfg.Result
}

// maxPart and maxResult bound the frames of count values we accept in r:
// with a per-range choice, by the widest codec a range can get (Mixed).
func (a *Averager) maxPart(r Round, count int) int {
	if r.Codecs != nil || a.cfg.PartCodec != nil {
		return maxFrame(compression.Mixed{}, count)
	}
	return maxFrame(a.cfg.Codec, count)
}

func (a *Averager) maxResult(r Round, count int) int {
	if r.Codecs != nil || a.cfg.ResultCodec != nil {
		return maxFrame(compression.Mixed{}, count)
	}
	return maxFrame(a.cfg.Result, count)
}

// encodeAppend appends a frame of values in c to dst, with the lossless
// stage only where it pays: on a link faster than the stage saves time
// (measured uplink rate against the stage's measured speed and ratio),
// it is skipped. Receivers read the stage from the frame, so this needs
// no agreement.
func (a *Averager) encodeAppend(dst []byte, c compression.Codec, values []float32) ([]byte, error) {
	l := a.cfg.Lossless
	if l != compression.LosslessNone && !a.gate.Use(a.Uplink()) {
		l = compression.LosslessNone
	}
	enc, st, err := compression.EncodePartStats(dst, c, l, values)
	a.gate.Observe(st)
	return enc, err
}

// maxFrame bounds a frame of count values encoded with c: payload plus
// room for headers and a lossless stage that failed to shrink.
func maxFrame(c compression.Codec, count int) int {
	return c.MaxEncodedLen(count) + count/16 + compression.FrameOverhead + 1024
}

// staleAfter is how long a round nobody started is kept: its members
// gave up on it by then.
func (a *Averager) staleAfter() time.Duration { return max(a.cfg.RoundTimeout, a.Deadline()) }

// signalLocked wakes every goroutine in await; a.mu must be held. One
// broadcast serves all rounds: a round moves a few times (started, all
// parts in, finished, each part's direct outcome), and each move wakes
// only the goroutines of the rounds in flight, which check and sleep.
func (a *Averager) signalLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// await blocks until cond, checked under a.mu, holds (true), or until
// done is closed or expired fires (false). Nil channels never end it.
func (a *Averager) await(done <-chan struct{}, expired <-chan time.Time, cond func() bool) bool {
	for {
		a.mu.Lock()
		ok, changed := cond(), a.changed
		a.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-done:
			return false
		case <-expired:
			return false
		}
	}
}

func (a *Averager) forget(id string) {
	a.mu.Lock()
	a.rounds.forget(id)
	a.mu.Unlock()
}

// AllReduce averages local with the other members of r, weighted by
// r.Samples, and writes the result into out (len(out) == len(local)).
// local is never modified, so a failed round can be retried with it. On
// error out holds garbage and must not be applied.
func (a *Averager) AllReduce(ctx context.Context, r Round, local, out []float32) error {
	return a.allReduce(ctx, r, local, out, nil)
}

// AllReduceEF is AllReduce with error feedback, for lossy codecs: it sends
// local + residual and, when the round succeeds, leaves in residual what
// the codec dropped from this peer's contribution, to be sent with the
// next round. A failed round leaves residual as it was, so a retry sends
// the same values. (The owner's encoding of the average is shared by all
// members and not fed back: it keeps replicas identical.)
func (a *Averager) AllReduceEF(ctx context.Context, r Round, local, residual, out []float32) error {
	if len(residual) != len(local) {
		return fmt.Errorf("allreduce: residual has %d values, local %d", len(residual), len(local))
	}
	// Two vectors per round on the training path: reused, not allocated.
	comp, dropped := getVec(len(local)), getVec(len(local))
	defer putVec(comp)
	defer putVec(dropped)
	for i := range *comp {
		(*comp)[i] = local[i] + residual[i]
	}
	clear(*dropped)
	if err := a.allReduce(ctx, r, *comp, out, *dropped); err != nil {
		return err
	}
	copy(residual, *dropped)
	return nil
}

// spareVecs are vectors for reuse, of whatever sizes rounds asked for (a
// part, a chunk, a whole vector): a sync.Pool hands back any one, and
// dropping one too small for a part meant fresh memory, and its page
// faults, in every round.
var spareVecs struct {
	sync.Mutex
	free []*[]float32
}

// maxSpareVecs caps spareVecs: a round takes a copy per member and a few more.
const maxSpareVecs = 32

// getVec returns a vector of n values (contents unspecified): the
// smallest spare that fits, or a new one.
func getVec(n int) *[]float32 {
	spareVecs.Lock()
	best := -1
	for i, p := range spareVecs.free {
		if cap(*p) >= n && (best < 0 || cap(*p) < cap(*spareVecs.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		p := spareVecs.free[best]
		last := len(spareVecs.free) - 1
		spareVecs.free[best], spareVecs.free[last] = spareVecs.free[last], nil
		spareVecs.free = spareVecs.free[:last]
		spareVecs.Unlock()
		*p = (*p)[:n]
		return p
	}
	spareVecs.Unlock()
	v := make([]float32, n)
	return &v
}

// putVec spares p; when the spares are full, the smallest goes.
func putVec(p *[]float32) {
	spareVecs.Lock()
	defer spareVecs.Unlock()
	if len(spareVecs.free) < maxSpareVecs {
		spareVecs.free = append(spareVecs.free, p)
		return
	}
	small := 0
	for i, q := range spareVecs.free {
		if cap(*q) < cap(*spareVecs.free[small]) {
			small = i
		}
	}
	if cap(*p) > cap(*spareVecs.free[small]) {
		spareVecs.free[small] = p
	}
}

// allReduce runs one round; when dropped is non-nil it receives, per value
// this peer sent, what the codec dropped (zero for the part it owns).
func (a *Averager) allReduce(ctx context.Context, r Round, local, out, dropped []float32) error {
	if len(out) != len(local) {
		return fmt.Errorf("allreduce: out has %d values, local %d", len(out), len(local))
	}
	me := r.Index(a.t.Self())
	if me < 0 {
		return fmt.Errorf("allreduce: %s is not a member of round %s", a.t.Self(), r.ID)
	}
	if len(r.Samples) != len(r.Members) {
		return errors.New("allreduce: round has mismatched members and samples")
	}
	// A weight is a count of samples: zero or less (which matchmaking
	// refuses) would let one member cancel the others' weight.
	if i := slices.IndexFunc(r.Samples, func(s int) bool { return s <= 0 }); i >= 0 {
		return fmt.Errorf("allreduce: round %s gives member %d %d samples, want > 0", truncate(r.ID, 8), i, r.Samples[i])
	}
	k := len(r.Members)
	n := len(local)
	lo, hi := r.Bounds(n, me)
	started := a.clk.Now()
	budget, open := a.budget(r, n)
	a.last.Store(int64(budget))
	deadline := started.Add(budget)
	// A result not in by three quarters of the budget is fetched from
	// the members that have it (repair) in the quarter left.
	resultBy := started.Add(budget * resultWait / 4)
	ctx, cancel := a.clk.WithDeadline(ctx, deadline)
	defer cancel()

	own := local[lo:hi]
	if c := a.partCodec(r, lo, hi); c.ID() != compression.IDFP32 && lo < hi {
		// Our own copy goes through the codec like everyone else's: a
		// sparse codec's averages stay sparse, and error feedback covers
		// this part too.
		var err error
		if own, err = roundTrip(c, own); err != nil {
			return fmt.Errorf("allreduce: own part: %w", err)
		}
		if dropped != nil {
			for i, x := range local[lo:hi] {
				dropped[lo+i] = x - own[i]
			}
		}
	}
	// The average of our part is kept from the start, so every stream
	// that will send from it can hold it as soon as it is admitted.
	var kept *keptBuf
	if lo < hi {
		kept = a.newKept(maxChunked(hi-lo, func(count int) int { return a.maxResult(r, count) }))
	}
	a.mu.Lock()
	rs, err := a.rounds.start(r, me, lo, hi, own, deadline, a.clk.Now(), a.staleAfter())
	if err == nil {
		rs.kept = kept
		a.signalLocked() // senders waiting for the round to start
	} else {
		a.dropLocked(kept)
	}
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("allreduce: round %s was already run", truncate(r.ID, 8))
	}
	// Senders already being served hold rs; dropping the table entry at
	// the end keeps the table as small as the rounds in flight.
	defer a.forget(r.ID)

	res := a.track(r, me, deadline)
	// Our report goes out once every part's direct outcome is known, even
	// if the round is void for us by then: others' repairs and checks
	// need it. So it has the round's deadline, not our cancel.
	rctx, rcancel := a.clk.WithDeadline(context.Background(), deadline)
	go func() {
		defer rcancel()
		a.sendReports(rctx, r, res, open)
	}()
	var wg sync.WaitGroup
	errs := make(chan error, k)
	var upMu sync.Mutex
	var up upload // our parts' delivery, for the uplink rate
	for j := range r.Members {
		if j == me {
			continue
		}
		if plo, phi := r.Bounds(n, j); plo == phi {
			a.resolve(res, j, []byte{}, nil) // an empty part: nothing to exchange
			continue
		}
		wg.Add(1)
		go func(j int) {
			defer wg.Done()
			kb, sent, err := a.exchange(ctx, r, me, j, local, out, dropped, open, resultBy)
			a.resolveKept(res, j, kb)
			upMu.Lock()
			up.add(sent)
			upMu.Unlock()
			if err == nil {
				return
			}
			if errors.Is(err, errOwnerFailed) || errors.Is(err, errNotSent) {
				errs <- fmt.Errorf("part %d: %w", j, err)
			} else {
				plo, phi := r.Bounds(n, j)
				_, rerr := a.repair(ctx, r, res, j, out[plo:phi])
				if rerr == nil {
					return
				}
				errs <- fmt.Errorf("part %d with %s: %w; repair: %v", j, r.Members[j].ShortString(), err, rerr)
			}
			// The round is void for us: stop waiting for parts, so our
			// own senders hear so now rather than at the timeout.
			cancel()
		}(j)
	}

	var ownErr error
	if lo < hi {
		var kb *keptBuf
		kb, ownErr = a.reduceOwnPart(ctx, rs, r, out[lo:hi])
		a.resolveKept(res, me, kb)
	} else {
		a.mu.Lock()
		rs.finish(nil, nil)
		a.signalLocked()
		a.mu.Unlock()
		a.resolve(res, me, []byte{}, nil)
	}
	wg.Wait()
	close(errs)
	// Receipts time the uplink whatever became of the round: a member
	// too slow for every round must still be measured to get less work.
	a.observeUplink(up.bytes, up.last.Sub(up.first))
	for err := range errs {
		a.observe(n, 0, false)
		return fmt.Errorf("allreduce round %s: %w", truncate(r.ID, 8), err)
	}
	if ownErr != nil {
		a.observe(n, 0, false)
		return fmt.Errorf("allreduce round %s: %w", truncate(r.ID, 8), ownErr)
	}
	// The round's time is until we held every part: a member that stalls
	// before reporting keeps us waiting until the deadline, which must
	// not become the recent round time.
	took := a.clk.Since(started)
	if err := a.verify(r, res, deadline); err != nil {
		a.observe(n, 0, false)
		return fmt.Errorf("allreduce round %s: %w", truncate(r.ID, 8), err)
	}
	a.observe(n, took, true)
	a.held.Store(int64(took))
	a.verified.Store(int64(a.clk.Since(started) - took))
	return nil
}

// upload is what our part copies of a round took to reach their owners:
// sent concurrently, they share our uplink, so all bytes over the span
// from the first send to the last receipt is its rate.
type upload struct {
	bytes       int
	first, last time.Time
}

func (u *upload) add(v upload) {
	if v.bytes == 0 {
		return // not delivered: no receipt to time
	}
	if u.bytes == 0 || v.first.Before(u.first) {
		u.first = v.first
	}
	if v.last.After(u.last) {
		u.last = v.last
	}
	u.bytes += v.bytes
}

// reduceOwnPart averages this peer's part chunk by chunk, each as soon
// as every member's copy of it is in, and publishes each encoded chunk
// for the senders at once (chunks.go). The clipped mean scales whole
// copies by their norms, so under it the part is averaged once all of
// it is in, then published chunk by chunk.
func (a *Averager) reduceOwnPart(ctx context.Context, rs *roundState, r Round, out []float32) (*keptBuf, error) {
	a.mu.Lock()
	lo, hi, kb := rs.lo, rs.hi, rs.kept
	a.mu.Unlock()
	n := hi - lo
	kept := kb.b
	finish := func(err error) (*keptBuf, error) {
		a.mu.Lock()
		var enc []byte
		if err == nil {
			enc = kept
			kb.b = kept
		}
		rs.finish(enc, err)
		free := rs.release()
		if err != nil {
			a.dropLocked(kb)
			kb = nil
		}
		a.signalLocked() // senders waiting for the outcome
		a.mu.Unlock()
		putVecs(free)
		return kb, err
	}
	expire := func() (*keptBuf, error) {
		a.mu.Lock()
		err := rs.expire(ctx.Err())
		free := rs.release()
		a.dropLocked(kb)
		a.signalLocked()
		a.mu.Unlock()
		putVecs(free)
		return nil, err
	}
	weights := cappedWeights(r.Samples, a.cfg.MaxSamples)
	var whole []float32 // the clipped mean of the whole part
	if a.cfg.Aggregate == AggregateClip {
		if !a.await(ctx.Done(), nil, rs.complete) {
			return expire()
		}
		a.mu.Lock()
		parts := rs.parts()
		a.mu.Unlock()
		ws := weights
		if a.cfg.ContentOrder {
			parts, ws = byContent(parts, ws)
		}
		whole = a.cfg.Aggregate.reduce(parts, ws)
	}
	scratch := getVec(min(n, chunkValues))
	defer putVec(scratch)
	for c := range chunkCount(n) {
		clo, chi := chunkBounds(n, c)
		var avg []float32
		if whole != nil {
			avg = whole[clo:chi]
		} else {
			if !a.await(ctx.Done(), nil, func() bool { return rs.chunkDone(c) }) {
				return expire()
			}
			a.mu.Lock()
			xs := rs.chunkParts(c, clo, chi)
			a.mu.Unlock()
			ws := weights
			if a.cfg.ContentOrder {
				xs, ws = byContent(xs, ws)
			}
			avg = a.cfg.Aggregate.reduceInto((*scratch)[:chi-clo], xs, ws)
		}
		var frame []byte
		var err error
		if kept, frame, err = a.appendChunk(kept, a.resultCodec(r, lo+clo, lo+chi), avg); err != nil {
			return finish(err)
		}
		// The owner uses the decoded bytes too: that is what makes every
		// member's copy bit-identical under a lossy codec.
		if err := compression.DecodePart(out[clo:chi], frame[1:]); err != nil {
			return finish(err)
		}
		a.mu.Lock()
		rs.publish(kept)
		a.signalLocked() // senders waiting for the chunk
		a.mu.Unlock()
	}
	return finish(nil)
}

// cappedWeights is samples with every count above limit (when limit > 0)
// lowered to limit.
func cappedWeights(samples []int, limit int) []int {
	if limit <= 0 || !slices.ContainsFunc(samples, func(s int) bool { return s > limit }) {
		return samples
	}
	out := slices.Clone(samples)
	for i, s := range out {
		out[i] = min(s, limit)
	}
	return out
}

// WeightedMean returns Σ w_m·x_m / Σ w_m over the non-nil x_m, accumulated in member order with
// explicit float32 roundings so every architecture computes the same bits
// (the conversions forbid fusing into FMA).
func WeightedMean(xs [][]float32, weights []int) []float32 {
	x := firstPresent(xs)
	if x == nil {
		return nil
	}
	return weightedMeanInto(make([]float32, len(x)), xs, weights)
}

// weightedMeanInto is WeightedMean into acc (overwritten; as long as the
// copies).
func weightedMeanInto(acc []float32, xs [][]float32, weights []int) []float32 {
	if firstPresent(xs) == nil {
		return nil
	}
	clear(acc)
	var total float32
	for m, x := range xs {
		if x == nil {
			continue // a dropped contribution
		}
		w := float32(weights[m])
		total += w
		x = x[:len(acc)]
		for e := range acc {
			acc[e] = acc[e] + float32(w*x[e])
		}
	}
	inv := float32(1) / total
	for e := range acc {
		acc[e] = float32(acc[e] * inv)
	}
	return acc
}

// exchange sends this peer's copy of part j to its owner, chunk by
// chunk, and receives the averaged part back into out as the owner makes
// it, while later chunks are still going out. It returns the average's
// bytes as kept (chunks.go), and when the copy began to go out and when
// the owner confirmed it had it all (zero until then).
func (a *Averager) exchange(ctx context.Context, r Round, me, j int, local, out, dropped []float32, open time.Duration, resultBy time.Time) (result *keptBuf, sent upload, err error) {
	lo, hi := r.Bounds(len(local), j)
	// Opening has its own budget: an unreachable owner fails the round
	// now, not at its end, and a slow dial does not eat the transfer's.
	octx, ocancel := a.clk.WithTimeout(ctx, open)
	s, err := a.t.Open(octx, r.Members[j], gossip.ProtoAllReduce)
	ocancel()
	if err != nil {
		return nil, sent, fmt.Errorf("open: %w: %w", errNotSent, err)
	}
	ok := false
	defer func() {
		if !ok {
			s.Reset()
		}
	}()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	// A part shares our uplink with the other k-2, and its receipt and
	// average wait on the other members' parts: frames here are bounded
	// by the round's budget, not by one frame's size at one link's rate.
	wait := func() { s.SetTimeout(max(a.clk.Until(resultBy), time.Millisecond)) }
	wait()

	hdr, _ := json.Marshal(partHeader{Round: r.ID, Sender: me, Part: j, Samples: r.Samples[me]})
	if err := s.Send(hdr); err != nil {
		return nil, sent, err
	}
	a.bytesSent.Add(int64(len(hdr)))
	type received struct {
		kept    *keptBuf
		receipt time.Time
		err     error
	}
	// Either side failing resets the stream, which fails the other: the
	// first error is the one that says what went wrong.
	var first struct {
		sync.Once
		err error
	}
	fail := func(err error) {
		first.Do(func() { first.err = err })
		s.Reset()
	}
	back := make(chan received, 1)
	go func() {
		kept, receipt, err := a.receiveAverage(s, r, lo, hi, out[lo:hi], wait)
		if err != nil {
			fail(err) // the owner failed us: our copy need not go on
		}
		back <- received{kept, receipt, err}
	}()
	begun := a.clk.Now()
	bytes, serr := a.sendCopy(s, r, lo, hi, local, dropped, wait)
	if serr != nil {
		fail(serr) // the owner cannot average without our copy: stop reading
	}
	got := <-back
	if !got.receipt.IsZero() {
		sent = upload{bytes: bytes, first: begun, last: got.receipt}
	}
	switch {
	case got.err != nil && errors.Is(got.err, errOwnerFailed):
		return nil, sent, got.err // the owner said why
	case serr != nil || got.err != nil:
		return nil, sent, first.err
	}
	ok = true
	s.Close()
	return got.kept, sent, nil
}

// sendCopy sends our copy of values [lo, hi) chunk by chunk, each
// encoded into one reused buffer, and reports the bytes sent. With
// dropped it also records what the codec dropped from each value.
func (a *Averager) sendCopy(s gossip.Stream, r Round, lo, hi int, local, dropped []float32, wait func()) (int, error) {
	n := hi - lo
	buf := getBytes(a.maxPart(r, min(n, chunkValues)))
	defer putBytes(buf)
	total := 0
	for c := range chunkCount(n) {
		clo, chi := chunkBounds(n, c)
		clo, chi = lo+clo, lo+chi
		codec := a.partCodec(r, clo, chi)
		enc, err := a.encodeAppend((*buf)[:0], codec, local[clo:chi])
		*buf = enc[:0]
		if err != nil {
			return total, err
		}
		if dropped != nil && codec.ID() != compression.IDFP32 { // fp32 drops nothing: dropped stays 0
			d := dropped[clo:chi]
			if err := compression.DecodePart(d, enc); err != nil {
				return total, err
			}
			for i, x := range local[clo:chi] {
				d[i] = x - d[i]
			}
		}
		wait()
		if err := s.Send(enc); err != nil {
			return total, err
		}
		total += len(enc)
		a.bytesSent.Add(int64(len(enc)))
	}
	return total, nil
}

// receiveAverage reads the owner's frames for part [lo, hi): its receipt
// of our whole copy, and the average's chunks, each decoded into out (the
// part's values) as it comes and kept where it was read.
func (a *Averager) receiveAverage(s gossip.Stream, r Round, lo, hi int, out []float32, wait func()) (_ *keptBuf, receipt time.Time, err error) {
	n := hi - lo
	kb := a.newKept(maxChunked(n, func(count int) int { return a.maxResult(r, count) }))
	defer func() {
		if err != nil {
			a.drop(kb)
		}
	}()
	kept := kb.b
	for c := 0; c < chunkCount(n); {
		clo, chi := chunkBounds(n, c)
		wait()
		f, err := recvChunk(s, kept, a.maxResult(r, chi-clo)+1)
		if err != nil {
			return nil, receipt, err
		}
		a.bytesRecv.Add(int64(len(f)))
		if len(f) == 1 && f[0] == resultReceived && receipt.IsZero() {
			receipt = a.clk.Now()
			continue
		}
		if err := decodeResult(out[clo:chi], f); err != nil {
			return nil, receipt, err
		}
		kept = keepChunk(kept, f)
		c++
	}
	kb.b = kept
	return kb, receipt, nil
}

// roundTrip returns what xs decode to after the codec.
func roundTrip(c compression.Codec, xs []float32) ([]float32, error) {
	out := make([]float32, len(xs))
	if err := c.Decode(out, c.Encode(nil, xs)); err != nil {
		return nil, err
	}
	return out, nil
}

// Result frames start with a status byte: 0 and the encoded average, or 1
// and the owner's reason for failing the round. Before it, the owner
// confirms with the lone byte 2 that the sender's part arrived in full:
// the sender times its uplink by it.
const (
	resultOK       = 0
	resultFail     = 1
	resultReceived = 2
)

// errOwnerFailed: the owner could not reduce its part, so nobody has it.
var errOwnerFailed = errors.New("owner failed the round")

// errNotSent: the stream to the owner did not open, so our copy of its
// part never left and the owner, which needs every member's copy, cannot
// reduce it: nobody has it, and asking the others (who may be as
// unreachable as the owner) would only delay the retry.
var errNotSent = errors.New("our copy was not sent")

func decodeResult(dst []float32, frame []byte) error {
	if len(frame) == 0 {
		return errors.New("empty result frame")
	}
	switch frame[0] {
	case resultOK:
		return compression.DecodePart(dst, frame[1:])
	case resultFail:
		return fmt.Errorf("%w: %s", errOwnerFailed, truncate(string(frame[1:]), 200))
	default:
		return fmt.Errorf("bad result status %d", frame[0])
	}
}

// serve handles one sender's copy of our part for a round: a reader
// (receiveCopy) decodes its chunks as they come, while this goroutine
// sends the sender our receipt once its copy is all in, and each chunk
// of the average as soon as it is made.
func (a *Averager) serve(s gossip.Stream) {
	ok := false
	defer func() {
		if !ok {
			s.Reset()
		}
	}()
	hb, err := s.Recv(maxHeader)
	if err != nil {
		return
	}
	var h partHeader
	if err := json.Unmarshal(hb, &h); err != nil || len(h.Round) == 0 || len(h.Round) > 64 {
		return
	}
	// A round we have not started yet is "announced" by its first sender;
	// each peer may announce only a few (see roundTable.announce).
	from := s.RemotePeer()
	a.mu.Lock()
	rs := a.rounds.announce(h.Round, from, a.clk.Now(), a.staleAfter())
	a.mu.Unlock()
	if rs == nil {
		return
	}
	ready := a.clk.Timer(a.Deadline())
	started := a.await(nil, ready.C, func() bool { return rs.started })
	ready.Stop()
	if !started {
		return
	}
	a.mu.Lock()
	count, err := rs.admit(h, from)
	r, deadline := rs.round, rs.deadline
	a.mu.Unlock()
	if err != nil {
		s.Send(append([]byte{resultFail}, err.Error()...))
		return
	}
	a.bytesRecv.Add(int64(len(hb)))
	buf := getVec(count)
	a.mu.Lock()
	claimed := rs.claim(h.Sender, buf)
	// The average's chunks go out from the owner's kept buffer: held
	// until this stream is done with it.
	held := rs.kept
	if claimed {
		a.holdLocked(held)
	}
	a.mu.Unlock()
	if !claimed {
		putVec(buf)
		return // a second stream from the same sender, or the round is over
	}
	defer a.drop(held)
	// Like the sender's frames, ours are bounded by the round's deadline.
	s.SetTimeout(max(a.clk.Until(deadline), time.Millisecond))
	in := &inbound{}
	go a.receiveCopy(s, rs, r, h.Sender, *buf, in)

	wait := a.clk.Timer(a.clk.Until(deadline))
	defer wait.Stop()
	chunks := chunkCount(count)
	receipted := false
	for next := 0; next < chunks; {
		var frame []byte
		var rerr error
		var receipt bool
		if !a.await(nil, wait.C, func() bool {
			switch {
			case in.err != nil:
				return true
			case in.done && !receipted:
				receipt = true
				return true
			}
			var have bool
			if frame, have = rs.resultChunk(next); !have && rs.finished && rs.err != nil {
				rerr = rs.err
				return true
			}
			return have
		}) {
			return
		}
		switch {
		case in.err != nil:
			if in.reply {
				s.Send(append([]byte{resultFail}, in.err.Error()...))
			}
			return
		case receipt:
			if s.Send([]byte{resultReceived}) != nil {
				return
			}
			receipted = true
		case rerr != nil:
			s.Send(append([]byte{resultFail}, rerr.Error()...))
			return
		default:
			if s.Send(frame) != nil {
				return
			}
			a.bytesSent.Add(int64(len(frame)))
			next++
		}
	}
	ok = true
	s.Close()
}

// inbound is how a sender's copy is coming in, guarded by Averager.mu.
type inbound struct {
	done  bool  // every chunk is in
	err   error // why it stopped coming
	reply bool  // err is the sender's fault, to be told (a bad frame)
}

// receiveCopy reads sender's copy of our part chunk by chunk into part,
// through one reused buffer, and records each chunk as in.
func (a *Averager) receiveCopy(s gossip.Stream, rs *roundState, r Round, sender int, part []float32, in *inbound) {
	n := len(part)
	limit := a.maxPart(r, min(n, chunkValues))
	buf := getBytes(limit)
	defer putBytes(buf)
	var err error
	reply, told := false, false
	for c := range chunkCount(n) {
		clo, chi := chunkBounds(n, c)
		var f []byte
		if f, err = recvInto(s, *buf, a.maxPart(r, chi-clo)); err != nil {
			break
		}
		a.bytesRecv.Add(int64(len(f)))
		left := false
		if err = compression.DecodePart(part[clo:chi], f); err != nil {
			if !errors.Is(err, compression.ErrNonFinite) {
				reply = true
				break
			}
			// A well-formed chunk holding NaN or Inf (a diverged sender):
			// the round goes on without it rather than fail or spread
			// it. The average is still encoded once, so replicas stay
			// identical.
			if a.cfg.OnDrop != nil && !told {
				told = true
				a.cfg.OnDrop(r.ID, s.RemotePeer(), err)
			}
			err, left = nil, true
		}
		a.mu.Lock()
		done, last := rs.arrived(sender, c, left)
		if done || last {
			in.done = last
			a.signalLocked() // the owner waits for the chunk, the writer for the last
		}
		a.mu.Unlock()
	}
	a.mu.Lock()
	if err != nil {
		in.err, in.reply = err, reply
	}
	free := rs.leave()
	a.signalLocked()
	a.mu.Unlock()
	putVecs(free)
}

func putVecs(ps []*[]float32) {
	for _, p := range ps {
		putVec(p)
	}
}

// truncate shortens s to n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
