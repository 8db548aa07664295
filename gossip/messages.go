package gossip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Version is the wire version of every gossip and control message.
// A peer that speaks another version is refused with a reason.
const Version = 1

// Kind says what a message is.
type Kind string

const (
	KindHeartbeat Kind = "heartbeat" // membership, device, addresses, state hash
	KindProgress  Kind = "progress"  // samples accumulated toward the next step
	KindHello     Kind = "hello"     // first message on a new connection: which run am I on
	KindWelcome   Kind = "welcome"   // answer to hello: admitted, or refused with a reason
	KindJoin      Kind = "join"      // a ready peer asks a round's assembler to take it
	KindGroup     Kind = "group"     // the assembler's answer: the round's ordered members
)

// Message is the envelope of every gossip and control message; exactly
// the field that matches Kind is set. JSON keeps it debuggable; the size
// cap and Validate keep it safe.
type Message struct {
	V         int        `json:"v"`
	Kind      Kind       `json:"kind"`
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	Progress  *Progress  `json:"progress,omitempty"`
	Hello     *Hello     `json:"hello,omitempty"`
	Welcome   *Welcome   `json:"welcome,omitempty"`
	Join      *Join      `json:"join,omitempty"`
	Group     *Group     `json:"group,omitempty"`
}

// Heartbeat says "I am alive, on this run, at this step with this state".
// Peers that stop sending heartbeats expire from the membership view.
type Heartbeat struct {
	Peer          peer.ID  `json:"peer"`
	Run           string   `json:"run"`
	Seq           uint64   `json:"seq"`  // strictly increasing per peer; older ones are stale
	Step          uint64   `json:"step"` // optimizer steps applied to the state
	Hash          string   `json:"hash"` // state hash at Step (hex)
	SamplesPerSec float64  `json:"samples_per_sec"`
	Device        string   `json:"device"`  // one-line device summary
	Addrs         []string `json:"addrs"`   // where to dial this peer
	Syncing       bool     `json:"syncing"` // downloading state; contributes nothing yet
	// SyncTo is the step a syncing peer is downloading: the assembler of
	// that step waits for it, so it joins the very next round.
	SyncTo  uint64 `json:"sync_to,omitempty"`
	Leaving bool   `json:"leaving"` // clean leave: drop me now
	// Client: the peer cannot accept inbound connections (behind a NAT,
	// or --client), so it owns no part, assembles no round and serves no
	// state download: every other peer would have to dial it.
	Client bool `json:"client,omitempty"`
	// Figures for the dashboards of the swarm: a few numbers so that any
	// one node can show every peer. History never travels over gossip.
	Loss     float64 `json:"loss,omitempty"`      // moving average of the training loss
	Reach    string  `json:"reach,omitempty"`     // AutoNAT's verdict: public, private or unknown
	BytesIn  int64   `json:"bytes_in,omitempty"`  // bytes received over libp2p since start
	BytesOut int64   `json:"bytes_out,omitempty"` // bytes sent over libp2p since start
}

// Progress reports samples accumulated toward step Step+1.
type Progress struct {
	Peer    peer.ID `json:"peer"`
	Run     string  `json:"run"`
	Seq     uint64  `json:"seq"`
	Step    uint64  `json:"step"`
	Hash    string  `json:"hash"` // state hash at Step: replicas compare it every step
	Samples int     `json:"samples"`
}

// Hello opens every admitted connection: the run ID and the config it
// was hashed from, so a refusal can name the field that differs.
type Hello struct {
	Run    string          `json:"run"`
	Config json.RawMessage `json:"config"`
}

