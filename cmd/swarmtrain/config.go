package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Every flag of a command can also come from a config file (--config,
// TOML or YAML, one key per flag: the flag's name, "-" or "_" alike) or
// from the environment (SWARMTRAIN_ and the name in capitals, "-" as
// "_"). A flag on the command line beats the environment, which beats
// the file, which beats the default. A value from the file or the
// environment is set through the flag itself, so it is checked as the
// flag would be and the command cannot tell where it came from (it is
// Changed, as a flag given is).

// envPrefix starts every environment variable that sets a flag.
const envPrefix = "SWARMTRAIN_"

// notConfig are flags that say how to read the config, or what to do
// instead of running, not what to run: no file or variable sets them.
var notConfig = map[string]bool{"config": true, "print-config": true, "help": true, "version": true}

// envName is the environment variable that sets the flag named name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyConfig sets every flag of fs not given on the command line from
// the environment, then from the config file path ("" for none).
// environ is os.Environ's form; a variable that names no flag of this
// command is ignored (one environment serves every command), a key of
// the file that names none is an error.
func applyConfig(fs *pflag.FlagSet, path string, environ []string, cmdName string) error {
	kfile, kenv := koanf.New("."), koanf.New(".")
	if path != "" {
		var p koanf.Parser
		switch strings.ToLower(filepath.Ext(path)) {
		case ".toml":
			p = toml.Parser()
		case ".yaml", ".yml":
			p = yaml.Parser()
		default:
			return fmt.Errorf("--config %s: want a .toml, .yaml or .yml file", path)
		}
		if err := kfile.Load(file.Provider(path), p); err != nil {
			return fmt.Errorf("--config %s: %w", path, err)
		}
		for _, key := range kfile.Keys() {
			// Nested tables flatten to a.b: no flag has a dot.
			name := strings.ReplaceAll(key, "_", "-")
			if f := fs.Lookup(name); f == nil || notConfig[name] {
				return fmt.Errorf("--config %s: unknown key %q: %s has no --%s flag (see %s --help)", path, key, cmdName, name, cmdName)
			}
		}
	}
	err := kenv.Load(env.Provider(".", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(k, v string) (string, any) {
			name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, envPrefix), "_", "-"))
			if fs.Lookup(name) == nil || notConfig[name] {
				return "", nil // another command's, or no flag's
			}
			return name, v
		},
	}), nil)
	if err != nil {
		return fmt.Errorf("environment: %w", err)
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || notConfig[f.Name] {
			return
		}
		var v any
		var from string
		if kenv.Exists(f.Name) {
			v, from = kenv.Get(f.Name), envName(f.Name)
		} else if key, ok := fileKey(kfile, f.Name); ok {
			v, from = kfile.Get(key), fmt.Sprintf("--config %s, key %s", path, key)
		} else {
			return
		}
		if err := setFlag(f, v); err != nil {
			errs = append(errs, fmt.Errorf("--%s %s (from %s): %w", f.Name, showValue(v), from, wantFor(f, err)))
		}
	})
	return errors.Join(errs...)
}

// fileKey is the key of the file that sets the flag name: the name
// itself, or with "_" for "-".
func fileKey(k *koanf.Koanf, name string) (string, bool) {
	for _, key := range []string{name, strings.ReplaceAll(name, "-", "_")} {
		if k.Exists(key) {
			return key, true
		}
	}
	return "", false
}

// setFlag sets f to v, a value a parser or the environment gave: a
// list replaces a list flag's value, anything else is read as the
// command line would read it.
func setFlag(f *pflag.Flag, v any) error {
	if list, ok := v.([]any); ok {
		sv, ok := f.Value.(pflag.SliceValue)
		if !ok {
			return errors.New("a list, for a flag that takes one value")
		}
		s := make([]string, len(list))
		for i, x := range list {
			s[i] = scalar(x)
		}
		if err := sv.Replace(s); err != nil {
			return err
		}
	} else if _, ok := v.(map[string]any); ok {
		return errors.New("a table, for a flag")
	} else if err := f.Value.Set(scalar(v)); err != nil {
		return err
	}
	f.Changed = true
	return nil
}

// scalar writes one parsed value as the command line would give it.
func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

func showValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// effectiveConfig is every flag of fs that a config file may set, with
// its value now, in the form --config reads (TOML): first the flags set
// (on the command line, by the environment or by a file), then the rest
// at their defaults, commented out, since a flag set to its default is
// not the same as one left alone (--listen, left alone, follows --port;
// a resumed run takes the run flags left alone from its folder).
func effectiveConfig(fs *pflag.FlagSet) ([]byte, error) {
	var out []byte
	for _, changed := range []bool{true, false} {
		k := koanf.New(".")
		err := k.Load(posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
			if notConfig[f.Name] || f.Changed != changed {
				return "", nil
			}
			return f.Name, tomlValue(fs, f)
		}), nil)
		if err != nil {
			return nil, err
		}
		b, err := k.Marshal(toml.Parser())
		if err != nil {
			return nil, err
		}
		if changed {
			out = append(out, "# set by flags, SWARMTRAIN_* variables or --config\n"...)
			out = append(out, b...)
			continue
		}
		out = append(out, "\n# defaults, left alone\n"...)
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if line != "" {
				out = append(out, "# "+line...)
			}
		}
	}
	return out, nil
}

// tomlValue is f's value as TOML should hold it.
func tomlValue(fs *pflag.FlagSet, f *pflag.Flag) any {
	switch f.Value.Type() {
	case "duration":
		d, _ := time.ParseDuration(f.Value.String())
		return d.String()
	case "float32":
		// As float64 0.001 rather than float32's 0.0010000000474974513.
		x, _ := strconv.ParseFloat(f.Value.String(), 64)
		return x
	case "int", "uint64", "bool", "float64", "stringSlice", "intSlice", "string":
		return posflag.FlagVal(fs, f)
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.GetSlice()
	}
	return f.Value.String()
}

// configFlags are --config and --print-config, on the commands that run
// something with many flags (node, demo).
type configFlags struct {
	file  string
	print bool
}

// withConfig gives cmd --config and --print-config and the
// SWARMTRAIN_* environment: before cmd runs, its flags not given take
// their values from the environment and the file; with --print-config
// it prints them and does not run.
func withConfig(cmd *cobra.Command, out io.Writer) *cobra.Command {
	var c configFlags
	fs := cmd.Flags()
	fs.StringVar(&c.file, "config", "", "read flags from this TOML or YAML file, one key per flag (e.g. steps = 5000, hidden = [256, 128]); flags given and SWARMTRAIN_* environment variables (SWARMTRAIN_STEPS=5000) override it")
	fs.BoolVar(&c.print, "print-config", false, "print the effective configuration (flags, environment, --config file and defaults) as TOML that --config reads, and exit")
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if c.print {
			b, err := effectiveConfig(cmd.Flags())
			if err != nil {
				return err
			}
			_, err = out.Write(b)
			return err
		}
		return run(cmd, args)
	}
	return cmd
}

// configure is the root's PersistentPreRunE: the environment and the
// --config file (when the command has one) fill the flags not given.
func configure(cmd *cobra.Command, environ []string) error {
	path := ""
	if f := cmd.Flags().Lookup("config"); f != nil {
		path = f.Value.String()
		if !f.Changed {
			if v, ok := lookupEnv(environ, envName("config")); ok {
				path = v
			}
		}
	}
	return applyConfig(cmd.Flags(), path, environ, cmd.CommandPath())
}

func lookupEnv(environ []string, name string) (string, bool) {
	for _, kv := range slices.Backward(environ) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}
