package gossip

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

func TestMessageRoundTrip(t *testing.T) {
	hb := &Heartbeat{Peer: testutil.PeerID(1), Run: "00ff", Seq: 3, Step: 9, Hash: "abcd", SamplesPerSec: 10, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}
	b, err := Encode(Message{Kind: KindHeartbeat, Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Heartbeat.Step != 9 || m.Heartbeat.Peer != hb.Peer || m.Heartbeat.Addrs[0] != hb.Addrs[0] {
		t.Fatalf("round trip changed the heartbeat: %+v", m.Heartbeat)
	}
}

func TestDecodeRejects(t *testing.T) {
	p := testutil.PeerID(1).String()
	sub := func(s string) string { return strings.ReplaceAll(s, "PEER", p) }
	valid := sub(`{"v":1,"kind":"progress","progress":{"peer":"PEER","run":"ab","seq":1,"step":1,"samples":3}}`)
	if _, err := Decode([]byte(valid)); err != nil {
		t.Fatalf("valid message refused: %v", err)
	}
	cases := map[string]string{
		"wrong version":        strings.Replace(valid, `"v":1`, `"v":2`, 1),
		"negative samples":     strings.Replace(valid, `"samples":3`, `"samples":-3`, 1),
		"huge samples":         strings.Replace(valid, `"samples":3`, `"samples":99999999999`, 1),
		"run not hex":          strings.Replace(valid, `"run":"ab"`, `"run":"zz"`, 1),
		"kind/body mismatch":   strings.Replace(valid, `"kind":"progress"`, `"kind":"heartbeat"`, 1),
		"unknown kind":         strings.Replace(valid, `"kind":"progress"`, `"kind":"nope"`, 1),
		"two bodies":           strings.Replace(valid, `}}`, `},"join":{"run":"ab","step":1,"samples":1}}`, 1),
		"trailing data":        valid + `{}`,
		"truncated":            valid[:len(valid)-3],
		"not json":             "\x00\x01garbage",
		"empty":                "",
		"group dup members":    `{"v":1,"kind":"group","group":{"run":"ab","step":1,"round":"aa","members":["PEER","PEER"],"samples":[1,1]}}`,
		"group count differs":  `{"v":1,"kind":"group","group":{"run":"ab","step":1,"round":"aa","members":["PEER"],"samples":[1,1]}}`,
		"join ref not hex":     `{"v":1,"kind":"join","join":{"run":"ab","step":1,"samples":1,"ref":"<zz>"}}`,
		"group refs differ":    `{"v":1,"kind":"group","group":{"run":"ab","step":1,"round":"aa","members":["PEER"],"samples":[1],"refs":["aa","bb"]}}`,
		"group ref not hex":    `{"v":1,"kind":"group","group":{"run":"ab","step":1,"round":"aa","members":["PEER"],"samples":[1],"refs":["xyz"]}}`,
		"heartbeat NaN-ish":    `{"v":1,"kind":"heartbeat","heartbeat":{"peer":"PEER","run":"ab","samples_per_sec":-1}}`,
		"heartbeat loss":       `{"v":1,"kind":"heartbeat","heartbeat":{"peer":"PEER","run":"ab","loss":-1}}`,
		"heartbeat reach":      `{"v":1,"kind":"heartbeat","heartbeat":{"peer":"PEER","run":"ab","reach":"<script>"}}`,
		"heartbeat bytes":      `{"v":1,"kind":"heartbeat","heartbeat":{"peer":"PEER","run":"ab","bytes_out":-5}}`,
		"refusal with peers":   `{"v":1,"kind":"welcome","welcome":{"ok":false,"reason":"no","peers":[{"id":"PEER","addrs":["/ip4/1.2.3.4/tcp/1"]}]}}`,
		"welcome peer no id":   `{"v":1,"kind":"welcome","welcome":{"ok":true,"run":"ab","peers":[{"id":"","addrs":["/ip4/1.2.3.4/tcp/1"]}]}}`,
		"welcome peer no addr": `{"v":1,"kind":"welcome","welcome":{"ok":true,"run":"ab","peers":[{"id":"PEER","addrs":[]}]}}`,
		"welcome many peers":   `{"v":1,"kind":"welcome","welcome":{"ok":true,"run":"ab","peers":[` + strings.Repeat(`{"id":"PEER","addrs":["/a"]},`, MaxWelcomePeers) + `{"id":"PEER","addrs":["/a"]}]}}`,
	}
	for name, in := range cases {
		if _, err := Decode([]byte(sub(in))); err == nil {
			t.Errorf("%s: accepted %q", name, in)
		}
	}
	big := `{"v":1,"kind":"hello","hello":{"run":"ab","config":"` + strings.Repeat("x", MaxMessageSize) + `"}}`
	if _, err := Decode([]byte(big)); err == nil {
		t.Error("oversized message accepted")
	}
}

func TestConfigDiffNamesField(t *testing.T) {
	a := json.RawMessage(`{"hidden":[256],"lr":0.001,"seed":1}`)
	b := json.RawMessage(`{"hidden":[128],"lr":0.001,"seed":1}`)
	d := ConfigDiff(a, b)
	if !strings.Contains(d, "hidden: ours [256], theirs [128]") || strings.Contains(d, "lr") {
		t.Fatalf("diff %q should name only hidden", d)
	}
	a = json.RawMessage(`{"version":2,"model":{"hidden":[256],"kind":"mlp"},"optimizer":{"lr":0.001,"steps":10}}`)
	b = json.RawMessage(`{"version":2,"model":{"hidden":[256],"kind":"cnn"},"optimizer":{"lr":0.002,"steps":10}}`)
	if d := ConfigDiff(a, b); d != `model.kind: ours "mlp", theirs "cnn"; optimizer.lr: ours 0.001, theirs 0.002` {
		t.Errorf("nested diff %q", d)
	}
	if d := ConfigDiff(a, json.RawMessage(`{"hidden":[256],"lr":0.001}`)); !strings.Contains(d, "config version: ours 2, theirs (unset)") || strings.Contains(d, "lr") {
		t.Errorf("a config of another version: %q", d)
	}
}

func FuzzDecode(f *testing.F) {
	p := testutil.PeerID(1).String()
	f.Add([]byte(strings.ReplaceAll(`{"v":1,"kind":"progress","progress":{"peer":"PEER","run":"ab","seq":1,"step":1,"samples":3}}`, "PEER", p)))
	f.Add([]byte(strings.ReplaceAll(`{"v":1,"kind":"group","group":{"run":"ab","step":1,"round":"aa","members":["PEER"],"samples":[1]}}`, "PEER", p)))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and validate: no half-checked values.
		if _, err := Encode(m); err != nil {
			t.Fatalf("decoded message does not re-encode: %v", err)
		}
	})
}
