package gossip

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// RefusedError is a run mismatch, with the reason both sides print.
type RefusedError struct {
	Peer   peer.ID
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("peer %s refused us: %s", e.Peer.ShortString(), e.Reason)
}

// Admission answers hellos: a peer on the same run is welcome; any other
// gets a reason naming what differs, and OnRefuse lets the caller log it
// and hang up. A refusal carries no run ID and none of our config values
// unless Insiders says the peer may see them: the peer learns which
// fields differ, and nothing else about the run.
type Admission struct {
	Run    string
	Config json.RawMessage // canonical JSON of the run config
	// Insiders: every peer that reaches us holds the swarm key, so a
	// refusal may say our value of each differing field ("optimizer.lr:
	// ours 0.002, theirs 0.003"). Open swarms (no key) name the fields only.
	Insiders bool
	// Admit, when set, is called for every accepted hello, ours or
	// theirs, before the peer counts as admitted; an error turns an
	// inbound acceptance into a refusal with that reason and fails Greet.
	Admit func(p peer.ID) error
	// OnResult is called for every hello answered or sent.
	OnResult func(p peer.ID, ok bool, reason string, inbound bool)
	// Peers, when set, lists other peers of the run for a welcome to p
	// (at most MaxWelcomePeers are sent).
	Peers func(p peer.ID) []PeerAddrs
}

// Serve registers the hello protocol on t.
func (a *Admission) Serve(t Transport) {
	t.Handle(ProtoHello, func(s Stream) {
		b, err := s.Recv(MaxMessageSize)
		if err != nil {
			s.Reset()
			return
		}
		msg, err := Decode(b)
		var w Welcome
		switch {
		case err != nil:
			w = Welcome{Reason: "unreadable hello: " + err.Error()}
		case msg.Kind != KindHello:
			w = Welcome{Reason: "expected hello, got " + string(msg.Kind)}
		default:
			w = a.judge(*msg.Hello)
		}
		if w.OK && a.Admit != nil {
			if err := a.Admit(s.RemotePeer()); err != nil {
				w = Welcome{Reason: err.Error()}
			}
		}
		// The outcome takes effect before the peer hears it: a refused
		// peer must not use an earlier admission in the moment between
		// reading "no" and our revoking it.
		if a.OnResult != nil {
			a.OnResult(s.RemotePeer(), w.OK, w.Reason, true)
		}
		if w.OK && a.Peers != nil {
			w.Peers = a.Peers(s.RemotePeer())
			w.Peers = w.Peers[:min(len(w.Peers), MaxWelcomePeers)]
		}
		out, err := Encode(Message{Kind: KindWelcome, Welcome: &w})
		if err == nil {
			s.Send(out)
		}
		s.Close()
	})
}

// judge welcomes a hello of our run. A refusal's Welcome has no Run: the
// run ID is what a stranger would need to join our topics.
func (a *Admission) judge(h Hello) Welcome {
	if h.Run == a.Run {
		return Welcome{OK: true, Run: a.Run}
	}
	if a.Insiders {
		return Welcome{Reason: "different run: " + ConfigDiff(a.Config, h.Config)}
	}
	return Welcome{Reason: "different run: " + ConfigFields(a.Config, h.Config)}
}

// Greet says hello to p and returns a *RefusedError if p is on another run.
func (a *Admission) Greet(ctx context.Context, t Transport, p peer.ID) error {
	_, err := a.GreetPeers(ctx, t, p)
	return err
}

