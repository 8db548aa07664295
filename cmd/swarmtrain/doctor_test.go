package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/p2p"
)

// fakeView is an outsideView with fixed answers.
type fakeView struct {
	reach    network.Reachability
	observed []string
	mapping  string
	relayed  bool
	punched  int
}

func (f fakeView) Reachability() network.Reachability { return f.reach }
func (f fakeView) ObservedAddrs() []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range f.observed {
		out = append(out, ma.StringCast(a))
	}
	return out
}
func (f fakeView) PortMapping() string     { return f.mapping }
func (f fakeView) Relayed(peer.ID) bool    { return f.relayed }
func (f fakeView) HolePunches() (int, int) { return f.punched, 0 }

func TestDoctorReport(t *testing.T) {
	home := fakeView{reach: network.ReachabilityPrivate, observed: []string{"/ip4/203.0.113.7/tcp/4001"}}
	jc := &joinCheck{Addr: "/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWx", Connected: true, How: "hole punch", HolePunch: "succeeded", RTTms: 42}
	r := summarize("12D3KooWdoc", []string{"/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWdoc"}, home, jc)
	if r.Reachability != "private" || r.Mode != "client" || r.PortMapping != "none" || len(r.ObservedAddrs) != 1 {
		t.Fatalf("home report: %+v", r)
	}
	var text bytes.Buffer
	printDoctor(&text, r)
	for _, want := range []string{"private", "203.0.113.7", "hole punch", "client", "42.0 ms"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"reachability":"private"`, `"mode":"client"`, `"hole_punch":"succeeded"`, `"observed_addrs":["/ip4/203.0.113.7/tcp/4001"]`} {
		if !bytes.Contains(js, []byte(key)) {
			t.Errorf("JSON report lacks %s: %s", key, js)
		}
	}

	pub := summarize("12D3KooWdoc", nil, fakeView{reach: network.ReachabilityPublic, mapping: "/ip4/203.0.113.9/tcp/4001"}, nil)
	if pub.Reachability != "public" || pub.Mode != "owner" || pub.PortMapping != "/ip4/203.0.113.9/tcp/4001" || pub.Join != nil {
		t.Fatalf("public report: %+v", pub)
	}
	if lan := summarize("x", nil, fakeView{}, nil); lan.Reachability != "unknown" || lan.Mode != "owner" {
		t.Fatalf("a LAN peer (AutoNAT undecided) must stay an owner: %+v", lan)
	}
}

func TestDoctorFlagsRefused(t *testing.T) {
	for _, c := range []struct {
		o    doctorOptions
		want string
	}{
		{doctorOptions{port: 70000, probeMiB: 8}, "--port"},
		{doctorOptions{wait: -1, probeMiB: 8}, "--wait"},
		{doctorOptions{probeMiB: 0}, "--probe-mib"},
		{doctorOptions{probeMiB: 8, join: "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWx"}, "--key"},
	} {
		_, err := runDoctor(t.Context(), c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error naming %s", c.o, err, c.want)
		}
	}
}

// doctor --join a live peer on loopback: connected by a direct dial, with
// an RTT and an upload rate measured through the peer's probe; a wrong
// key is reported as no connection, not as a crash.
func TestDoctorJoinsAPeer(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	cfg := p2p.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.PSK = key
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := p2p.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p2p.ServeProbe(h)
	o := doctorOptions{join: h.JoinAddrs()[0], probeMiB: 2, key: keyFlags{hex: p2p.FormatSwarmKey(key)}}
	r, err := runDoctor(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	j := r.Join
	if j == nil || !j.Connected || j.How != "direct dial" || j.HolePunch != "not needed" || j.RTTms <= 0 || j.UpMiBs <= 0 || j.ProbeErr != "" {
		t.Fatalf("doctor --join a loopback peer: %+v", j)
	}
	o.key.hex = p2p.FormatSwarmKey(bytes.Repeat([]byte{8}, 32))
	r, err = runDoctor(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Join == nil || r.Join.Connected || r.Join.Error == "" {
		t.Fatalf("doctor with the wrong key: %+v", r.Join)
	}
}