// Welcome answers Hello. When OK is false, Reason says why in words that
// both sides print, and Run is empty: a refused peer is not told the run.
type Welcome struct {
	OK     bool   `json:"ok"`
	Run    string `json:"run,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Peers are a few other peers of the run and where to dial them, for
	// an admitted peer: a node that joined through one address meets the
	// swarm (and its data servers) before gossip shows it. Dial hints
	// only: whoever answers there must still admit us.
	Peers []PeerAddrs `json:"peers,omitempty"`
}

// PeerAddrs is a peer and the addresses it can be dialled at.
type PeerAddrs struct {
	ID    peer.ID  `json:"id"`
	Addrs []string `json:"addrs"`
}

// MaxWelcomePeers caps Welcome.Peers.
const MaxWelcomePeers = 8

// Join asks the assembler of step Step to include the sender.
type Join struct {
	Run     string `json:"run"`
	Step    uint64 `json:"step"`
	Samples int    `json:"samples"`
	// Uplink is the rate, in bytes/s, at which the joiner's parts reached
	// their owners in recent rounds (0: not measured yet); the assembler
	// sizes parts and members size deadlines by it.
	Uplink float64 `json:"uplink,omitempty"`
	// Client: the joiner cannot accept inbound streams, so it must own
	// no part; it still sends its parts and receives the averages.
	Client bool `json:"client,omitempty"`
	// Ref tags the reference this peer holds for its Moshpit group (the
	// ID of the last round the group averaged in; "" none): members that
	// all hold one reference average compressed deltas against it.
	Ref string `json:"ref,omitempty"`
}

// Group announces a round: the ordered members and their sample counts.
// An empty Members list with a Reason is a refusal.
type Group struct {
	Run     string    `json:"run"`
	Step    uint64    `json:"step"`
	Attempt uint32    `json:"attempt"` // retries of a step get new round IDs
	Round   string    `json:"round"`
	Members []peer.ID `json:"members"`
	Samples []int     `json:"samples"`
	Shares  []int     `json:"shares,omitempty"` // part sizes; see allreduce.Round.Shares
	// Rates are the members' measured uplinks (bytes/s, 0 unknown), from
	// their joins: each member sizes the round's deadline by them. Not
	// part of the round ID: they change no member's bytes.
	Rates []float64 `json:"rates,omitempty"`
	// Refs are the members' Moshpit reference tags, from their joins
	// (nil when nobody sent one); part of the round ID, so members that
	// were told different tags never share a round.
	Refs   []string `json:"refs,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// Index returns p's position in the group, or -1.
func (g Group) Index(p peer.ID) int { return slices.Index(g.Members, p) }

var hexRe = regexp.MustCompile(`^[0-9a-f]*$`)

// Encode marshals m. It fails rather than produce a message that the
// receiver would refuse.
func Encode(m Message) ([]byte, error) {
	m.V = Version
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("gossip: %s message is %d bytes, over the %d cap", m.Kind, len(b), MaxMessageSize)
	}
	return b, nil
}

