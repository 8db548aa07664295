// Command swarmtrain trains a model together with other machines over a
// peer-to-peer network, or runs a whole demo swarm on one machine.
//
//	swarmtrain demo                       # 4 local nodes train MNIST, print accuracy
//	swarmtrain node                       # start a swarm; prints how others join
//	swarmtrain node --join /ip4/…/p2p/… --key …  # join it: paste the line it printed
//	swarmtrain node --open                # a public swarm, no key (prints the trade-offs)
//	swarmtrain node --config node.toml    # every flag from a file (SWARMTRAIN_* variables too)
//	swarmtrain devices                    # what this machine can offer
//	swarmtrain doctor --join …            # how this machine looks from outside (NAT, reachability)
//	swarmtrain version                    # which build this is
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/internal/buildinfo"
	"github.com/swarmtrain/swarmtrain/trainer"
)

func main() {
	if err := run(os.Args[1:], os.Environ(), os.Stdout, os.Setenv); err != nil {
		fmt.Fprintln(os.Stderr, "swarmtrain:", err)
		os.Exit(1)
	}
}

// execute runs the command line args under environ as a test does:
// it leaves the process's environment alone.
func execute(args, environ []string, stdout io.Writer) error {
	return run(args, environ, stdout, nil)
}

// run runs the command line args under environ; refusals of a field
// that a flag set name the flag. setenv, when not nil, exports the log
// flags for the child processes a command starts (a demo's nodes).
func run(args, environ []string, stdout io.Writer, setenv func(k, v string) error) error {
	root := rootCmd(environ, stdout, setenv)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	return flagNames(cmd, err)
}

// logOpts are the root's --log-level and --log-format, read by every
// command (the node's log, slog's default).
var logOpts logFlags

type logFlags struct {
	level, format *choice
}

func (l *logFlags) bind(fs *pflag.FlagSet) {
	l.level = newChoice("info", "debug", "info", "warn", "error")
	l.format = newChoice("text", "text", "json")
	fs.Var(l.level, "log-level", "least severe log records written: "+l.level.choices())
	fs.Var(l.format, "log-format", "log records as "+l.format.choices()+" (one JSON object a line, for a log collector)")
}

// Level is the slog level --log-level names.
func (l *logFlags) Level() slog.Level {
	var lv slog.Level
	lv.UnmarshalText([]byte(l.level.String())) // one of the choices: cannot fail
	return lv
}

// JSON says --log-format json.
func (l *logFlags) JSON() bool { return l.format.String() == "json" }

// Handler writes w as the flags say.
func (l *logFlags) Handler(w io.Writer) slog.Handler {
	o := &slog.HandlerOptions{Level: l.Level()}
	if l.JSON() {
		return slog.NewJSONHandler(w, o)
	}
	return slog.NewTextHandler(w, o)
}

// rootCmd is the whole command tree; tests run it with their own args.
func rootCmd(environ []string, stdout io.Writer, setenv func(k, v string) error) *cobra.Command {
	// The compute engine is this process's own choice, not the run's.
	engine := newChoice(trainer.DefaultEngine, trainer.EngineNative, trainer.EngineGorgonia)
	precision := newChoice(trainer.DefaultPrecision, trainer.PrecisionFP32, trainer.PrecisionBF16)
	root := &cobra.Command{
		Use:           "swarmtrain",
		Short:         "Peer-to-peer decentralized deep-learning trainer",
		Long:          "swarmtrain trains one model on many machines that join and leave freely.\nEvery node trains on its own data shard; gradients are averaged across the swarm over libp2p.\nA swarm has a secret key (its first node creates it and prints it in the join line;\nwith a key the swarm runs over TCP only, QUIC cannot carry it) unless started with --open.\n\nEvery flag may also be set by an environment variable, SWARMTRAIN_ and its name in\ncapitals with _ for - (SWARMTRAIN_LOG_LEVEL=debug), and node and demo read a --config\nfile (TOML or YAML); flags given beat the environment, which beats the file.",
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := configure(cmd, environ); err != nil {
				return err
			}
			slog.SetDefault(slog.New(logOpts.Handler(os.Stderr)))
			trainer.DefaultEngine = engine.value
			if err := trainer.CheckPrecision(precision.value); err != nil {
				return err
			}
			trainer.DefaultPrecision = precision.value
			// The nodes a demo starts read them from the environment.
			for _, name := range passEnv {
				if f := cmd.Flags().Lookup(name); setenv != nil && f != nil && f.Changed {
					if err := setenv(envName(name), f.Value.String()); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetVersionTemplate(buildinfo.Read().String())
	root.SetFlagErrorFunc(flagError)
	logOpts.bind(root.PersistentFlags())
	root.PersistentFlags().Var(precision, "precision", "precision of the matrix products on this node: fp32, or bf16 (inputs rounded to bfloat16, fp32 sums, weights and optimizer; the native mlp on CPUs with AVX512_BF16); the run's replicas stay identical either way")
	root.PersistentFlags().Var(engine, "engine", "compute engine of the models that have a native one (the mlp and cnn): native (trainer/engine) or gorgonia (the reference); bert always runs on gorgonia")
	root.AddCommand(withConfig(nodeCmd(), stdout), withConfig(demoCmd(), stdout), devicesCmd(), doctorCmd(), benchCmd(), exportCmd(), sweepCmd(), sweepWorkerCmd(), versionCmd())
	return root
}

// choice is a flag that takes one of a few words.
type choice struct {
	value string
	allow []string
}

func newChoice(def string, allow ...string) *choice { return &choice{def, allow} }

func (c *choice) String() string { return c.value }
func (c *choice) Type() string   { return "string" }

func (c *choice) Set(s string) error {
	for _, a := range c.allow {
		if s == a {
			c.value = s
			return nil
		}
	}
	return fmt.Errorf("want %s", c.choices())
}

// choices is "a, b or c".
func (c *choice) choices() string {
	if len(c.allow) == 1 {
		return c.allow[0]
	}
	return strings.Join(c.allow[:len(c.allow)-1], ", ") + " or " + c.allow[len(c.allow)-1]
}
