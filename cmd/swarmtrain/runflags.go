package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// runFlag is the one place a run field gets its command-line flag: the
// flag's name, the field it sets and its help. The flag's default is the
// field's DefaultRunConfig value; its help ends with the field's path in
// a run config file. Run fields without a flag: version, and the hashes
// of files that other flags name (model.init_from: --init-from; data.files
// and data.vocab: --text, --train-csv, --test-csv and --vocab).
type runFlag struct {
	name  string
	field func(*node.RunConfig) any // *string, *int, *uint64, *float32, *bool, *[]int or *[]string
	usage string
}

var runFlagTable = []runFlag{
	{"dataset", func(r *node.RunConfig) any { return &r.Data.Dataset }, "what to train on: mnist (images), images (--data DIR, one subfolder per class; chosen by itself when --data is such a folder), mlm (masked-language pre-training on --text), nsp (next-sentence prediction on --text), replaced (replaced-word detection on --text), source (which --text file a passage of --seq tokens comes from) or csv (text,label rows of --train-csv/--test-csv); the text datasets need --model bert"},
	{"model", func(r *node.RunConfig) any { return &r.Model.Kind }, "network: mlp, cnn (conv–pool blocks, then the --hidden layers) or bert (Transformer encoder, for text)"},
	{"hidden", func(r *node.RunConfig) any { return &r.Model.Hidden }, "fully connected hidden layer widths, comma-separated"},
	{"channels", func(r *node.RunConfig) any { return &r.Model.Channels }, "cnn only: output channels of each 5×5 conv + 2×2 max-pool block, comma-separated (default 16,32)"},
	{"batch", func(r *node.RunConfig) any { return &r.Compute.Batch }, "local minibatch size (samples per forward/backward)"},
	{"target-batch", func(r *node.RunConfig) any { return &r.Optimizer.TargetBatch }, "global batch: samples the whole swarm accumulates per optimizer step"},
	{"optimizer", func(r *node.RunConfig) any { return &r.Optimizer.Name }, "adam, adamw, sgd, momentum or nesterov"},
	{"lr", func(r *node.RunConfig) any { return &r.Optimizer.LR }, "peak learning rate (linear warm-up, then --schedule)"},
	{"momentum", func(r *node.RunConfig) any { return &r.Optimizer.Momentum }, "SGD momentum (optimizer momentum or nesterov)"},
	{"weight-decay", func(r *node.RunConfig) any { return &r.Optimizer.WeightDecay }, "weight decay (decoupled for adamw)"},
	{"warmup", func(r *node.RunConfig) any { return &r.Optimizer.Warmup }, "learning-rate warm-up steps"},
	{"steps", func(r *node.RunConfig) any { return &r.Optimizer.Steps }, "optimizer steps of the run"},
	{"schedule", func(r *node.RunConfig) any { return &r.Optimizer.Schedule }, "learning-rate decay after warm-up: cosine (to lr/10), linear (to lr/10), step (lr/10 at half, lr/100 at three quarters) or constant"},
	{"clip-norm", func(r *node.RunConfig) any { return &r.Optimizer.ClipNorm }, "clip the averaged gradient to this global L2 norm (0: off)"},
	{"seed", func(r *node.RunConfig) any { return &r.Seed }, "seed for weights and data order"},
	{"codec", func(r *node.RunConfig) any { return &r.Averaging.Codec }, "gradient compression on the wire: fp32, fp16, bf16, int8, int4 (int8:BLOCK, int4:BLOCK set the block size, 16..65536), topk:FRACTION[:fp16], powersgd:RANK[:fp16]"},
	{"lossless", func(r *node.RunConfig) any { return &r.Averaging.Lossless }, "lossless stage after the codec: none, zstd or s2"},
	{"min-group", func(r *node.RunConfig) any { return &r.Averaging.MinGroup }, "fewest peers a round may have; below it the swarm waits instead of stepping"},
	{"max-group", func(r *node.RunConfig) any { return &r.Averaging.MaxGroup }, "most peers that average together (0: no cap); a larger swarm averages parameters in rotating Moshpit groups; a lossy --codec compresses each member's change since its group's last average"},
	{"aggregate", func(r *node.RunConfig) any { return &r.Averaging.Aggregate }, "how each part's owner combines the members' copies: mean (exact; one lying peer can move it anywhere), clip (copies above twice the median norm scaled down to it; robust, about the cost of mean) or trimmed (per value, a quarter of the copies left out at each end, at least one from 3 peers; robust, costlier)"},
	{"mode", func(r *node.RunConfig) any { return &r.Averaging.Mode }, "what the swarm averages: sync (every step's gradient over --target-batch), diloco (--inner-steps local steps with --optimizer, then an all-reduce of the pseudo-gradient in --codec and an outer Nesterov step; --steps counts outer steps) or diloco-overlap (the same, each all-reduce running while the next phase computes, its update applied one phase late)"},
	{"inner-steps", func(r *node.RunConfig) any { return &r.Averaging.InnerSteps }, "diloco: local optimizer steps of --batch per phase and peer (a phase ends once the swarm has taken this many for each peer: a slower peer takes fewer, a faster one up to twice as many)"},
	{"outer-lr", func(r *node.RunConfig) any { return &r.Averaging.OuterLR }, "diloco: the outer Nesterov step's learning rate (DiLoCo paper: 0.7)"},
	{"outer-momentum", func(r *node.RunConfig) any { return &r.Averaging.OuterMomentum }, "diloco: the outer Nesterov step's momentum (DiLoCo paper: 0.9; diloco-overlap: 0.8 unless given, its steps land a phase late)"},
	{"freeze", func(r *node.RunConfig) any { return &r.Model.Freeze }, "tensors (or name prefixes, e.g. layers.0.) that training leaves unchanged, comma-separated"},
	{"vocab-size", func(r *node.RunConfig) any { return &r.Model.VocabSize }, "text: tokens in a learned WordPiece vocabulary (0: 2000)"},
	{"seq", func(r *node.RunConfig) any { return &r.Model.Seq }, "text: tokens per sequence, [CLS] and [SEP]s included (0: 64)"},
	{"width", func(r *node.RunConfig) any { return &r.Model.Width }, "bert: hidden width (0: 64)"},
	{"heads", func(r *node.RunConfig) any { return &r.Model.Heads }, "bert: attention heads, dividing the width (0: 4)"},
	{"layers", func(r *node.RunConfig) any { return &r.Model.Layers }, "bert: encoder layers (0: 2)"},
	{"dropout", func(r *node.RunConfig) any { return &r.Model.Dropout }, "bert: dropout probability on every residual branch"},
	{"train-rows", func(r *node.RunConfig) any { return &r.Data.TrainRows }, "train on only this many training rows, drawn with --seed (0: all); few labelled rows are where pre-training pays"},
	{"image-size", func(r *node.RunConfig) any { return &r.Data.ImageSize }, "image folders: the side in pixels every image is scaled and centre-cropped to (0: 32)"},
	{"text-column", func(r *node.RunConfig) any { return &r.Data.TextColumn }, "csv: the text column's header name, or key in JSON Lines files (.jsonl) (empty: text)"},
	{"label-column", func(r *node.RunConfig) any { return &r.Data.LabelColumn }, "csv: the label column's header name, or key in JSON Lines files (empty: label)"},
	{"deterministic", func(r *node.RunConfig) any { return &r.Compute.Deterministic }, "two runs of the same command end on the same state: needs --shard K/N on every node (the demo gives them); node K computes exactly its share of each step in a fixed order, every round waits for all N, and a death or a joiner voids it (the run goes on and says so in its log, /status and result)"},
	{"augment", func(r *node.RunConfig) any { return &r.Data.Augment }, "image training augmentation, comma-separated: crop=P (pad P pixels, crop back), flip (mirror left–right), affine=D (rotate ±D degrees, scale ±D%); none: off"},
}

