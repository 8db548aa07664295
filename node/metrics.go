package node

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newRegistry is what /metrics exports: the build, the Go runtime and
// the process (client_golang's collectors), the node's Status as gauges
// and counters (totals, not rates: Prometheus's rate() makes rates from
// them), and the round-duration histogram.
func newRegistry(n *Node) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
		newStatusCollector(n),
	)
	if n.dash != nil {
		reg.MustRegister(n.dash.rounds)
	}
	return reg
}

// buildInfo is swarmtrain_build_info: always 1, its labels say which
// build this is (from the module's build info; "unknown" when absent).
func buildInfo() prometheus.Collector {
	version, commit, goVersion := "unknown", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v := bi.Main.Version; v != "" {
			version = v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				commit = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "swarmtrain_build_info",
		Help:        "Always 1; the labels name the build: module version, VCS commit and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "goversion": goVersion},
	})
	g.Set(1)
	return g
}

// statusMetric is one Prometheus series read from a Status.
type statusMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(Status) float64
}

// statusCollector exports the node's Status: one snapshot per scrape,
// however many series read it.
type statusCollector struct {
	n       *Node
	metrics []statusMetric
}

func newStatusCollector(n *Node) *statusCollector {
	c := &statusCollector{n: n}
	add := func(name, help string, kind prometheus.ValueType, f func(Status) float64) {
		c.metrics = append(c.metrics, statusMetric{prometheus.NewDesc("swarmtrain_"+name, help, nil, nil), kind, f})
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	add("step", "Optimizer steps applied to the replicated state.", gauge, func(s Status) float64 { return float64(s.Step) })
	add("live_peers", "Peers on the run seen alive, self included.", gauge, func(s Status) float64 { return float64(s.LivePeers) })
	add("loss", "Moving average of the local training loss.", gauge, func(s Status) float64 { return s.Loss })
	add("allreduce_uplink_bytes_per_second", "Rate at which this node's all-reduce parts reach their owners; parts are sized by it.", gauge, func(s Status) float64 { return s.Uplink })
	add("allreduce_round_deadline_seconds", "Time the latest all-reduce round was given.", gauge, func(s Status) float64 { return s.RoundDeadline })
	add("samples_total", "Training samples this node computed gradients on.", counter, func(s Status) float64 { return float64(s.Samples) })
	add("rounds_total", "Averaging rounds completed.", counter, func(s Status) float64 { return float64(s.Rounds) })
	add("failed_rounds_total", "Matchmaking or all-reduce attempts that failed and were retried.", counter, func(s Status) float64 { return float64(s.FailedRounds) })
	add("state_syncs_total", "State downloads from peers.", counter, func(s Status) float64 { return float64(s.StateSyncs) })
	add("received_bytes_total", "Bytes received over libp2p.", counter, func(s Status) float64 { return float64(s.BytesIn) })
	add("sent_bytes_total", "Bytes sent over libp2p.", counter, func(s Status) float64 { return float64(s.BytesOut) })
	return c
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Status()
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(s))
	}
}
