// Command swarmtrain trains a model together with other machines over a
// peer-to-peer network, or runs a whole demo swarm on one machine.
//
//	swarmtrain demo                       # 4 local nodes train MNIST, print accuracy
//	swarmtrain node                       # start a swarm; prints how others join
//	swarmtrain node --join /ip4/…/p2p/… --key …  # join it: paste the line it printed
//	swarmtrain node --open                # a public swarm, no key (prints the trade-offs)
//	swarmtrain devices                    # what this machine can offer
//	swarmtrain doctor --join …            # how this machine looks from outside (NAT, reachability)
//	swarmtrain version                    # which build this is
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/internal/buildinfo"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "swarmtrain:", err)
		os.Exit(1)
	}
}

// rootCmd is the whole command tree; tests run it with their own args.
func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "swarmtrain",
		Short:         "Peer-to-peer decentralized deep-learning trainer",
		Long:          "swarmtrain trains one model on many machines that join and leave freely.\nEvery node trains on its own data shard; gradients are averaged across the swarm over libp2p.\nA swarm has a secret key (its first node creates it and prints it in the join line;\nwith a key the swarm runs over TCP only, QUIC cannot carry it) unless started with --open.",
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(buildinfo.Read().String())
	root.AddCommand(nodeCmd(), demoCmd(), devicesCmd(), doctorCmd(), benchCmd(), exportCmd(), sweepCmd(), sweepWorkerCmd(), versionCmd())
	return root
}
