package node

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// defaultV2 is DefaultRunConfig in the canonical encoding. A change here
// changes every run ID: bump RunConfigVersion and convert the version
// before (runfile.go), then update this string.
const defaultV2 = `{"version":2,"seed":1,` +
	`"model":{"kind":"mlp","hidden":[256],"channels":[],"width":0,"heads":0,"layers":0,"dropout":0,"vocab_size":0,"seq":0,"init_from":"","freeze":[]},` +
	`"data":{"dataset":"mnist","files":"","vocab":"","train_rows":0},` +
	`"optimizer":{"name":"adam","lr":0.002,"momentum":0,"weight_decay":0,"warmup":30,"schedule":"cosine","clip_norm":0,"steps":1000,"target_batch":256},` +
	`"averaging":{"codec":"fp32","lossless":"none","min_group":1,"max_group":0},` +
	`"compute":{"batch":64}}`

// defaultV1 is how the builds before sections (RunConfig version 1) wrote
// the same run, and v1ID its run ID there.
const (
	defaultV1 = `{"dataset":"mnist","hidden":[256],"batch":64,"target_batch":256,"optimizer":"adam","lr":0.002,"momentum":0,"weight_decay":0,"warmup":30,"steps":1000,"seed":1,"codec":"fp32","lossless":"none","min_group":1}`
	v1ID      = "22b42b351d9f5440c10fe46e861f3dd2"
)

// The canonical encoding holds every field, zero or not, and nothing
// else decides it: not omitempty, not nil against empty lists. Every leaf
// is part of the run ID.
func TestRunConfigCanonicalEncoding(t *testing.T) {
	r := DefaultRunConfig()
	if got := string(r.JSON()); got != defaultV2 {
		t.Fatalf("the default run encodes as\n%s\nwant\n%s", got, defaultV2)
	}
	if b, err := json.Marshal(r); err != nil || string(b) != defaultV2 {
		t.Errorf("json.Marshal writes %s (%v), not the canonical encoding", b, err)
	}
	empty := r
	empty.Model.Channels, empty.Model.Freeze = []int{}, []string{}
	empty.Optimizer.Momentum = float32(math.Copysign(0, -1))
	if empty.ID() != r.ID() {
		t.Error("nil and empty lists, or 0 and -0, give two run IDs")
	}
	// Every leaf, changed alone, changes the run ID.
	fields := r.Fields()
	if len(fields) != 41 || fields[0].Path != "version" || fields[len(fields)-1].Path != "compute.deterministic" {
		t.Errorf("%d leaves from %s to %s: a field was added or moved; is the version bumped?", len(fields), fields[0].Path, fields[len(fields)-1].Path)
	}
	for i, f := range fields {
		c, base := DefaultRunConfig(), r
		switch f.Path {
		case "averaging.inner_steps", "averaging.outer_lr", "averaging.outer_momentum":
			// Part of a DiLoCo run only (see TestRunConfigDiLoCoKeepsRunIDs).
			c.Averaging.Mode, base.Averaging.Mode = ModeDiLoCo, ModeDiLoCo
		}
		changeLeaf(t, c.Fields()[i].Ptr)
		if c.ID() == base.ID() {
			t.Errorf("%s is not part of the run ID", f.Path)
		}
		back, err := DecodeRunConfig(c.JSON())
		if err != nil && f.Path != "version" {
			t.Errorf("%s: the encoding does not read back: %v", f.Path, err)
		} else if err == nil && string(back.JSON()) != string(c.JSON()) {
			t.Errorf("%s: read back as %s", f.Path, back.JSON())
		}
	}
	// No tag leaves a field out of a file either.
	var walk func(reflect.Type)
	walk = func(tp reflect.Type) {
		for i := range tp.NumField() {
			f := tp.Field(i)
			if tag := f.Tag.Get("json"); strings.Contains(tag, ",") {
				t.Errorf("%s has json tag %q: a run config field takes a name and no options", f.Name, tag)
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[RunConfig]())
}

// changeLeaf sets the leaf p points at to a value no default has.
func changeLeaf(t *testing.T, p any) {
	switch p := p.(type) {
	case *string:
		*p += "x"
	case *int:
		*p += 3
	case *uint64:
		*p += 3
	case *float32:
		*p += 0.25
	case *bool:
		*p = !*p
	case *[]int:
		*p = append(*p, 7)
	case *[]string:
		*p = append(*p, "x")
	default:
		t.Fatalf("a run config leaf of type %T", p)
	}
}

// The DiLoCo fields came after version 2 like averaging.aggregate: at
// their defaults (sync mode) they are left out, so sync runs keep their
// IDs; any other value, a momentum of 0 too, is written and read back.
func TestRunConfigDiLoCoKeepsRunIDs(t *testing.T) {
	r := DefaultRunConfig()
	sync := r
	sync.Averaging.OuterLR, sync.Averaging.OuterMomentum = 0, 0.5 // ignored in sync mode
	for _, s := range []RunConfig{r, sync} {
		if got := string(s.JSON()); strings.Contains(got, `"mode"`) || strings.Contains(got, "outer") || strings.Contains(got, "inner") {
			t.Fatalf("a sync run encodes DiLoCo fields: %s", got)
		}
	}
	d := r
	d.Averaging.Mode, d.Averaging.InnerSteps, d.Averaging.OuterMomentum = ModeDiLoCo, 20, 0
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	back, err := DecodeRunConfig(d.JSON())
	if err != nil || back.Averaging != d.Averaging || back.ID() != d.ID() || d.ID() == r.ID() {
		t.Fatalf("a DiLoCo run read back as %+v (%v)", back.Averaging, err)
	}
}

// averaging.aggregate came after version 2 without a new version: at
// mean (or "") it is left out of the encoding, so every run that does
// not set it keeps the run ID and the bytes of the builds before it; set,
// it is written, read back and part of the ID.
func TestRunConfigAggregateKeepsRunIDs(t *testing.T) {
	for _, v := range []string{"mean", ""} {
		r := DefaultRunConfig()
		r.Averaging.Aggregate = v
		if got := string(r.JSON()); got != defaultV2 {
			t.Errorf("aggregate %q encodes as\n%s\nwant the encoding from before the field\n%s", v, got, defaultV2)
		}
	}
	r, err := DecodeRunConfig([]byte(`{"version":2,"averaging":{"aggregate":"mean"}}`))
	if err != nil || r.ID() != DefaultRunConfig().ID() {
		t.Errorf("an explicit mean: %v, ID %s, want the default run's", err, r.ID())
	}
	r.Averaging.Aggregate = "clip"
	want := strings.Replace(defaultV2, `"max_group":0}`, `"max_group":0,"aggregate":"clip"}`, 1)
	if got := string(r.JSON()); got != want {
		t.Fatalf("clip encodes as\n%s\nwant\n%s", got, want)
	}
	back, err := DecodeRunConfig(r.JSON())
	if err != nil || back.Averaging.Aggregate != "clip" || back.ID() != r.ID() || back.ID() == DefaultRunConfig().ID() {
		t.Errorf("clip read back as %+v (%v)", back.Averaging, err)
	}
	r.Averaging.Aggregate = "median"
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), `averaging.aggregate = "median", want mean, clip or trimmed`) {
		t.Errorf("an unknown rule: %v", err)
	}
}

