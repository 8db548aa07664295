package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// outsideView is what a host has learnt of how others see it: AutoNAT's
// verdict, the addresses peers observed, the router's port mapping, and
// how each connection came about. *p2p.Host provides it; tests fake it.
type outsideView interface {
	Reachability() network.Reachability
	ObservedAddrs() []ma.Multiaddr
	PortMapping() string
	Relayed(p peer.ID) bool
	HolePunches() (ok, failed int)
}

var _ outsideView = (*p2p.Host)(nil)

// doctorReport is what `swarmtrain doctor` prints (as text, or as JSON
// with --json).
type doctorReport struct {
	Peer          string     `json:"peer"`
	Listen        []string   `json:"listen_addrs"`
	Reachability  string     `json:"reachability"` // public, private or unknown
	ObservedAddrs []string   `json:"observed_addrs"`
	PortMapping   string     `json:"port_mapping"` // the mapped address, or why there is none
	Mode          string     `json:"mode"`         // owner or client
	ModeWhy       string     `json:"mode_why"`
	Join          *joinCheck `json:"join,omitempty"`
}

// joinCheck is doctor's view of one peer it was asked to reach.
type joinCheck struct {
	Addr      string  `json:"addr"`
	Connected bool    `json:"connected"`
	How       string  `json:"how,omitempty"` // direct dial, hole punch or relay
	Error     string  `json:"error,omitempty"`
	RTTms     float64 `json:"rtt_ms,omitempty"`
	// UpMiBs is the rate at which 8 MiB reached the peer's probe.
	UpMiBs    float64 `json:"up_mib_per_sec,omitempty"`
	ProbeErr  string  `json:"probe_error,omitempty"`
	HolePunch string  `json:"hole_punch"` // not needed, succeeded, failed or not tried
}

// doctorOptions are doctor's flags.
type doctorOptions struct {
	join     string
	port     int
	wait     time.Duration
	probeMiB int
	asJSON   bool
	key      keyFlags
}