// bindRunFlags sets rc to DefaultRunConfig (pflag's way: binding sets
// the default) and binds the run flags to its fields.
func bindRunFlags(fs *pflag.FlagSet, rc *node.RunConfig) {
	*rc = node.DefaultRunConfig()
	def := node.DefaultRunConfig()
	paths := map[any]string{}
	for _, f := range rc.Fields() {
		paths[f.Ptr] = f.Path
	}
	for _, f := range runFlagTable {
		p, d := f.field(rc), f.field(&def)
		usage := fmt.Sprintf("%s (run config: %s)", f.usage, paths[p])
		switch p := p.(type) {
		case *string:
			fs.StringVar(p, f.name, *d.(*string), usage)
		case *int:
			fs.IntVar(p, f.name, *d.(*int), usage)
		case *uint64:
			fs.Uint64Var(p, f.name, *d.(*uint64), usage)
		case *float32:
			fs.Float32Var(p, f.name, *d.(*float32), usage)
		case *bool:
			fs.BoolVar(p, f.name, *d.(*bool), usage)
		case *[]int:
			fs.IntSliceVar(p, f.name, *d.(*[]int), usage)
		case *[]string:
			fs.StringSliceVar(p, f.name, *d.(*[]string), usage)
		default:
			panic(fmt.Sprintf("run flag --%s: no flag type for a field of type %T", f.name, p))
		}
	}
}

