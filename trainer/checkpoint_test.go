package trainer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var writeGolden = flag.Bool("write-golden", false, "rewrite testdata/checkpoint-v1.safetensors")

// smallCheckpoint is a 4-3-2 MLP with Adam state after 7 steps.
func smallCheckpoint(t testing.TB) Checkpoint {
	m, err := NewMLP(ModelConfig{Hidden: []int{3}, Batch: 2, Seed: 5}, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]float32, m.NumParams())
	m.ReadParams(p)
	opt := NewAdam(0.9, 0.999, 1e-8, 0, len(p))
	g := make([]float32, len(p))
	for step := range 7 {
		for i := range g {
			g[i] = float32(math.Sin(float64(i + step)))
		}
		opt.Step(p, g, 1e-2)
	}
	return Checkpoint{Step: 7, Run: json.RawMessage(`{"hidden":[3],"seed":5}`), RunID: "0123456789abcdef", Tensors: m.Tensors(), Params: p, Optimizer: "adam", OptState: opt.State()}
}

// The checkpoint in testdata reads and writes back byte for byte: the
// format does not drift, and files from older builds stay readable.
func TestCheckpointGoldenFile(t *testing.T) {
	path := filepath.Join("testdata", "checkpoint-v1.safetensors")
	if *writeGolden {
		if err := WriteCheckpoint(path, smallCheckpoint(t)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := EncodeCheckpoint(*c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, b) {
		t.Fatal("the golden checkpoint does not write back byte for byte")
	}
	want := smallCheckpoint(t)
	if c.Step != 7 || c.Optimizer != "adam" || c.RunID != want.RunID || string(c.Run) != string(want.Run) ||
		!slices.Equal(c.Params, want.Params) || !slices.Equal(c.OptState, want.OptState) || c.Matches(want.Tensors) != nil {
		t.Fatalf("golden checkpoint holds step %d, %s, %d params: not the state it was written from", c.Step, c.Optimizer, len(c.Params))
	}
	// Python's safetensors sees plain F32 tensors under the model's names.
	hdr := string(b[8 : 8+binary.LittleEndian.Uint64(b)])
	for _, s := range []string{`"layers.0.weight":{"dtype":"F32","shape":[4,3]`, `"layers.1.bias":{"dtype":"F32","shape":[2]`, `"__metadata__"`} {
		if !strings.Contains(hdr, s) {
			t.Errorf("header lacks %s:\n%s", s, hdr)
		}
	}
}

// Files that are not what they claim are refused with a reason, never a
// panic or a half-loaded state.
func TestCheckpointRefusesMalformed(t *testing.T) {
	good, err := EncodeCheckpoint(smallCheckpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(good) {
		if _, err := DecodeCheckpoint(good[:n]); err == nil {
			t.Fatalf("a %d-byte prefix of %d was accepted", n, len(good))
		}
	}
	hdrLen := int(binary.LittleEndian.Uint64(good))
	edit := func(from, to string) []byte {
		h := strings.Replace(string(good[8:8+hdrLen]), from, to, 1)
		for len(h) < hdrLen {
			h += " "
		}
		if len(h) != hdrLen {
			t.Fatalf("edit %q -> %q changes the header length", from, to)
		}
		return slices.Concat(good[:8], []byte(h), good[8+hdrLen:])
	}
	nan := slices.Clone(good)
	binary.LittleEndian.PutUint32(nan[len(nan)-4:], math.Float32bits(float32(math.NaN())))
	cases := map[string][]byte{
		"not safetensors":   []byte("hello, world"),
		"NaN value":         nan,
		"F16 tensor":        edit(`"dtype":"F32","shape":[2]`, `"dtype":"F16","shape":[4]`),
		"format 2":          edit(`\"format\":1`, `\"format\":2`),
		"no metadata":       edit(`"swarmtrain"`, `"elsewhere!"`),
		"listed, missing":   edit(`\"layers.1.bias\"`, `\"layers.9.bias\"`),
		"unexplained extra": edit(`\"optimizer\":\"adam\"`, `\"optimizer\":\"\"    `),
		"trailing bytes":    append(slices.Clone(good), 0, 0, 0, 0),
	}
	for name, b := range cases {
		if _, err := DecodeCheckpoint(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	bad := smallCheckpoint(t)
	bad.Params[3] = float32(math.Inf(1))
	if _, err := EncodeCheckpoint(bad); err == nil {
		t.Error("a checkpoint holding Inf was written")
	}
}

// A process killed while it rewrites its checkpoint leaves a file that
// loads: the previous checkpoint or the new one, never a torn one.
func TestCheckpointSurvivesKillDuringWrite(t *testing.T) {
	if os.Getenv("SWARMTRAIN_CKPT_WRITER") != "" {
		return // the writer is TestCheckpointWriter
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.safetensors")
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCheckpointWriter$")
		cmd.Env = append(os.Environ(), "SWARMTRAIN_CKPT_WRITER="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at a different point of the write loop each round.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := os.Stat(path); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(40+37*round) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		c, err := ReadCheckpoint(path)
		if err != nil {
			t.Fatalf("round %d: after the kill the checkpoint does not load: %v", round, err)
		}
		if c.Step == 0 || len(c.Params) != 1<<20 || c.Params[0] != float32(c.Step) {
			t.Fatalf("round %d: loaded step %d holding %v: a mix of two writes", round, c.Step, c.Params[0])
		}
	}
}

// TestCheckpointWriter is the process the test above kills: it rewrites
// a 4 MB checkpoint with a new step as fast as it can.
func TestCheckpointWriter(t *testing.T) {
	path := os.Getenv("SWARMTRAIN_CKPT_WRITER")
	if path == "" {
		t.Skip("helper process of TestCheckpointSurvivesKillDuringWrite")
	}
	p := make([]float32, 1<<20)
	for step := uint64(1); ; step++ {
		for i := range p {
			p[i] = float32(step)
		}
		c := Checkpoint{Step: step, Tensors: []Tensor{{Name: "w", Shape: []int{1 << 10, 1 << 10}}}, Params: p, RunID: strconv.FormatUint(step, 10)}
		if err := WriteCheckpoint(path, c); err != nil {
			t.Fatal(err)
		}
	}
}