func doctorCmd() *cobra.Command {
	var o doctorOptions
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Show how this machine looks from outside: reachability, NAT, a test connection",
		Long: `Start a throwaway peer (a new identity, nothing trained) and report what the
network makes of this machine: whether peers can dial it back (AutoNAT), the public
address they see, whether the router mapped a port (UPnP/NAT-PMP), and the mode a
node started here would run in (owner of all-reduce parts, or client).

With --join ADDR (and the swarm's --key, as in the join line) it also connects to
that peer and says how the connection was made (direct dial, hole punch, or only
through a relay), the round-trip time, and the upload rate to it.`,
		Example: `  swarmtrain doctor
  swarmtrain doctor --join /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW... --key 3f9a...
  swarmtrain doctor --port 4001 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := runDoctor(ctx, o)
			if err != nil {
				return err
			}
			if o.asJSON {
				return json.NewEncoder(os.Stdout).Encode(rep)
			}
			printDoctor(os.Stdout, rep)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.join, "join", "", "also connect to this peer (a multiaddr from a join line) and measure the link to it")
	fs.IntVar(&o.port, "port", 0, "TCP port to listen on, the one a node here would use (port mapping and reachability are per port); 0 picks a free one")
	fs.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for peers to test whether they can dial us back")
	fs.IntVar(&o.probeMiB, "probe-mib", 8, fmt.Sprintf("MiB sent to --join's peer to measure the upload rate (1..%d)", p2p.MaxProbeBytes>>20))
	fs.BoolVar(&o.asJSON, "json", false, "print the report as one JSON object")
	o.key.bind(fs)
	fs.Lookup("key").Usage = "the swarm's secret key, 64 hex digits, as the join line prints it (needed with --join to a keyed swarm; doctor never stores it)"
	return cmd
}

// runDoctor starts a throwaway host, optionally connects to o.join, waits
// up to o.wait for AutoNAT's verdict and returns the report.
func runDoctor(ctx context.Context, o doctorOptions) (doctorReport, error) {
	switch {
	case o.port < 0 || o.port > 65535:
		return doctorReport{}, fmt.Errorf("--port %d: want 0..65535", o.port)
	case o.wait < 0:
		return doctorReport{}, fmt.Errorf("--wait %v: want a duration of 0 or more", o.wait)
	case o.probeMiB < 1 || o.probeMiB > p2p.MaxProbeBytes>>20:
		return doctorReport{}, fmt.Errorf("--probe-mib %d: want 1..%d", o.probeMiB, p2p.MaxProbeBytes>>20)
	}
	// A doctor has no --dir: it never creates or keeps a key.
	psk, given, err := o.key.given()
	switch {
	case err != nil:
		return doctorReport{}, err
	case o.join != "" && !given:
		return doctorReport{}, errNoKey
	}
	id, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return doctorReport{}, err
	}
	cfg := p2p.DefaultConfig()
	cfg.Identity = id
	cfg.PSK = psk
	cfg.ListenAddrs = []string{fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", o.port)}
	if psk == nil {
		cfg.ListenAddrs = append(cfg.ListenAddrs, fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", o.port))
	}
	h, err := p2p.New(cfg)
	if err != nil {
		return doctorReport{}, fmt.Errorf("start a peer: %w", err)
	}
	defer h.Close()
	var jc *joinCheck
	if o.join != "" {
		jc = checkJoin(ctx, h, o.join, o.probeMiB<<20)
	}
	// AutoNAT asks connected peers to dial us back; without any it
	// cannot decide, so don't wait for nothing.
	if len(h.Network().Peers()) > 0 {
		waitReachability(ctx, h, o.wait)
	}
	return summarize(h.ID(), h.JoinAddrs(), h, jc), nil
}

// checkJoin connects to addr and measures the link.
func checkJoin(ctx context.Context, h *p2p.Host, addr string, probeBytes int) *joinCheck {
	view := outsideView(h)
	jc := &joinCheck{Addr: addr, HolePunch: "not tried"}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if relay, _, ok := strings.Cut(addr, "/p2p-circuit"); ok {
		// Through a relay, the peer starts a hole punch as soon as our
		// relayed connection reaches it, and libp2p answers punches only
		// once identify has shown it a public address of ours: meet the
		// relay first and wait for that, or the one punch is missed.
		if _, err := h.Connect(dctx, relay); err == nil {
			for !slices.Contains(h.Mux().Protocols(), holepunch.Protocol) && dctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	p, err := h.Connect(dctx, addr)
	if err != nil {
		jc.Error = err.Error()
		return jc
	}
	jc.Connected = true
	if view.Relayed(p) {
		// DCUtR starts on its own once the relayed connection is up;
		// give it a moment to upgrade to a direct one.
		deadline := time.Now().Add(15 * time.Second)
		for view.Relayed(p) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(250 * time.Millisecond)
		}
	}
	ok, failed := view.HolePunches()
	switch {
	case !view.Relayed(p) && ok > 0:
		jc.How, jc.HolePunch = "hole punch", "succeeded"
	case !view.Relayed(p):
		jc.How, jc.HolePunch = "direct dial", "not needed"
	default:
		jc.How = "relay"
		if failed > 0 {
			jc.HolePunch = "failed"
		}
	}
	rtt, err := pingRTT(ctx, h, p)
	if err == nil {
		jc.RTTms = float64(rtt.Microseconds()) / 1000
	}
	if jc.How == "relay" {
		jc.ProbeErr = "the connection is relayed; bulk traffic waits for a direct one"
		return jc
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if rate, err := p2p.Probe(pctx, h, p, probeBytes); err != nil {
		jc.ProbeErr = err.Error()
	} else {
		jc.UpMiBs = rate / (1 << 20)
	}
	return jc
}

// pingRTT is the median of a few libp2p pings.
func pingRTT(ctx context.Context, h *p2p.Host, p peer.ID) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rtts []time.Duration
	for r := range ping.Ping(ctx, h.Host, p) {
		if r.Error != nil {
			return 0, r.Error
		}
		if rtts = append(rtts, r.RTT); len(rtts) == 5 {
			break
		}
	}
	if len(rtts) == 0 {
		return 0, fmt.Errorf("ping %s: no answer", p)
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], nil
}

// waitReachability polls until AutoNAT decides or d passes.
func waitReachability(ctx context.Context, view outsideView, d time.Duration) {
	deadline := time.Now().Add(d)
	for view.Reachability() == network.ReachabilityUnknown && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
	}
}

// summarize turns what the host learnt into the report. It reads no
// clock and does no I/O.
func summarize(id peer.ID, listen []string, view outsideView, jc *joinCheck) doctorReport {
	r := doctorReport{Peer: id.String(), Listen: listen, Join: jc, ObservedAddrs: []string{}}
	reach := view.Reachability()
	r.Reachability = node.ReachabilityName(reach)
	for _, a := range view.ObservedAddrs() {
		r.ObservedAddrs = append(r.ObservedAddrs, a.String())
	}
	r.PortMapping = view.PortMapping()
	if r.PortMapping == "" {
		r.PortMapping = "none"
	}
	client, why := node.ClientMode(reach, false)
	r.Mode, r.ModeWhy = "owner", why
	if client {
		r.Mode = "client"
	}
	return r
}

func printDoctor(w io.Writer, r doctorReport) {
	fmt.Fprintf(w, "swarmtrain doctor (throwaway peer %s)\n", r.Peer)
	line := func(k, v string) { fmt.Fprintf(w, "  %-13s %s\n", k, v) }
	line("listening on", strings.Join(r.Listen, "\n                "))
	switch r.Reachability {
	case "public":
		line("reachability", "public: peers dialed this machine back (AutoNAT)")
	case "private":
		line("reachability", "private: peers could not dial this machine back (AutoNAT): behind a NAT or firewall")
	default:
		line("reachability", "unknown: no peer could test it (give --join, or peers saw no public address)")
	}
	obs := "none yet"
	if len(r.ObservedAddrs) > 0 {
		obs = strings.Join(r.ObservedAddrs, ", ")
	}
	line("observed at", obs)
	line("port mapping", r.PortMapping)
	if j := r.Join; j != nil {
		if !j.Connected {
			line("join", fmt.Sprintf("%s: no connection: %s", j.Addr, j.Error))
		} else {
			s := fmt.Sprintf("%s: connected by %s (hole punch: %s)", j.Addr, j.How, j.HolePunch)
			if j.RTTms > 0 {
				s += fmt.Sprintf(", rtt %.1f ms", j.RTTms)
			}
			if j.ProbeErr != "" {
				s += ", upload not measured: " + j.ProbeErr
			} else if j.UpMiBs > 0 {
				s += fmt.Sprintf(", upload %.1f MiB/s", j.UpMiBs)
			}
			line("join", s)
		}
	}
	line("mode", r.Mode+": "+r.ModeWhy)
}
