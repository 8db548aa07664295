package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
)

// printConfig runs node --print-config with args under environ and
// reads back what it printed, comments (the defaults) left out.
func printConfig(t *testing.T, environ []string, args ...string) (*koanf.Koanf, string, error) {
	t.Helper()
	var out bytes.Buffer
	err := execute(append([]string{"node", "--print-config"}, args...), environ, &out)
	k := koanf.New(".")
	if err == nil {
		if lerr := k.Load(rawbytes.Provider(out.Bytes()), toml.Parser()); lerr != nil {
			t.Fatalf("--print-config printed what TOML cannot read: %v\n%s", lerr, out.String())
		}
	}
	return k, out.String(), err
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Flags beat the environment, which beats the file, which beats the
// defaults; TOML and YAML say the same; a key may use _ for -.
func TestConfigPrecedence(t *testing.T) {
	files := map[string]string{
		"node.toml": "steps = 500\nlr = 0.01\nseed = 3\nhidden = [64, 32]\njoin-timeout = \"2m\"\nno_mdns = true\n",
		"node.yaml": "steps: 500\nlr: 0.01\nseed: 3\nhidden: [64, 32]\njoin-timeout: 2m\nno_mdns: true\n",
	}
	for name, text := range files {
		t.Run(name, func(t *testing.T) {
			file := writeFile(t, name, text)
			env := []string{"SWARMTRAIN_LR=0.02", "SWARMTRAIN_SEED=4", "SWARMTRAIN_ADVERSARY=ignored", "HOME=/root"}
			k, out, err := printConfig(t, env, "--config", file, "--seed", "5")
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range map[string]string{
				"steps": "500", "lr": "0.02", "seed": "5", "join-timeout": "2m0s", "no-mdns": "true",
			} {
				if got := k.String(key); got != want {
					t.Errorf("%s = %q, want %q\n%s", key, got, want, out)
				}
			}
			if got := k.Ints("hidden"); len(got) != 2 || got[0] != 64 || got[1] != 32 {
				t.Errorf("hidden = %v, want [64 32]", got)
			}
			// A flag left alone is printed as a commented default.
			if k.Exists("batch") || !strings.Contains(out, "# batch = 64\n") {
				t.Errorf("batch, left alone, should be a commented default:\n%s", out)
			}
		})
	}
	// SWARMTRAIN_CONFIG names the file when --config does not.
	file := writeFile(t, "c.toml", "steps = 77\n")
	if k, _, err := printConfig(t, []string{"SWARMTRAIN_CONFIG=" + file}); err != nil || k.Int("steps") != 77 {
		t.Errorf("SWARMTRAIN_CONFIG: %v, steps %d", err, k.Int("steps"))
	}
}

// What --print-config prints, --config reads back to the same
// configuration.
func TestPrintConfigRoundTrip(t *testing.T) {
	_, first, err := printConfig(t, []string{"SWARMTRAIN_CODEC=int8"}, "--steps", "300", "--hidden", "128,64", "--lr", "0.003", "--join-timeout", "90s", "--freeze", "a.,b.", "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, "again.toml", first)
	_, second, err := printConfig(t, nil, "--config", file)
	if err != nil {
		t.Fatalf("--config of --print-config's output: %v\n%s", err, first)
	}
	if first != second {
		t.Errorf("round trip changed the configuration:\n%s\nthen\n%s", first, second)
	}
	if !strings.Contains(first, "lr = 0.003\n") || !strings.Contains(first, "codec = 'int8'\n") {
		t.Errorf("want lr = 0.003 (not float32 noise) and the environment's codec:\n%s", first)
	}
}

// A file's unknown key, a bad value from a file or a variable, and a
// file of another format are refused naming what was wrong.
func TestConfigRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string
		env              []string
		want             []string
	}{
		{"unknown key", "a.toml", "steps = 5\nlearning-rate = 0.1\n", nil, []string{`unknown key "learning-rate"`, "swarmtrain node has no --learning-rate flag"}},
		{"unknown table", "a.yaml", "optimizer:\n  lr: 0.1\n", nil, []string{`unknown key "optimizer.lr"`}},
		{"not a config flag", "a.toml", "print-config = true\n", nil, []string{`unknown key "print-config"`}},
		{"bad value in file", "a.toml", "hidden = [\"wide\"]\n", nil, []string{"--hidden [wide]", "key hidden", "want whole numbers"}},
		{"list for a value", "a.toml", "steps = [1, 2]\n", nil, []string{"--steps [1 2]", "want a whole number"}},
		{"bad variable", "", "", []string{"SWARMTRAIN_STEPS=many"}, []string{`--steps "many" (from SWARMTRAIN_STEPS)`, "want a whole number"}},
		{"bad choice in variable", "", "", []string{"SWARMTRAIN_LOG_LEVEL=loud"}, []string{"--log-level", "SWARMTRAIN_LOG_LEVEL", "want debug, info, warn or error"}},
		{"other format", "a.json", "{}", nil, []string{"want a .toml, .yaml or .yml file"}},
		{"broken toml", "a.toml", "steps = = 3\n", nil, []string{"--config", "a.toml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			if tc.file != "" {
				args = []string{"--config", writeFile(t, tc.file, tc.text)}
			}
			_, _, err := printConfig(t, tc.env, args...)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// --log-level and --log-format shape slog's records, and are exported
// to the environment for a demo's nodes.
func TestLogFlags(t *testing.T) {
	env := map[string]string{}
	setenv := func(k, v string) error { env[k] = v; return nil }
	if err := run([]string{"version", "--log-level", "warn", "--log-format", "json"}, nil, io.Discard, setenv); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	h := logOpts.Handler(&log)
	if h.Enabled(t.Context(), -4) || h.Enabled(t.Context(), 0) || !h.Enabled(t.Context(), 4) {
		t.Error("--log-level warn: want warn and error only")
	}
	if !logOpts.JSON() {
		t.Error("--log-format json not in force")
	}
	if env["SWARMTRAIN_LOG_LEVEL"] != "warn" || env["SWARMTRAIN_LOG_FORMAT"] != "json" {
		t.Errorf("exported %v, want the log flags for child nodes", env)
	}
	// Tests run commands through execute, which exports nothing.
	if err := execute([]string{"version", "--log-format", "json"}, nil, io.Discard); err != nil || os.Getenv("SWARMTRAIN_LOG_FORMAT") != "" {
		t.Errorf("execute changed the test's environment: %v", err)
	}
}

// A demo's nodes do not read the SWARMTRAIN_* variables that set node
// flags (SWARMTRAIN_HTTP would give all of them one port), but do read
// those the demo passes on purpose, and any that name no flag.
func TestChildEnvDropsNodeFlags(t *testing.T) {
	got := childEnv([]string{"PATH=/bin", "SWARMTRAIN_HTTP=:8080", "HOME=/root", "SWARMTRAIN_DIR=/tmp/x", "XSWARMTRAIN_A=1",
		"SWARMTRAIN_LOG_LEVEL=debug", "SWARMTRAIN_ENGINE=gorgonia", "SWARMTRAIN_TEST_RUN_MAIN=1", "SWARMTRAIN_JOIN=/ip4/1.2.3.4/tcp/1"}, nodeCmd().Flags())
	want := []string{"PATH=/bin", "HOME=/root", "XSWARMTRAIN_A=1", "SWARMTRAIN_LOG_LEVEL=debug", "SWARMTRAIN_ENGINE=gorgonia", "SWARMTRAIN_TEST_RUN_MAIN=1"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
}
