package node

import (
	"math"
	"strings"
	"testing"
)

// A run out of range is refused before anything starts; the error names
// the field by its path in the run config and the range it wants.
func TestRunConfigValidation(t *testing.T) {
	ok := []func(*RunConfig){
		func(r *RunConfig) { r.Averaging.Codec = "powersgd:4" },
		func(r *RunConfig) { r.Averaging.Codec = "powersgd:1:fp16" },
		func(r *RunConfig) { r.Averaging.Codec = "topk:0.01:fp16" },
		func(r *RunConfig) { r.Averaging.MaxGroup = 2 },
		func(r *RunConfig) { r.Averaging.MaxGroup, r.Averaging.Codec = 2, "int8" },
		func(r *RunConfig) { r.Averaging.MaxGroup, r.Averaging.Codec = 2, "topk:0.05" },
		func(r *RunConfig) { r.Averaging.MaxGroup, r.Averaging.MinGroup = 4, 4 },
		func(r *RunConfig) {
			r.Optimizer.Name, r.Optimizer.Momentum, r.Optimizer.Schedule, r.Optimizer.ClipNorm = "nesterov", 0.9, "step", 1
		},
		func(r *RunConfig) { r.Optimizer.Schedule = "linear" },
		func(r *RunConfig) { r.Optimizer.Schedule = "constant" },
		func(r *RunConfig) { r.Model.Kind = "cnn" },
		func(r *RunConfig) { r.Model.Kind, r.Model.Channels = "cnn", []int{8, 16, 32} },
		textRun,
		func(r *RunConfig) {
			textRun(r)
			r.Data.Dataset, r.Model.Seq, r.Model.Width, r.Model.Heads, r.Model.Dropout = "csv", 128, 32, 8, 0.1
		},
	}
	for i, f := range ok {
		r := DefaultRunConfig()
		f(&r)
		if err := r.Validate(); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
	bad := []struct {
		field, want string // the path, and words of the range or the reason
		f           func(*RunConfig)
	}{
		{"version = 1", "want 2", func(r *RunConfig) { r.Version = 1 }},
		{"averaging.codec", "RANK", func(r *RunConfig) { r.Averaging.Codec = "powersgd" }},
		{"averaging.codec", "RANK 1..64", func(r *RunConfig) { r.Averaging.Codec = "powersgd:0" }},
		{"averaging.codec", "only :fp16", func(r *RunConfig) { r.Averaging.Codec = "powersgd:4:int8" }},
		{"averaging.codec", "powersgd:RANK", func(r *RunConfig) { r.Averaging.Codec = "powersgdx" }},
		{"averaging.lossless", "zstd", func(r *RunConfig) { r.Averaging.Lossless = "gzip" }},
		{"averaging.max_group = 1", "2..1024", func(r *RunConfig) { r.Averaging.MaxGroup = 1 }},
		{"averaging.max_group = 3", "at least averaging.min_group (4)", func(r *RunConfig) { r.Averaging.MaxGroup, r.Averaging.MinGroup = 3, 4 }},
		{"averaging.max_group = 4 with averaging.codec \"powersgd:2\"", "per-value codec", func(r *RunConfig) { r.Averaging.MaxGroup, r.Averaging.Codec = 4, "powersgd:2" }},
		{`averaging.mode = "local"`, "sync, diloco or diloco-overlap", func(r *RunConfig) { r.Averaging.Mode = "local" }},
		{"averaging.inner_steps = 0", "1..100000", func(r *RunConfig) { r.Averaging.Mode = ModeDiLoCo }},
		{"averaging.inner_steps = 5", "want 0 in sync mode", func(r *RunConfig) { r.Averaging.InnerSteps = 5 }},
		{"averaging.outer_lr = 0", "(0, 10)", func(r *RunConfig) { diloco(r); r.Averaging.OuterLR = 0 }},
		{"averaging.outer_momentum = 1", "[0, 1)", func(r *RunConfig) { diloco(r); r.Averaging.OuterMomentum = 1 }},
		{"averaging.max_group = 4 with averaging.mode diloco", "want 0", func(r *RunConfig) { diloco(r); r.Averaging.MaxGroup = 4 }},
		{"averaging.codec", "per-part codec", func(r *RunConfig) {
			diloco(r)
			r.Averaging.Mode, r.Averaging.Codec = ModeDiLoCoOverlap, "powersgd:2"
		}},
		{"averaging.min_group = 0", "1..1024", func(r *RunConfig) { r.Averaging.MinGroup = 0 }},
		{"optimizer.schedule", "want cosine, linear, step or constant", func(r *RunConfig) { r.Optimizer.Schedule = "exponential" }},
		{`optimizer.schedule = ""`, "want cosine", func(r *RunConfig) { r.Optimizer.Schedule = "" }},
		{"optimizer.clip_norm = -1", ">= 0", func(r *RunConfig) { r.Optimizer.ClipNorm = -1 }},
		{`optimizer.name = "lion"`, "nesterov", func(r *RunConfig) { r.Optimizer.Name = "lion" }},
		{"optimizer.lr = 12", "(0, 10)", func(r *RunConfig) { r.Optimizer.LR = 12 }},
		{"optimizer.momentum = NaN", "[0, 1)", func(r *RunConfig) { r.Optimizer.Momentum = float32(math.NaN()) }},
		{"optimizer.weight_decay = 1", "[0, 1)", func(r *RunConfig) { r.Optimizer.WeightDecay = 1 }},
		{"optimizer.warmup = 2000", "0..1000 (optimizer.steps", func(r *RunConfig) { r.Optimizer.Warmup = 2000 }},
		{"optimizer.steps = 0", "1..10000000", func(r *RunConfig) { r.Optimizer.Steps, r.Optimizer.Warmup = 0, 0 }},
		{"optimizer.target_batch = 32", "compute.batch (64)", func(r *RunConfig) { r.Optimizer.TargetBatch = 32 }},
		{"compute.batch = 0", "1..4096", func(r *RunConfig) { r.Compute.Batch = 0 }},
		{"data.train_rows = -1", "0 (all) or more", func(r *RunConfig) { r.Data.TrainRows = -1 }},
		{"model.init_from", "SHA-256", func(r *RunConfig) { r.Model.InitFrom = "model.safetensors" }},
		{"model.freeze[1]", "every tensor", func(r *RunConfig) { r.Model.Freeze = []string{"layers.0.", ""} }},
		{`model.kind = "resnet"`, "mlp, cnn or bert", func(r *RunConfig) { r.Model.Kind = "resnet" }},
		{`model.kind = ""`, "mlp, cnn or bert", func(r *RunConfig) { r.Model.Kind = "" }},
		{"model.kind = bert", "go with model.kind bert", func(r *RunConfig) { r.Model.Kind = "bert" }},
		{"data.dataset = mlm", "and bert with them", func(r *RunConfig) { r.Data.Dataset = "mlm" }},
		{"data.files", "SHA-256 of the text", func(r *RunConfig) { r.Model.Kind, r.Data.Dataset = "bert", "nsp" }},
		{"data.vocab", "SHA-256 of a vocabulary", func(r *RunConfig) { textRun(r); r.Data.Vocab = "" }},
		{"model.seq = 4", "8..512", func(r *RunConfig) { textRun(r); r.Model.Seq = 4 }},
		{"model.vocab_size = 8", "16..65536", func(r *RunConfig) { textRun(r); r.Model.VocabSize = 8 }},
		{"model.heads = 65", "to 64", func(r *RunConfig) { textRun(r); r.Model.Heads = 65 }},
		{"model.dropout = 1", "[0, 1)", func(r *RunConfig) { textRun(r); r.Model.Dropout = 1 }},
		{`data.dataset = "cifar"`, "want mnist, images, mlm", func(r *RunConfig) { r.Data.Dataset = "cifar" }},
		{"data.files", "SHA-256 of the image folder", func(r *RunConfig) { r.Data.Dataset, r.Data.ImageSize = DatasetImages, 32 }},
		{"data.image_size = 32", "0 otherwise", func(r *RunConfig) { r.Data.ImageSize = 32 }},
		{"data.image_size = 2", "4..512", func(r *RunConfig) {
			r.Data.Dataset, r.Data.Files, r.Data.ImageSize = DatasetImages, strings.Repeat("a", 64), 2
		}},
		{"data.augment", `unknown item "blur"`, func(r *RunConfig) { r.Data.Augment = "flip,blur" }},
		{"data.augment", "crop=0", func(r *RunConfig) { r.Data.Augment = "crop=0" }},
		{"data.augment", `spelled "crop=4,flip"`, func(r *RunConfig) { r.Data.Augment = "flip,crop=4" }},
		{"model.channels", "model.kind cnn", func(r *RunConfig) { r.Model.Channels = []int{8} }},
		{"model.channels[1] = 0", "1..1024", func(r *RunConfig) { r.Model.Kind, r.Model.Channels = "cnn", []int{8, 0} }},
		{"model.channels has 5", "0 (default) to 4", func(r *RunConfig) { r.Model.Kind, r.Model.Channels = "cnn", []int{1, 2, 3, 4, 5} }},
		{"model.hidden has 0", "1..8", func(r *RunConfig) { r.Model.Hidden = nil }},
		{"model.hidden[0] = 9000", "1..8192", func(r *RunConfig) { r.Model.Hidden = []int{9000} }},
	}
	for _, tc := range bad {
		r := DefaultRunConfig()
		tc.f(&r)
		err := r.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %s and saying %q, got %v", tc.field, tc.want, err)
		}
	}
}

// textRun makes r a valid bert pre-training run.
func textRun(r *RunConfig) {
	r.Model.Kind, r.Data.Dataset = "bert", "mlm"
	r.Data.Files, r.Data.Vocab = strings.Repeat("ab", 32), strings.Repeat("cd", 32)
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
		r.Optimizer.Name, r.Averaging.Codec = tc.optimizer, tc.codec
		c := r.Caveats()
		if warned := len(c) > 0 && strings.Contains(c[0], "--optimizer momentum"); warned != tc.warned {
			t.Errorf("%s with %s: caveats %q, want warned %v", tc.optimizer, tc.codec, c, tc.warned)
		}
	}
}

// diloco makes r a valid DiLoCo run, H = 20.
func diloco(r *RunConfig) { r.Averaging.Mode, r.Averaging.InnerSteps = ModeDiLoCo, 20 }