// Decode parses and validates a message from the network. Any input —
// truncated, oversized, of the wrong version, with absurd numbers — gives
// an error, never a panic.
func Decode(b []byte) (Message, error) {
	var m Message
	if len(b) > MaxMessageSize {
		return m, fmt.Errorf("gossip: message of %d bytes exceeds the %d cap", len(b), MaxMessageSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("gossip: malformed message: %w", err)
	}
	if dec.More() {
		return Message{}, errors.New("gossip: trailing data after message")
	}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// Validate checks the envelope and the body that Kind selects.
func (m Message) Validate() error {
	if m.V != Version {
		return fmt.Errorf("gossip: message version %d, this peer speaks %d", m.V, Version)
	}
	set := 0
	for _, p := range []bool{m.Heartbeat != nil, m.Progress != nil, m.Hello != nil, m.Welcome != nil, m.Join != nil, m.Group != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("gossip: %s message must carry exactly one body, has %d", m.Kind, set)
	}
	switch m.Kind {
	case KindHeartbeat:
		if m.Heartbeat == nil {
			return errors.New("gossip: heartbeat without body")
		}
		return m.Heartbeat.validate()
	case KindProgress:
		if m.Progress == nil {
			return errors.New("gossip: progress without body")
		}
		return m.Progress.validate()
	case KindHello:
		if m.Hello == nil {
			return errors.New("gossip: hello without body")
		}
		return checkRun(m.Hello.Run)
	case KindWelcome:
		if m.Welcome == nil {
			return errors.New("gossip: welcome without body")
		}
		if len(m.Welcome.Reason) > 4*maxStringField {
			return errors.New("gossip: welcome reason too long")
		}
		if err := m.Welcome.validatePeers(); err != nil {
			return err
		}
		if !m.Welcome.OK && m.Welcome.Run == "" {
			return nil // a refusal names no run (older builds' do)
		}
		return checkRun(m.Welcome.Run)
	case KindJoin:
		if m.Join == nil {
			return errors.New("gossip: join without body")
		}
		if m.Join.Samples < 0 || m.Join.Samples > maxSamples {
			return fmt.Errorf("gossip: join claims %d samples", m.Join.Samples)
		}
		if t := m.Join.Uplink; math.IsNaN(t) || t < 0 || t > maxRate {
			return fmt.Errorf("gossip: join claims an uplink of %v bytes/s", t)
		}
		if len(m.Join.Ref) > maxID || !hexRe.MatchString(m.Join.Ref) {
			return errors.New("gossip: join reference tag is not hex")
		}
		return checkRun(m.Join.Run)
	case KindGroup:
		if m.Group == nil {
			return errors.New("gossip: group without body")
		}
		return m.Group.validate()
	default:
		return fmt.Errorf("gossip: unknown message kind %q", m.Kind)
	}
}

func checkRun(run string) error {
	if len(run) == 0 || len(run) > maxID || !hexRe.MatchString(run) {
		return fmt.Errorf("gossip: bad run id %q", truncate(run, 40))
	}
	return nil
}

func checkPeer(p peer.ID) error {
	if len(p) == 0 || len(p) > maxID {
		return errors.New("gossip: bad peer id")
	}
	return nil
}

func (h *Heartbeat) validate() error {
	if err := checkPeer(h.Peer); err != nil {
		return err
	}
	if err := checkRun(h.Run); err != nil {
		return err
	}
	if len(h.Hash) > maxID || !hexRe.MatchString(h.Hash) {
		return errors.New("gossip: heartbeat hash is not hex")
	}
	if math.IsNaN(h.SamplesPerSec) || math.IsInf(h.SamplesPerSec, 0) || h.SamplesPerSec < 0 {
		return errors.New("gossip: heartbeat throughput is not a finite non-negative number")
	}
	if len(h.Device) > maxStringField {
		return errors.New("gossip: heartbeat device string too long")
	}
	if math.IsNaN(h.Loss) || math.IsInf(h.Loss, 0) || h.Loss < 0 {
		return errors.New("gossip: heartbeat loss is not a finite non-negative number")
	}
	switch h.Reach {
	case "", "public", "private", "unknown":
	default:
		return fmt.Errorf("gossip: heartbeat reachability %q, want public, private or unknown", truncate(h.Reach, 20))
	}
	if h.BytesIn < 0 || h.BytesOut < 0 {
		return errors.New("gossip: heartbeat byte counts are negative")
	}
	if len(h.Addrs) > maxAddrs {
		return fmt.Errorf("gossip: heartbeat lists %d addresses, cap %d", len(h.Addrs), maxAddrs)
	}
	for _, a := range h.Addrs {
		if len(a) > maxStringField {
			return errors.New("gossip: heartbeat address too long")
		}
	}
	return nil
}

func (w *Welcome) validatePeers() error {
	if len(w.Peers) > 0 && !w.OK {
		return errors.New("gossip: a refusal lists peers")
	}
	if len(w.Peers) > MaxWelcomePeers {
		return fmt.Errorf("gossip: welcome lists %d peers, cap %d", len(w.Peers), MaxWelcomePeers)
	}
	for _, p := range w.Peers {
		if err := checkPeer(p.ID); err != nil {
			return err
		}
		if len(p.Addrs) == 0 || len(p.Addrs) > maxAddrs {
			return fmt.Errorf("gossip: welcome lists a peer with %d addresses, want 1..%d", len(p.Addrs), maxAddrs)
		}
		for _, a := range p.Addrs {
			if len(a) > maxStringField {
				return errors.New("gossip: welcome address too long")
			}
		}
	}
	return nil
}

func (p *Progress) validate() error {
	if err := checkPeer(p.Peer); err != nil {
		return err
	}
	if len(p.Hash) > maxID || !hexRe.MatchString(p.Hash) {
		return errors.New("gossip: progress hash is not hex")
	}
	if p.Samples < 0 || p.Samples > maxSamples {
		return fmt.Errorf("gossip: progress claims %d samples", p.Samples)
	}
	return checkRun(p.Run)
}

func (g *Group) validate() error {
	if err := checkRun(g.Run); err != nil {
		return err
	}
	if len(g.Round) > maxID || !hexRe.MatchString(g.Round) {
		return errors.New("gossip: bad round id")
	}
	if len(g.Reason) > 4*maxStringField {
		return errors.New("gossip: group reason too long")
	}
	if len(g.Members) > MaxMembers {
		return fmt.Errorf("gossip: group of %d members, cap %d", len(g.Members), MaxMembers)
	}
	if len(g.Members) != len(g.Samples) {
		return fmt.Errorf("gossip: group lists %d members but %d sample counts", len(g.Members), len(g.Samples))
	}
	if len(g.Members) == 0 && g.Reason == "" {
		return errors.New("gossip: empty group without a reason")
	}
	if g.Shares != nil {
		if len(g.Shares) != len(g.Members) {
			return fmt.Errorf("gossip: group lists %d members but %d shares", len(g.Members), len(g.Shares))
		}
		total := 0
		for _, s := range g.Shares {
			if s < 0 || s > MaxShare {
				return fmt.Errorf("gossip: part share %d out of [0, %d]", s, MaxShare)
			}
			total += s
		}
		if total == 0 {
			return errors.New("gossip: group where nobody owns a part")
		}
	}
	if g.Rates != nil {
		if len(g.Rates) != len(g.Members) {
			return fmt.Errorf("gossip: group lists %d members but %d rates", len(g.Members), len(g.Rates))
		}
		for _, r := range g.Rates {
			if math.IsNaN(r) || r < 0 || r > maxRate {
				return fmt.Errorf("gossip: group claims an uplink of %v bytes/s", r)
			}
		}
	}
	if g.Refs != nil {
		if len(g.Refs) != len(g.Members) {
			return fmt.Errorf("gossip: group lists %d members but %d reference tags", len(g.Members), len(g.Refs))
		}
		for _, r := range g.Refs {
			if len(r) > maxID || !hexRe.MatchString(r) {
				return errors.New("gossip: group reference tag is not hex")
			}
		}
	}
	seen := make(map[peer.ID]bool, len(g.Members))
	for i, p := range g.Members {
		if err := checkPeer(p); err != nil {
			return err
		}
		if seen[p] {
			return fmt.Errorf("gossip: group lists %s twice", p)
		}
		seen[p] = true
		if g.Samples[i] <= 0 || g.Samples[i] > maxSamples {
			return fmt.Errorf("gossip: group member %d has %d samples", i, g.Samples[i])
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