// GreetPeers is Greet that also returns the other peers p's welcome
// listed (see Welcome.Peers).
func (a *Admission) GreetPeers(ctx context.Context, t Transport, p peer.ID) ([]PeerAddrs, error) {
	s, err := t.Open(ctx, p, ProtoHello)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	b, err := Encode(Message{Kind: KindHello, Hello: &Hello{Run: a.Run, Config: a.Config}})
	if err != nil {
		s.Reset()
		return nil, err
	}
	if err := s.Send(b); err != nil {
		s.Reset()
		return nil, err
	}
	resp, err := s.Recv(MaxMessageSize)
	if err != nil {
		s.Reset()
		return nil, fmt.Errorf("hello to %s: %w", p.ShortString(), err)
	}
	s.Close()
	msg, err := Decode(resp)
	if err != nil {
		return nil, err
	}
	if msg.Kind != KindWelcome {
		return nil, fmt.Errorf("hello to %s: expected welcome, got %s", p.ShortString(), msg.Kind)
	}
	w := msg.Welcome
	if !w.OK {
		if a.OnResult != nil {
			a.OnResult(p, false, w.Reason, false)
		}
		return nil, &RefusedError{Peer: p, Reason: w.Reason}
	}
	if w.Run != a.Run {
		return nil, &RefusedError{Peer: p, Reason: "welcomed us to another run " + truncate(w.Run, 16)}
	}
	if a.Admit != nil {
		if err := a.Admit(p); err != nil {
			s.Reset()
			return nil, fmt.Errorf("hello to %s: welcomed, but %w", p.ShortString(), err)
		}
	}
	if a.OnResult != nil {
		a.OnResult(p, true, "", false)
	}
	return w.Peers, nil
}

// ConfigDiff names the fields where two JSON configs differ, as
// "path: ours X, theirs Y"; fields inside objects go by their path
// (optimizer.lr). Configs whose "version" differs are not compared field
// by field: the version is the difference. The configs come from us and
// from a peer; an unreadable peer config is reported as such.
func ConfigDiff(ours, theirs json.RawMessage) string { return configDiff(ours, theirs, true) }

// ConfigFields is ConfigDiff without the values: "optimizer.lr,
// model.hidden differ". It is what a stranger is told, so it says which
// fields to change, never what ours hold.
func ConfigFields(ours, theirs json.RawMessage) string { return configDiff(ours, theirs, false) }

func configDiff(ours, theirs json.RawMessage, values bool) string {
	var a, b map[string]json.RawMessage
	if err := json.Unmarshal(ours, &a); err != nil {
		return "our config is unreadable"
	}
	if err := json.Unmarshal(theirs, &b); err != nil {
		return "their config is unreadable"
	}
	if va, vb := a["version"], b["version"]; !bytes.Equal(compact(va), compact(vb)) {
		if !values {
			return "config version differs (another swarmtrain version; every peer needs one that writes the same)"
		}
		return fmt.Sprintf("config version: ours %s, theirs %s (another swarmtrain version; every peer needs one that writes the same)", show(va), show(vb))
	}
	diffs := diffObjects(nil, "", a, b, values)
	if len(diffs) == 0 {
		return "configs hash differently (different software version?)"
	}
	if !values {
		return strings.Join(diffs, ", ") + " differ"
	}
	return strings.Join(diffs, "; ")
}

// diffObjects appends the differences between two JSON objects, keys in
// order, descending into values that are objects on both sides.
func diffObjects(diffs []string, prefix string, a, b map[string]json.RawMessage, values bool) []string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if bytes.Equal(compact(a[k]), compact(b[k])) {
			continue
		}
		var oa, ob map[string]json.RawMessage
		if json.Unmarshal(a[k], &oa) == nil && json.Unmarshal(b[k], &ob) == nil && oa != nil && ob != nil {
			diffs = diffObjects(diffs, prefix+k+".", oa, ob, values)
			continue
		}
		if !values {
			diffs = append(diffs, prefix+k)
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s%s: ours %s, theirs %s", prefix, k, show(a[k]), show(b[k])))
	}
	return diffs
}

func compact(r json.RawMessage) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, r) != nil {
		return r
	}
	return buf.Bytes()
}

func show(r json.RawMessage) string {
	if r == nil {
		return "(unset)"
	}
	return truncate(string(compact(r)), 80)
}