// compute.deterministic came after version 2 like averaging.aggregate:
// false is left out, so other runs keep their IDs; true is written, read
// back and part of the ID (a deterministic run is another run).
func TestRunConfigDeterministicKeepsRunIDs(t *testing.T) {
	r := DefaultRunConfig()
	if got := string(r.JSON()); got != defaultV2 {
		t.Fatalf("a run that is not deterministic encodes as\n%s\nwant\n%s", got, defaultV2)
	}
	r.Compute.Deterministic = true
	want := strings.Replace(defaultV2, `"batch":64}`, `"batch":64,"deterministic":true}`, 1)
	if got := string(r.JSON()); got != want {
		t.Fatalf("deterministic encodes as\n%s\nwant\n%s", got, want)
	}
	back, err := DecodeRunConfig(r.JSON())
	if err != nil || !back.Compute.Deterministic || back.ID() != r.ID() || r.ID() == DefaultRunConfig().ID() {
		t.Fatalf("read back as %+v (%v)", back.Compute, err)
	}
}

// Version 1, the flat layout every earlier build wrote into checkpoints
// and hellos, converts to the same run; the MLP and cosine it spelled ""
// get their names.
func TestRunConfigReadsVersion1(t *testing.T) {
	r, err := DecodeRunConfig([]byte(defaultV1))
	if err != nil {
		t.Fatal(err)
	}
	if string(r.JSON()) != defaultV2 {
		t.Fatalf("version 1 default converted to\n%s\nwant\n%s", r.JSON(), defaultV2)
	}
	v1 := `{"dataset":"mnist","hidden":[64,32],"batch":32,"target_batch":96,"optimizer":"momentum","lr":0.05,"momentum":0.9,` +
		`"weight_decay":0.01,"warmup":7,"steps":70,"seed":9,"codec":"fp32","lossless":"zstd","min_group":2,"max_group":4,` +
		`"schedule":"step","clip_norm":0.5,"freeze":["conv.0."],"model":"cnn","channels":[8,16],"train_rows":500}`
	r, err = DecodeRunConfig([]byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	want := RunConfig{Version: 2, Seed: 9,
		Model: RunModel{Kind: "cnn", Hidden: []int{64, 32}, Channels: []int{8, 16}, Freeze: []string{"conv.0."}},
		Data:  RunData{Dataset: "mnist", TrainRows: 500},
		Optimizer: RunOptimizer{Name: "momentum", LR: 0.05, Momentum: 0.9, WeightDecay: 0.01, Warmup: 7,
			Schedule: "step", ClipNorm: 0.5, Steps: 70, TargetBatch: 96},
		Averaging: RunAveraging{Codec: "fp32", Lossless: "zstd", MinGroup: 2, MaxGroup: 4},
		Compute:   RunCompute{Batch: 32},
	}
	if string(r.JSON()) != string(want.JSON()) {
		t.Errorf("version 1 converted to\n%s\nwant\n%s", r.JSON(), want.JSON())
	}
	if err := r.Validate(); err != nil {
		t.Error(err)
	}
	text := `{"dataset":"mlm","hidden":[256],"batch":16,"target_batch":64,"optimizer":"adam","lr":0.002,"momentum":0,"weight_decay":0,` +
		`"warmup":30,"steps":1000,"seed":1,"codec":"fp32","lossless":"none","min_group":1,"model":"bert","data":"` + strings.Repeat("ab", 32) +
		`","vocab":"` + strings.Repeat("cd", 32) + `","vocab_size":1000,"seq":32,"width":48,"heads":2,"layers":3,"dropout":0.1}`
	r, err = DecodeRunConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if m, d := r.Model, r.Data; m.Kind != "bert" || d.Files != strings.Repeat("ab", 32) || d.Vocab != strings.Repeat("cd", 32) ||
		m.VocabSize != 1000 || m.Seq != 32 || m.Width != 48 || m.Heads != 2 || m.Layers != 3 || m.Dropout != 0.1 || r.Validate() != nil {
		t.Errorf("version 1 text run converted to %s (%v)", r.JSON(), r.Validate())
	}
	// An explicit "version": 1 reads the same way.
	if r, err := DecodeRunConfig([]byte(`{"version":1,` + defaultV1[1:])); err != nil || r.ID() != DefaultRunConfig().ID() {
		t.Errorf("explicit version 1: %v", err)
	}
}

// What cannot be read says why: the version it is and the versions this
// build reads, or the problem in the file.
func TestRunConfigRefusesUnreadable(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"version":3,"model":{"kind":"mlp"}}`, "version 3 is newer than this build, which reads versions 1 to 2"},
		{`{"version":0}`, "version 0 does not exist; this build reads versions 1 to 2"},
		{`{"version":"2"}`, `version "2" is not a whole number`},
		{`{"version":2,"optimizer":{"lr":"fast"}}`, "optimizer.lr"},
		{`{"version":2,"optimizer":{"lrate":0.1}}`, "unknown field optimizer.lrate: optimizer has name, lr, momentum"},
		{`{"version":2,"dropout":0.1}`, "unknown field dropout: the run config has version, seed, model"},
		{`{"version":2,"model":[1]}`, "model"},
		{`{"dataset":"mnist","lrate":0.1}`, `no "version" field, so read as version 1`},
		{`{"model":{"kind":"mlp"}}`, `"version": 2`},
		{"{\n  \"version\": 2,\n  \"seed\": 1,,\n}", "line 3, column 13"},
		{`{"version":2} {}`, "after top-level value"},
		{`[1,2]`, "want a JSON object"},
		{``, "empty"},
	} {
		_, err := DecodeRunConfig([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error saying %q", tc.doc, err, tc.want)
		}
	}
}

// A run config file: fields it leaves out take their defaults; it is
// written indented, and reads back as the same run.
func TestRunConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "run.json")
	if err := os.WriteFile(p, []byte(`{"version": 2, "optimizer": {"lr": 0.01}, "model": {"hidden": [32]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRunConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultRunConfig()
	want.Optimizer.LR, want.Model.Hidden = 0.01, []int{32}
	if string(r.JSON()) != string(want.JSON()) {
		t.Fatalf("partial file read as %s", r.JSON())
	}
	out := filepath.Join(dir, "out.json")
	if err := WriteRunConfig(out, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), "\n  \"optimizer\": {\n    \"name\": \"adam\",") {
		t.Errorf("written as\n%s", b)
	}
	if back, err := LoadRunConfig(out); err != nil || back.ID() != r.ID() {
		t.Errorf("read back: %v, run %s, want %s", err, back.ID(), r.ID())
	}
	if _, err := LoadRunConfig(filepath.Join(dir, "none.json")); err == nil || !strings.Contains(err.Error(), "none.json") {
		t.Errorf("a missing file: %v", err)
	}
	os.WriteFile(p, []byte(`{"version": 9}`), 0o600)
	if _, err := LoadRunConfig(p); err == nil || !strings.Contains(err.Error(), p+": run config: version 9") {
		t.Errorf("a future file: %v", err)
	}
}

// Run configs arrive from the network (sweep trials) and from files:
// whatever decodes encodes again to a document that decodes to the same
// run, and nothing panics.
func FuzzDecodeRunConfig(f *testing.F) {
	f.Add([]byte(defaultV1))
	f.Add([]byte(defaultV2))
	f.Add([]byte(`{"version":2,"model":{"hidden":[1,2]},"optimizer":{"lr":1e-3}}`))
	f.Add([]byte(`{"version":3}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"version":2,"model":{"kind":"mlp","dropout":0.5}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRunConfig(b)
		if err != nil {
			return
		}
		again, err := DecodeRunConfig(r.JSON())
		if err != nil || again.ID() != r.ID() {
			t.Fatalf("%s decoded, encoded as %s, which reads back as %s (%v)", b, r.JSON(), again.JSON(), err)
		}
	})
}
