package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/shapes"
	"github.com/swarmtrain/swarmtrain/node"
)

var imageDemo = flag.Bool("imagedemo", false, "run the image-folder demo acceptance test (4 nodes, CNN on synthetic shapes; minutes)")

// A generated image folder trains with `demo --model cnn --data DIR` to
// >= 95% held-out accuracy with equal hashes; with --augment the run is
// another one (another run ID).
func TestImageFolderDemo(t *testing.T) {
	if !*imageDemo {
		t.Skip("the image demo takes minutes: go test -run TestImageFolderDemo ./cmd/swarmtrain/ -args -imagedemo")
	}
	data := filepath.Join(t.TempDir(), "shapes")
	if err := shapes.Write(data, 200, 32, 11); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	demo := func(extra ...string) demoResult {
		args := append([]string{"demo", "--json", "--model", "cnn", "--data", data, "--data-cache", filepath.Join(t.TempDir(), "cache"),
			"--steps", "200", "--batch", "32", "--target-batch", "128", "--hidden", "64", "--lr", "3e-3"}, extra...)
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), runMainEnv+"=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("demo %v: %v\n%s", extra, err, errb.String())
		}
		var r demoResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("demo output: %v\n%s", err, out.String())
		}
		return r
	}
	r := demo()
	t.Logf("run %s: held-out accuracy %.2f%%, hashes equal %v, %.0f s", r.Run, 100*r.Accuracy, r.HashesOK, r.Seconds)
	if !r.HashesOK || r.Accuracy < 0.95 {
		t.Errorf("accuracy %.4f, hashes equal %v: want >= 0.95 and equal", r.Accuracy, r.HashesOK)
	}
	// The same folder with augmentation is another run: its ID differs.
	cfg := node.Config{Run: node.DefaultRunConfig(), DataDir: data}
	cfg.Run.Model.Kind = "cnn"
	if err := node.PrepareImages(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Run.Data.Dataset != node.DatasetImages || !strings.HasPrefix(cfg.Run.Data.Files, "") || cfg.Run.Data.ImageSize != 32 {
		t.Fatalf("prepared %+v", cfg.Run.Data)
	}
	aug := cfg.Run
	aug.Data.Augment = "crop=2,flip"
	if aug.ID() == cfg.Run.ID() {
		t.Error("augmentation on and off share a run ID")
	}
}
