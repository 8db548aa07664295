package main

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/node"
)

// A bad flag value is reported with the flag's name, the value as given
// and what the flag accepts: "--hidden "abc": want whole numbers,
// comma-separated, e.g. 256,128", never a bare strconv error.

// wantFor is err, the reason f refused a value, said as what f accepts
// when f's type is one of pflag's (whose errors are strconv's).
func wantFor(f *pflag.Flag, err error) error {
	want := map[string]string{
		"int":         "a whole number",
		"uint64":      "a whole number, 0 or more",
		"float32":     "a number, e.g. 0.001 or 1e-3",
		"float64":     "a number, e.g. 0.001 or 1e-3",
		"intSlice":    "whole numbers, comma-separated, e.g. 256,128",
		"bool":        "true or false",
		"duration":    "a duration such as 90s, 5m or 1h30m",
		"stringSlice": "comma-separated values",
	}[f.Value.Type()]
	if want == "" {
		return err
	}
	return fmt.Errorf("want %s", want)
}

// flagError is the root's FlagErrorFunc: cobra hands it pflag's errors.
func flagError(cmd *cobra.Command, err error) error {
	var bad *pflag.InvalidValueError
	if errors.As(err, &bad) {
		return fmt.Errorf("--%s %q: %w", bad.GetFlag().Name, bad.GetValue(), wantFor(bad.GetFlag(), errors.Unwrap(bad)))
	}
	return fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())
}

// runFieldErr matches the run config's refusals: "run config:
// averaging.codec = "foo": …" (node.RunConfig.Validate).
var runFieldErr = regexp.MustCompile(`^run config: ([a-z_.]+)(\[\d+\])? (= |has )`)

// nodeFieldErr maps node.Config.Validate's refusals to their flags.
var nodeFieldErr = []struct{ prefix, flag string }{
	{"node config: min peers ", "--min-peers "},
	{"node config: checkpoint every ", "--checkpoint-every "},
	{"node config: join timeout ", "--join-timeout "},
	{"node config: join address ", "--join "},
}

// flagNames rewrites a refusal of a run or node config field that a flag
// of cmd set into one that names the flag: "run config: compute.batch =
// 0, want 1..4096" becomes "--batch 0: want 1..4096 (run config:
// compute.batch)". A field that a --run-config file set, not a flag,
// keeps its field name.
func flagNames(cmd *cobra.Command, err error) error {
	if err == nil || cmd == nil {
		return err
	}
	msg := err.Error()
	for _, n := range nodeFieldErr {
		if rest, ok := strings.CutPrefix(msg, n.prefix); ok && cmd.Flags().Lookup(strings.TrimPrefix(strings.TrimSpace(n.flag), "--")) != nil {
			return errors.New(n.flag + strings.Replace(rest, ", want", ": want", 1))
		}
	}
	m := runFieldErr.FindStringSubmatch(msg)
	if m == nil {
		return err
	}
	flags := runFieldFlags()
	name, ok := flags[m[1]]
	if !ok {
		return err
	}
	f := cmd.Flags().Lookup(name)
	if f == nil || !f.Changed {
		return err
	}
	rest := msg[len(m[0]):]
	// "= 0, want …" or "= "foo": …": the value as given, then the reason.
	var value, why string
	if m[3] == "= " {
		if i := strings.Index(rest, ", want"); i >= 0 && (strings.Index(rest, ": ") < 0 || i < strings.Index(rest, ": ")) {
			value, why = rest[:i], strings.TrimPrefix(rest[i:], ", ")
		} else if i := strings.Index(rest, ": "); i >= 0 {
			value, why = rest[:i], rest[i+2:]
		} else {
			value, why = rest, ""
		}
	} else {
		why = "has " + rest
	}
	why = namesToFlags(why, flags)
	out := "--" + name
	if value != "" {
		out += " " + namesToFlags(value, flags)
	}
	if m[2] != "" {
		out += " (item " + strings.Trim(m[2], "[]") + ")"
	}
	return fmt.Errorf("%s: %s (run config: %s)", out, why, m[1])
}

// runFieldFlags maps run field paths to their flags' names.
func runFieldFlags() map[string]string {
	var rc node.RunConfig
	paths := map[any]string{}
	for _, f := range rc.Fields() {
		paths[f.Ptr] = f.Path
	}
	out := map[string]string{}
	for _, f := range runFlagTable {
		out[paths[f.field(&rc)]] = f.name
	}
	return out
}

// namesToFlags writes the run field paths in s as their flags,
// longest first so that a path inside another is not cut.
func namesToFlags(s string, flags map[string]string) string {
	paths := make([]string, 0, len(flags))
	for p := range flags {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, p := range paths {
		s = regexp.MustCompile(`\b`+regexp.QuoteMeta(p)+`\b`).ReplaceAllString(s, "--"+flags[p])
	}
	return s
}
