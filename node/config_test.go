package node

import (
	"strings"
	"testing"
)

// The run's codec and group settings are checked before anything starts,
// with the reason in the error.
func TestRunConfigValidation(t *testing.T) {
	ok := []func(*RunConfig){
		func(r *RunConfig) { r.Codec = "powersgd:4" },
		func(r *RunConfig) { r.Codec = "powersgd:1:fp16" },
		func(r *RunConfig) { r.Codec = "topk:0.01:fp16" },
		func(r *RunConfig) { r.MaxGroup = 2 },
		func(r *RunConfig) { r.MaxGroup, r.MinGroup = 4, 4 },
		func(r *RunConfig) { r.Optimizer, r.Momentum, r.Schedule, r.ClipNorm = "nesterov", 0.9, "step", 1 },
		func(r *RunConfig) { r.Schedule = "linear" },
		func(r *RunConfig) { r.Schedule = "constant" },
		func(r *RunConfig) { r.Model = "cnn" },
		func(r *RunConfig) { r.Model, r.Channels = "cnn", []int{8, 16, 32} },
		textRun,
		func(r *RunConfig) { textRun(r); r.Dataset, r.Seq, r.Width, r.Heads, r.Dropout = "csv", 128, 32, 8, 0.1 },
	}
	for i, f := range ok {
		r := DefaultRunConfig()
		f(&r)
		if err := r.Validate(); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
	bad := map[string]func(*RunConfig){
		"RANK":                 func(r *RunConfig) { r.Codec = "powersgd" },
		"RANK 1..64":           func(r *RunConfig) { r.Codec = "powersgd:0" },
		"only :fp16":           func(r *RunConfig) { r.Codec = "powersgd:4:int8" },
		"powersgd:RANK":        func(r *RunConfig) { r.Codec = "powersgdx" },
		"max group 1":          func(r *RunConfig) { r.MaxGroup = 1 },
		"below min":            func(r *RunConfig) { r.MaxGroup, r.MinGroup = 3, 4 },
		"codec fp32":           func(r *RunConfig) { r.MaxGroup, r.Codec = 4, "int8" },
		"want cosine":          func(r *RunConfig) { r.Schedule = "exponential" },
		"clip norm":            func(r *RunConfig) { r.ClipNorm = -1 },
		"nesterov":             func(r *RunConfig) { r.Optimizer = "lion" },
		"SHA-256":              func(r *RunConfig) { r.InitFrom = "model.safetensors" },
		"empty":                func(r *RunConfig) { r.Freeze = []string{""} },
		"mlp, cnn or bert":     func(r *RunConfig) { r.Model = "resnet" },
		"go with --model bert": func(r *RunConfig) { r.Model = "bert" },
		"and bert with them":   func(r *RunConfig) { r.Dataset = "mlm" },
		"SHA-256 of the text":  func(r *RunConfig) { r.Model, r.Dataset = "bert", "nsp" },
		"seq 4":                func(r *RunConfig) { textRun(r); r.Seq = 4 },
		"dropout":              func(r *RunConfig) { textRun(r); r.Dropout = 1 },
		"want mnist, mlm":      func(r *RunConfig) { r.Dataset = "cifar" },
		"--model cnn":          func(r *RunConfig) { r.Channels = []int{8} },
		"1..1024":              func(r *RunConfig) { r.Model, r.Channels = "cnn", []int{8, 0} },
		"1..4":                 func(r *RunConfig) { r.Model, r.Channels = "cnn", []int{1, 2, 3, 4, 5} },
	}
	for want, f := range bad {
		r := DefaultRunConfig()
		f(&r)
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error saying %q, got %v", want, err)
		}
	}
	// A run without a cap keeps the run ID it had before max_group existed.
	for _, field := range []string{"max_group", "schedule", "clip_norm", "init_from", "freeze", "model", "channels", "data", "vocab", "seq", "width", "heads", "layers", "dropout"} {
		if strings.Contains(string(DefaultRunConfig().JSON()), `"`+field+`":`) {
			t.Errorf("%s is in the JSON of a run without it: every run ID changed", field)
		}
	}
}

// textRun makes r a valid bert pre-training run.
func textRun(r *RunConfig) {
	r.Model, r.Dataset = "bert", "mlm"
	r.Data, r.Vocab = strings.Repeat("ab", 32), strings.Repeat("cd", 32)
}

// Adam with a sparse codec is valid but warned about; the combinations
// that keep accuracy are not.
func TestCaveats(t *testing.T) {
	for _, tc := range []struct {
		optimizer, codec string
		warned           bool
	}{
		{"adam", "topk:0.01", true},
		{"adamw", "powersgd:4:fp16", true},
		{"adam", "int8", false},
		{"adam", "fp32", false},
		{"momentum", "topk:0.01:fp16", false},
	} {
		r := DefaultRunConfig()
		r.Optimizer, r.Codec = tc.optimizer, tc.codec
		c := r.Caveats()
		if warned := len(c) > 0 && strings.Contains(c[0], "--optimizer momentum"); warned != tc.warned {
			t.Errorf("%s with %s: caveats %q, want warned %v", tc.optimizer, tc.codec, c, tc.warned)
		}
	}
}