// flagArg is one run flag as given on the command line.
type flagArg struct{ name, value string }

// setRunFlags sets run flags on rc, each value read exactly as on the
// command line (a list flag given twice appends, as there).
func setRunFlags(rc *node.RunConfig, args []flagArg) error {
	base := *rc
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	bindRunFlags(fs, rc) // binds rc's fields, at the defaults…
	*rc = base           // …which then take the base run's values
	for _, a := range args {
		if err := fs.Set(a.name, a.value); err != nil {
			return fmt.Errorf("--%s %s: %w", a.name, a.value, err)
		}
	}
	return nil
}

// runFlags is a command's run: the run flags and --run-config.
type runFlags struct {
	fs   *pflag.FlagSet
	rc   *node.RunConfig // what the run flags set
	file string
}

// addRunFlags adds the run flags, bound to rc, and --run-config.
func addRunFlags(fs *pflag.FlagSet, rc *node.RunConfig) *runFlags {
	bindRunFlags(fs, rc)
	f := &runFlags{fs: fs, rc: rc}
	fs.StringVar(&f.file, "run-config", "", "read the run from this file (JSON; the demo writes one to <dir>/run.json); run flags given as well override the file's values, wherever they stand on the command line")
	return f
}

// run is the run the command line describes: the run flags, or with
// --run-config the file's run with the value of every run flag given
// put over the file's.
func (f *runFlags) run() (node.RunConfig, error) {
	if f.file == "" {
		rc := *f.rc
		if o := &rc.Optimizer; !f.fs.Lookup("warmup").Changed && o.Warmup > o.Steps {
			// The default warm-up is for the default steps: a short run
			// warms up for a tenth of its steps instead.
			o.Warmup = o.Steps / 10
		}
		if a := &rc.Averaging; !f.fs.Lookup("outer-momentum").Changed && a.Mode == node.ModeDiLoCoOverlap {
			// Overlap applies each outer step a phase late, and 0.9
			// amplifies the stale direction (docs/BENCHMARKS.md, DiLoCo).
			a.OuterMomentum = node.DefaultOverlapOuterMomentum
		}
		return rc, nil
	}
	rc, err := node.LoadRunConfig(f.file)
	if err != nil {
		return rc, fmt.Errorf("--run-config: %w", err)
	}
	for _, rf := range runFlagTable {
		if f.fs.Lookup(rf.name).Changed {
			reflect.ValueOf(rf.field(&rc)).Elem().Set(reflect.ValueOf(rf.field(f.rc)).Elem())
		}
	}
	return rc, nil
}

// given reports whether the command line names a run: a run flag or
// --run-config.
func (f *runFlags) given() bool {
	if f.file != "" {
		return true
	}
	for _, rf := range runFlagTable {
		if f.fs.Lookup(rf.name).Changed {
			return true
		}
	}
	return false
}

// storedRun is the run a node directory holds: its checkpoint's, else
// the run.json its node wrote when it started. from names which, and
// step is the checkpoint's (0 from run.json); ok is false when dir holds
// neither.
func storedRun(dir string) (rc node.RunConfig, from string, step uint64, ok bool, err error) {
	ckpt := filepath.Join(dir, node.CheckpointFile)
	c, err := trainer.ReadCheckpoint(ckpt)
	switch {
	case err == nil && len(c.Run) > 0:
		rc, err := node.DecodeRunConfig(c.Run)
		if err != nil {
			return rc, "", 0, false, fmt.Errorf("%s: its run config: %w", ckpt, err)
		}
		return rc, "checkpoint", c.Step, true, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return rc, "", 0, false, err
	}
	file := filepath.Join(dir, node.RunFile)
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return rc, "", 0, false, nil
	}
	if rc, err = node.LoadRunConfig(file); err != nil {
		return rc, "", 0, false, err
	}
	return rc, node.RunFile, 0, true, nil
}

// resumeIn is the run of a node on dir. A dir that holds a run (its
// checkpoint, else its run.json) resumes that run: the command line
// may leave the run out, and what it gives must agree with the stored
// run field by field, or it is refused naming each field that differs.
// A dir without one takes the command line's run.
func (f *runFlags) resumeIn(dir string) (rc node.RunConfig, resumed string, err error) {
	stored, from, step, ok, err := storedRun(dir)
	if err != nil {
		return rc, "", err
	}
	if !ok {
		rc, err = f.run()
		return rc, "", err
	}
	what := fmt.Sprintf("run %s from %s", stored.ID(), filepath.Join(dir, from))
	if from == "checkpoint" {
		what = fmt.Sprintf("run %s at step %d from %s", stored.ID(), step, filepath.Join(dir, node.CheckpointFile))
	}
	if !f.given() {
		return stored, what, nil
	}
	asked, err := f.run()
	if err != nil {
		return rc, "", err
	}
	var diffs []string
	if f.file == "" {
		// Flags alone: the fields they set, by flag name.
		for _, rf := range runFlagTable {
			if !f.fs.Lookup(rf.name).Changed {
				continue
			}
			if a, b := rf.field(&stored), rf.field(&asked); !reflect.DeepEqual(a, b) {
				diffs = append(diffs, fmt.Sprintf("%s: %s %s, flags %s", rf.name, from, show(a), show(b)))
			}
		}
	} else {
		// A run config file: every field, by its path in the file.
		sf, af := stored.Fields(), asked.Fields()
		for i := range sf {
			if !reflect.DeepEqual(sf[i].Ptr, af[i].Ptr) {
				diffs = append(diffs, fmt.Sprintf("%s: %s %s, --run-config %s", sf[i].Path, from, show(sf[i].Ptr), show(af[i].Ptr)))
			}
		}
	}
	if len(diffs) > 0 {
		return rc, "", fmt.Errorf("--dir %s holds %s, and the command line contradicts it: %s; leave the run flags out to resume it, or give another --dir for a new run",
			dir, what, strings.Join(diffs, "; "))
	}
	return stored, what, nil
}

// show prints a run field's value (a pointer into a RunConfig).
func show(p any) string {
	v := reflect.ValueOf(p).Elem()
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Slice:
		s := make([]string, v.Len())
		for i := range s {
			s[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return "[" + strings.Join(s, ",") + "]"
	}
	return fmt.Sprint(v.Interface())
}
