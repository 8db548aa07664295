package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/trainer"
	"github.com/swarmtrain/swarmtrain/trainer/text"
)

// RunConfig is everything peers must agree on to train together. Its hash
// is the run ID: peers whose RunConfig differs in any field are on
// different runs, never share a topic, and are refused with the field that
// differs (by its path, e.g. optimizer.lr).
//
// It is data: the JSON below is the run config file (--run-config), what
// checkpoints and the hello carry, and what the run ID hashes (runfile.go
// defines the canonical encoding and reads older versions). Every field is
// always present in the encoding; a field added or renamed changes every
// run ID, so it comes with a new RunConfigVersion and a conversion of the
// version before (runfile.go).
type RunConfig struct {
	// Version is the layout of this struct: RunConfigVersion in a config
	// this build made, or read (older versions are converted on reading).
	Version int `json:"version"`
	// Seed seeds the weight initialisation, the data order, the sampling
	// of data.train_rows, dropout and PowerSGD's projections.
	Seed      uint64       `json:"seed"`
	Model     RunModel     `json:"model"`
	Data      RunData      `json:"data"`
	Optimizer RunOptimizer `json:"optimizer"`
	Averaging RunAveraging `json:"averaging"`
	Compute   RunCompute   `json:"compute"`
}

// RunConfigVersion is the RunConfig layout this build writes. Version 1
// was the flat struct of the builds before sections (no version field);
// it is still read, and converted.
const RunConfigVersion = 2

// RunModel is the network and where its weights start.
type RunModel struct {
	// Kind is the architecture: mlp, cnn (conv–pool blocks of Channels,
	// then the Hidden layers) or bert (a Transformer encoder, for text).
	Kind string `json:"kind"`
	// Hidden lists the fully connected hidden widths (mlp, cnn).
	Hidden []int `json:"hidden"`
	// Channels lists the cnn's conv–pool blocks (empty: trainer.DefaultChannels).
	Channels []int `json:"channels"`
	// Width, Heads, Layers and Dropout shape the bert encoder; VocabSize
	// is what a learned vocabulary aims for and Seq the tokens per
	// sequence. 0 means the default (trainer.DefaultBERT*,
	// DefaultVocabSize, DefaultSeq); runs that are not text ignore them.
	Width     int     `json:"width"`
	Heads     int     `json:"heads"`
	Layers    int     `json:"layers"`
	Dropout   float32 `json:"dropout"`
	VocabSize int     `json:"vocab_size"`
	Seq       int     `json:"seq"`
	// InitFrom is the SHA-256 (hex) of the checkpoint file the weights
	// start from (transfer learning; empty: the seed's initialisation):
	// peers holding another file are on another run.
	InitFrom string `json:"init_from"`
	// Freeze names tensors (or name prefixes, e.g. "layers.0.") that
	// training leaves as they are.
	Freeze []string `json:"freeze"`
}

// RunData is what the run trains on.
type RunData struct {
	// Dataset is mnist, or a text task: mlm, nsp, replaced, source or csv.
	Dataset string `json:"dataset"`
	// Files and Vocab are, for text runs, the SHA-256 of the text (or
	// CSV) files and of the vocabulary file (PrepareText sets both), so
	// peers holding other text or another vocabulary are on another run.
	Files string `json:"files"`
	Vocab string `json:"vocab"`
	// TrainRows trains on only this many training rows, drawn with the
	// seed (0: all): the few-labels setting where pre-training pays.
	TrainRows int `json:"train_rows"`
	// ImageSize is, for an image folder (dataset images, whose Files is
	// the folder's hash), the side in pixels every image is scaled and
	// centre-cropped to.
	ImageSize int `json:"image_size" canon:"omit=0"`
	// Augment lists the training-time augmentations of image rows
	// (trainer.ParseAugment: crop=P, flip, affine=D; "none" or empty:
	// none), drawn per peer and step from the seed.
	Augment string `json:"augment" canon:"omit=none"`
	// TextColumn and LabelColumn name the text and label of a csv run's
	// rows: CSV header names, or keys of JSON Lines files (.jsonl).
	TextColumn  string `json:"text_column" canon:"omit=text"`
	LabelColumn string `json:"label_column" canon:"omit=label"`
}

// RunOptimizer is the update rule and its schedule.
type RunOptimizer struct {
	Name        string  `json:"name"`         // adam, adamw, sgd, momentum or nesterov
	LR          float32 `json:"lr"`           // peak learning rate
	Momentum    float32 `json:"momentum"`     // momentum and nesterov only
	WeightDecay float32 `json:"weight_decay"` // decoupled for adamw, L2-style for the SGDs
	Warmup      int     `json:"warmup"`       // linear warm-up steps
	// Schedule is the decay after warm-up over Steps: cosine or linear
	// (to LR/10), step (LR/10 at half, LR/100 at three quarters) or
	// constant.
	Schedule string `json:"schedule"`
	// ClipNorm bounds the averaged gradient's global L2 norm (0: off).
	ClipNorm float32 `json:"clip_norm"`
	Steps    int     `json:"steps"` // optimizer steps of the run
	// TargetBatch is the global batch: samples per optimizer step, summed
	// over the swarm.
	TargetBatch int `json:"target_batch"`
}

// RunAveraging is how peers average their gradients (or parameters).
type RunAveraging struct {
	// Codec is the gradient codec on the wire: fp32, fp16, bf16, int8,
	// int4, topk:F[:fp16] or powersgd:RANK[:fp16]. Lossless is the stage
	// after it: none, zstd or s2.
	Codec    string `json:"codec"`
	Lossless string `json:"lossless"`
	// MinGroup is the fewest peers a round may have: below it no step is
	// taken and the swarm waits for peers (1: a lone peer trains alone).
	MinGroup int `json:"min_group"`
	// MaxGroup caps how many peers average together (0: no cap). A swarm
	// larger than it averages in Moshpit groups: parameters, not
	// gradients, within groups that rotate every step, so replicas agree
	// closely instead of bit for bit until the run's final state. A lossy
	// codec compresses each member's change since its group's last
	// average (see averaging.moshpit); PowerSGD is refused.
	MaxGroup int `json:"max_group"`
	// Aggregate is how each part's owner combines the members' copies:
	// mean (exact; one lying peer moves it anywhere), clip (copies above
	// twice the median norm scaled down to it) or trimmed (per value, the
	// extreme copies left out); see allreduce.Aggregate. Added after
	// version 2 without a new version: at mean it is left out of the
	// canonical encoding (canon tag), so runs that do not set it keep
	// their run IDs, and builds before it refuse a run that sets it by
	// the unknown field.
	Aggregate string `json:"aggregate" canon:"omit=mean"`
	// Mode is what a round averages. sync: every optimizer step's
	// gradient over the global batch. diloco: each peer takes about
	// InnerSteps local steps with the run's optimizer (the inner one),
	// then the swarm averages the pseudo-gradient (the phase's start
	// minus its end, weighted by samples seen) and every peer applies the
	// same outer Nesterov step (OuterLR, OuterMomentum); optimizer.steps
	// then counts outer steps. diloco-overlap: the same, with each outer
	// all-reduce running while the next phase computes, its update
	// applied one phase late. Added after version 2 with the fields
	// below, all left out of a sync run's encoding (canon tags), so sync
	// runs keep their IDs.
	Mode string `json:"mode" canon:"omit=sync"`
	// InnerSteps is H, the local steps of a DiLoCo phase (0 in sync
	// mode). More: fewer bytes per sample, replicas drift further apart
	// within a phase. The phase ends for everyone once the swarm has
	// taken H per peer: a slower peer does fewer, a faster one more (at
	// most 2H), so every round averages about the same samples.
	InnerSteps int `json:"inner_steps" canon:"omitwith=Mode"`
	// OuterLR and OuterMomentum are the outer Nesterov step's learning
	// rate and momentum (the DiLoCo paper's 0.7 and 0.9). A sync run
	// ignores them and the two fields above (none is in its encoding).
	OuterLR       float32 `json:"outer_lr" canon:"omitwith=Mode"`
	OuterMomentum float32 `json:"outer_momentum" canon:"omitwith=Mode"`
}

// Averaging modes (RunAveraging.Mode).
const (
	ModeSync          = "sync"
	ModeDiLoCo        = "diloco"
	ModeDiLoCoOverlap = "diloco-overlap"
)

// Defaults of the DiLoCo paper's outer step.
const (
	DefaultOuterLR       = 0.7
	DefaultOuterMomentum = 0.9
	// DefaultOverlapOuterMomentum is the command line's outer momentum
	// under diloco-overlap: its outer steps land a phase late, and 0.9
	// amplifies the stale direction (measured in docs/BENCHMARKS.md).
	DefaultOverlapOuterMomentum = 0.8
)

// DiLoCo reports whether the run takes local phases and outer steps.
func (r RunConfig) DiLoCo() bool {
	return r.Averaging.Mode == ModeDiLoCo || r.Averaging.Mode == ModeDiLoCoOverlap
}

// InnerSteps is how many inner optimizer steps the run's schedule spans:
// optimizer.steps, times H in DiLoCo (where steps are outer steps).
func (r RunConfig) InnerSteps() int {
	if r.DiLoCo() {
		return r.Optimizer.Steps * r.Averaging.InnerSteps
	}
	return r.Optimizer.Steps
}

// RunCompute is how each peer computes its gradient.
type RunCompute struct {
	// Batch is the local minibatch: samples per forward/backward. Larger
	// is faster per sample and needs more memory; a peer accumulates
	// minibatches until the swarm has optimizer.target_batch samples.
	Batch int `json:"batch"`
	// Deterministic makes two runs of the same command end on the same
	// state: a fixed swarm of N nodes (--shard K/N each), where node K
	// computes exactly its share of every step's minibatches
	// (ceil(target_batch/batch)/N, the remainder to the lowest shards;
	// DiLoCo: exactly inner_steps) from its shard in a seeded order,
	// every round waits for all N, and owners sum in an order set by the
	// copies' contents. A death or a joiner voids it (the run goes on and
	// says so). Costs: the slowest node sets the pace, and parts are
	// split evenly whatever the links. Added after version 2, left out of
	// the encoding while false (canon tag), so other runs keep their IDs.
	Deterministic bool `json:"deterministic" canon:"omit=false"`
}

// Text defaults, used where a text run's field is 0.
const (
	DefaultVocabSize = 2000
	DefaultSeq       = 64
)

// IsText reports whether the run trains on text (the bert model).
func (r RunConfig) IsText() bool {
	switch r.Data.Dataset {
	case DatasetMLM, DatasetNSP, DatasetReplaced, DatasetSource, DatasetCSV:
		return true
	}
	return false
}

// ModelConfig is the trainer's view of the run's network.
func (r RunConfig) ModelConfig() trainer.ModelConfig {
	m := r.Model
	return trainer.ModelConfig{Arch: m.Kind, Hidden: m.Hidden, Channels: m.Channels, Batch: r.Compute.Batch, Seed: r.Seed,
		Width: m.Width, Heads: m.Heads, Layers: m.Layers, Dropout: float64(m.Dropout)}
}

// DefaultRunConfig is the demo's run: an MLP that reaches ≥97% on MNIST
// in a few minutes on two cores. Fields a run config file leaves out
// take these values.
func DefaultRunConfig() RunConfig {
	return RunConfig{
		Version:   RunConfigVersion,
		Seed:      1,
		Model:     RunModel{Kind: trainer.ArchMLP, Hidden: []int{256}},
		Data:      RunData{Dataset: DatasetMNIST},
		Optimizer: RunOptimizer{Name: "adam", LR: 2e-3, Warmup: 30, Schedule: string(trainer.DecayCosine), Steps: 1000, TargetBatch: 256},
		Averaging: RunAveraging{Codec: "fp32", Lossless: "none", MinGroup: 1, Aggregate: "mean",
			Mode: ModeSync, OuterLR: DefaultOuterLR, OuterMomentum: DefaultOuterMomentum},
		Compute: RunCompute{Batch: 64},
	}
}

// Validate names the first field out of range, by its path in the run
// config (optimizer.lr), with the range it wants.
func (r RunConfig) Validate() error {
	m, d, o, a := r.Model, r.Data, r.Optimizer, r.Averaging
	batch := r.Compute.Batch
	if err := r.validateMode(); err != nil {
		return err
	}
	if aug, err := trainer.ParseAugment(d.Augment); err != nil {
		return fmt.Errorf("run config: data.augment: %w", err)
	} else if aug.On() && aug.String() != d.Augment {
		return fmt.Errorf("run config: data.augment = %q, want it spelled %q (one spelling, one run ID)", d.Augment, aug.String())
	}
	switch {
	case r.Version != RunConfigVersion:
		return fmt.Errorf("run config: version = %d, want %d (configs of older versions are converted when read)", r.Version, RunConfigVersion)
	case d.Dataset != DatasetMNIST && d.Dataset != DatasetImages && !r.IsText():
		return fmt.Errorf("run config: data.dataset = %q, want mnist, images, mlm, nsp, replaced, source or csv", d.Dataset)
	case d.Dataset == DatasetImages && !isSHA256(d.Files):
		return fmt.Errorf("run config: data.files = %q, want the SHA-256 of the image folder", d.Files)
	case (d.Dataset == DatasetImages) != (d.ImageSize != 0) || d.ImageSize < 0 || d.ImageSize > trainer.MaxImageSize:
		return fmt.Errorf("run config: data.image_size = %d with data.dataset = %s, want 4..%d for images and 0 otherwise", d.ImageSize, d.Dataset, trainer.MaxImageSize)
	case d.Dataset == DatasetImages && d.ImageSize < 4:
		return fmt.Errorf("run config: data.image_size = %d, want 4..%d", d.ImageSize, trainer.MaxImageSize)
	case m.Kind != trainer.ArchMLP && m.Kind != trainer.ArchCNN && m.Kind != trainer.ArchBERT:
		return fmt.Errorf("run config: model.kind = %q, want mlp, cnn or bert", m.Kind)
	case r.IsText() != (m.Kind == trainer.ArchBERT):
		return fmt.Errorf("run config: data.dataset = %s with model.kind = %s: text datasets (mlm, nsp, replaced, source, csv) go with model.kind bert (--model bert), and bert with them", d.Dataset, m.Kind)
	case len(m.Hidden) == 0 || len(m.Hidden) > 8:
		return fmt.Errorf("run config: model.hidden has %d layers, want 1..8", len(m.Hidden))
	case batch < 1 || batch > 4096:
		return fmt.Errorf("run config: compute.batch = %d, want 1..4096", batch)
	case o.TargetBatch < batch || o.TargetBatch > 1<<20:
		return fmt.Errorf("run config: optimizer.target_batch = %d, want compute.batch (%d)..%d", o.TargetBatch, batch, 1<<20)
	case !(o.LR > 0 && o.LR < 10):
		return fmt.Errorf("run config: optimizer.lr = %v, want in (0, 10)", o.LR)
	case !(o.Momentum >= 0 && o.Momentum < 1):
		return fmt.Errorf("run config: optimizer.momentum = %v, want in [0, 1)", o.Momentum)
	case !(o.WeightDecay >= 0 && o.WeightDecay < 1):
		return fmt.Errorf("run config: optimizer.weight_decay = %v, want in [0, 1)", o.WeightDecay)
	case o.Steps < 1 || o.Steps > 10_000_000:
		return fmt.Errorf("run config: optimizer.steps = %d, want 1..10000000", o.Steps)
	case o.Warmup < 0 || o.Warmup > r.InnerSteps():
		return fmt.Errorf("run config: optimizer.warmup = %d, want 0..%d (optimizer.steps, times averaging.inner_steps in diloco)", o.Warmup, r.InnerSteps())
	case !(o.ClipNorm >= 0 && o.ClipNorm < 1e30):
		return fmt.Errorf("run config: optimizer.clip_norm = %v, want >= 0 (0: off)", o.ClipNorm)
	case d.TrainRows < 0:
		return fmt.Errorf("run config: data.train_rows = %d, want 0 (all) or more", d.TrainRows)
	case d.Augment != "" && d.Augment != "none" && r.IsText():
		return fmt.Errorf("run config: data.augment = %q on text data, want none", d.Augment)
	case d.Dataset != DatasetCSV && (d.TextColumn != "" && d.TextColumn != "text" || d.LabelColumn != "" && d.LabelColumn != "label"):
		return fmt.Errorf("run config: data.text_column = %q, data.label_column = %q: named columns are for dataset csv", d.TextColumn, d.LabelColumn)
	case len(d.TextColumn) > 64 || len(d.LabelColumn) > 64 || d.TextColumn != "" && d.TextColumn == d.LabelColumn:
		return fmt.Errorf("run config: data.text_column = %q, data.label_column = %q: want two different names of at most 64 bytes", d.TextColumn, d.LabelColumn)
	case a.MinGroup < 1 || a.MinGroup > 1024:
		return fmt.Errorf("run config: averaging.min_group = %d, want 1..1024", a.MinGroup)
	case a.MaxGroup != 0 && (a.MaxGroup < 2 || a.MaxGroup > 1024):
		return fmt.Errorf("run config: averaging.max_group = %d, want 0 (no cap) or 2..1024", a.MaxGroup)
	case a.MaxGroup != 0 && a.MaxGroup < a.MinGroup:
		return fmt.Errorf("run config: averaging.max_group = %d, want at least averaging.min_group (%d) or 0 (no cap)", a.MaxGroup, a.MinGroup)
	case a.MaxGroup != 0 && r.Compute.Deterministic:
		return fmt.Errorf("run config: averaging.max_group = %d with compute.deterministic, want 0: Moshpit groups rotate by peer ID, new every run", a.MaxGroup)
	case a.MaxGroup != 0 && strings.HasPrefix(a.Codec, "powersgd"):
		// PowerSGD's warm start is one matrix shared by a whole round;
		// rotating groups would each hold their own.
		return fmt.Errorf("run config: averaging.max_group = %d with averaging.codec %q, want a per-value codec (fp32, fp16, bf16, int8, int4, topk): Moshpit groups do not run PowerSGD", a.MaxGroup, a.Codec)
	}
	for i, w := range m.Hidden {
		if w < 1 || w > 8192 {
			return fmt.Errorf("run config: model.hidden[%d] = %d, want 1..8192", i, w)
		}
	}
	if !(m.Dropout >= 0 && m.Dropout < 1) {
		// Every kind: a NaN here would be written into checkpoints and
		// run files that nothing can read back.
		return fmt.Errorf("run config: model.dropout = %v, want in [0, 1)", m.Dropout)
	}
	switch m.Kind {
	case trainer.ArchMLP:
		if len(m.Channels) > 0 {
			return errors.New("run config: model.channels are for model.kind cnn, want none for mlp")
		}
	case trainer.ArchBERT:
		if err := r.validateText(); err != nil {
			return err
		}
	case trainer.ArchCNN:
		if len(m.Channels) > 4 {
			return fmt.Errorf("run config: model.channels has %d conv blocks, want 0 (default) to 4", len(m.Channels))
		}
		for i, c := range m.Channels {
			if c < 1 || c > 1024 {
				return fmt.Errorf("run config: model.channels[%d] = %d, want 1..1024", i, c)
			}
		}
	}
	switch o.Name {
	case "adam", "adamw", "sgd", "momentum", "nesterov":
	default:
		return fmt.Errorf("run config: optimizer.name = %q, want adam, adamw, sgd, momentum or nesterov", o.Name)
	}
	if _, err := r.decay(); err != nil {
		return fmt.Errorf("run config: %w", err)
	}
	if m.InitFrom != "" && !isSHA256(m.InitFrom) {
		return fmt.Errorf("run config: model.init_from = %q, want empty or the SHA-256 (64 hex digits) of a checkpoint file", m.InitFrom)
	}
	for i, f := range m.Freeze {
		if f == "" {
			return fmt.Errorf("run config: model.freeze[%d] is empty, want a tensor name or prefix (an empty one would freeze every tensor)", i)
		}
	}
	if _, _, err := parseGradientCodec(a.Codec); err != nil {
		return fmt.Errorf("run config: averaging.codec = %q: %w", a.Codec, err)
	}
	if _, err := compression.LosslessByName(a.Lossless); err != nil {
		return fmt.Errorf("run config: averaging.lossless = %q, want none, zstd or s2: %w", a.Lossless, err)
	}
	if _, err := allreduce.ParseAggregate(a.Aggregate); err != nil {
		return fmt.Errorf("run config: averaging.aggregate = %q, want mean, clip or trimmed", a.Aggregate)
	}
	return nil
}

// validateMode checks the averaging mode and its DiLoCo fields.
func (r RunConfig) validateMode() error {
	a := r.Averaging
	switch a.Mode {
	case "", ModeSync:
		// The DiLoCo fields are no part of a sync run (not even of its
		// ID); a phase length given without the mode is a mistake.
		if a.InnerSteps != 0 {
			return fmt.Errorf("run config: averaging.inner_steps = %d is for averaging.mode diloco, want 0 in sync mode", a.InnerSteps)
		}
		return nil
	case ModeDiLoCo, ModeDiLoCoOverlap:
	default:
		return fmt.Errorf("run config: averaging.mode = %q, want sync, diloco or diloco-overlap", a.Mode)
	}
	switch {
	case a.InnerSteps < 1 || a.InnerSteps > 100_000:
		return fmt.Errorf("run config: averaging.inner_steps = %d, want 1..100000 local steps per phase in diloco mode (the paper: 500; the MNIST demo: 20)", a.InnerSteps)
	case int64(a.InnerSteps)*int64(r.Optimizer.Steps) > 1<<31-1:
		return fmt.Errorf("run config: averaging.inner_steps × optimizer.steps = %d, want below 2^31", int64(a.InnerSteps)*int64(r.Optimizer.Steps))
	case !(a.OuterLR > 0 && a.OuterLR < 10):
		return fmt.Errorf("run config: averaging.outer_lr = %v, want in (0, 10)", a.OuterLR)
	case !(a.OuterMomentum >= 0 && a.OuterMomentum < 1):
		return fmt.Errorf("run config: averaging.outer_momentum = %v, want in [0, 1)", a.OuterMomentum)
	case a.MaxGroup != 0:
		return fmt.Errorf("run config: averaging.max_group = %d with averaging.mode %s, want 0: Moshpit groups average parameters every step, DiLoCo the whole swarm's phases", a.MaxGroup, a.Mode)
	case a.Mode == ModeDiLoCoOverlap && strings.HasPrefix(a.Codec, "powersgd"):
		return fmt.Errorf("run config: averaging.codec = %q with averaging.mode diloco-overlap, want a per-part codec (fp32, fp16, bf16, int8, int4, topk)", a.Codec)
	}
	return nil
}

func isSHA256(s string) bool { return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == "" }

// validateText checks a bert run's text fields.
func (r RunConfig) validateText() error {
	m, d := r.Model, r.Data
	switch {
	case !isSHA256(d.Files):
		return fmt.Errorf("run config: data.files = %q, want the SHA-256 of the text files", d.Files)
	case !isSHA256(d.Vocab):
		return fmt.Errorf("run config: data.vocab = %q, want the SHA-256 of a vocabulary file", d.Vocab)
	case m.VocabSize != 0 && (m.VocabSize < 16 || m.VocabSize > text.MaxVocab):
		return fmt.Errorf("run config: model.vocab_size = %d, want 0 (%d) or 16..%d", m.VocabSize, DefaultVocabSize, text.MaxVocab)
	case m.Seq != 0 && (m.Seq < 8 || m.Seq > 512):
		return fmt.Errorf("run config: model.seq = %d, want 0 (%d) or 8..512", m.Seq, DefaultSeq)
	case m.Width < 0 || m.Width > 4096:
		return fmt.Errorf("run config: model.width = %d, want 0 (%d) to 4096", m.Width, trainer.DefaultBERTWidth)
	case m.Heads < 0 || m.Heads > 64:
		return fmt.Errorf("run config: model.heads = %d, want 0 (%d) to 64", m.Heads, trainer.DefaultBERTHeads)
	case m.Layers < 0 || m.Layers > 24:
		return fmt.Errorf("run config: model.layers = %d, want 0 (%d) to 24", m.Layers, trainer.DefaultBERTLayers)
	case !(m.Dropout >= 0 && m.Dropout < 1):
		return fmt.Errorf("run config: model.dropout = %v, want in [0, 1)", m.Dropout)
	case len(m.Channels) > 0:
		return errors.New("run config: model.channels are for model.kind cnn, want none for bert")
	}
	return nil
}

// Config is one node: the run it trains plus where and how it runs.
type Config struct {
	Run RunConfig

	Dir    string   // node directory: identity.key, node.json, result.json
	Listen []string // multiaddrs to listen on
	Join   []string // multiaddrs of peers to join; empty starts a new swarm (or rejoins through the saved peers)
	// Announce, when set, are the addresses peers are told to dial us at
	// instead of the ones the host finds (--announce: a port forward, a
	// public IP the machine does not see on its interfaces).
	Announce []string
	HTTP     string // host:port for /status and /metrics; empty disables
	DataDir  string // MNIST IDX/CSV folder; empty: the GoMNIST module's data, else a copy fetched from peers into Dir/data/mnist
	// DataCache is the folder of decoded datasets (pixel files, named by
	// the hash of their source), shared by the nodes of a machine: they
	// map one file instead of each decoding a copy onto its heap. Empty:
	// no cache, every node decodes.
	DataCache string
	// DataMemory caps, in bytes, how much of the training set the node
	// keeps resident (--data-memory; 0: no cap): it streams the mapped
	// pixel file a window of blocks at a time (trainer.Batcher.SetMemory).
	// The rows drawn are the same with or without it, so it is the
	// node's own choice, not a run field.
	DataMemory int64
	// NoServeData keeps this node from serving the run's dataset to
	// peers that lack it (--no-serve-data).
	NoServeData bool
	// Text runs: the corpus files (mlm, nsp, replaced, source; empty
	// means trainer.DefaultCorpus), the labelled CSV files (csv) and the
	// vocabulary file. Their hashes must be Run.Data.Files and Run.Data.Vocab
	// (PrepareText sets both).
	Corpus            []string
	TrainCSV, TestCSV string
	VocabPath         string
	// Shard/Shards pick this node's slice of the training set (0-based).
	// Shards == 0 lets every node sample the whole set in its own order,
	// seeded by the run seed and its peer ID.
	Shard, Shards int
	// MinPeers is how many peers, self included, must be live before the
	// first step; the demo sets it to its swarm size so all start together.
	MinPeers int
	// Client marks a machine that cannot accept inbound connections
	// (behind NAT or a firewall): it owns no part of the all-reduce, so
	// nobody has to dial it, but its gradient counts like anyone's.
	Client bool
	// MinPeersTimeout bounds that wait.
	MinPeersTimeout time.Duration
	// JoinTimeout is how long the Join addresses are retried (each with
	// a backoff of 1 s doubling to 30 s) before the node gives up. Longer:
	// a node waits out a restarting or unreachable peer; shorter: a
	// wrong address is reported sooner.
	JoinTimeout time.Duration
	// NoMDNS turns off announcing and finding peers on the local network
	// (mDNS; only nodes with a swarm key or Open use it).
	NoMDNS bool

	HeartbeatInterval time.Duration // how often liveness, step and hash are gossiped
	PeerExpiry        time.Duration // a peer silent this long is dead; several heartbeats, so a busy CPU is not a death
	JoinWindow        time.Duration // an assembler waits this long for expected peers
	// RoundTimeout caps an all-reduce of a small model; rounds of more
	// bytes than the links move in it get longer (allreduce.AveragerConfig).
	RoundTimeout time.Duration
	// FrameTimeout is the per-frame deadline on streams, plus the frame's
	// size at MinLinkRate.
	FrameTimeout time.Duration
	// MinLinkRate, in bytes/s, is the slowest link the swarm waits for: a
	// frame gets its size at this rate on top of FrameTimeout, and a peer
	// that has not measured its uplink yet is assumed this slow when a
	// round's deadline is sized. Lower: slower volunteers keep up, a stall
	// on a big frame is noticed later.
	MinLinkRate float64
	// Linger keeps a finished node serving state and status this long, so
	// peers still finishing can fetch from it.
	Linger time.Duration
	// CheckpointEvery writes Dir/checkpoint.safetensors every this many
	// steps as well (0: only at the end). The end of a run, and a leave
	// (ctx cancelled), always write one. A node that finds a checkpoint
	// of its run in Dir resumes from it.
	CheckpointEvery int
	// InitPath is the checkpoint file whose weights the run starts from;
	// its SHA-256 must be Run.Model.InitFrom (the CLI sets both).
	InitPath string

	// SwarmKey is the swarm's secret (32 bytes, libp2p's PSK): the host
	// is then a private network, TCP only, and peers that reach us hold
	// the key, so a refused hello may show them our values of the fields
	// that differ. It is no part of the run: not in the run ID, run.json,
	// checkpoints, node.json, /status or the log. Nil: an open host (the
	// CLI asks for --open; tests and sweep trials run without one).
	SwarmKey []byte
	// Open records that the swarm is public on purpose (--open): no key.
	Open bool

	Log io.Writer // human log; nil discards
	// LogLevel is the least severe record written to Log (zero: info).
	LogLevel slog.Level
	// LogJSON writes Log as one JSON object a line instead of slog's
	// key=value text.
	LogJSON bool
	// Network, when set, is the network the node runs on instead of a
	// libp2p host listening on Listen (Dir then holds no identity): tests
	// run whole swarms in-process over it.
	Network Network
	// Clock is the time the node reads: heartbeats, expiries, join
	// windows, round and frame deadlines, waits (nil: the wall clock).
	// Tests and the simulator pass a fake one.
	Clock clock.Clock
}

// DefaultConfig returns a complete node config for DefaultRunConfig.
func DefaultConfig() Config {
	return Config{
		Run:               DefaultRunConfig(),
		Listen:            []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"},
		MinPeers:          1,
		MinPeersTimeout:   2 * time.Minute,
		JoinTimeout:       3 * time.Minute,
		HeartbeatInterval: 500 * time.Millisecond,
		PeerExpiry:        5 * time.Second,
		JoinWindow:        2 * time.Second,
		RoundTimeout:      15 * time.Second,
		FrameTimeout:      10 * time.Second,
		MinLinkRate:       125e3, // 1 Mbit/s
	}
}

// Validate checks the node fields, then the run.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("node config: dir is empty; every node needs its own directory")
	}
	if c.Shards < 0 || (c.Shards > 0 && (c.Shard < 0 || c.Shard >= c.Shards)) {
		return fmt.Errorf("node config: shard %d of %d, want 0 <= shard < shards", c.Shard, c.Shards)
	}
	if c.DataMemory < 0 {
		return fmt.Errorf("node config: data memory %d bytes, want >= 0 (0: no cap)", c.DataMemory)
	}
	if c.Run.Compute.Deterministic && c.Shards == 0 {
		return errors.New("node config: a deterministic run needs --shard K/N on every node: K is the node's rank (its data and its share of each step), N the swarm's fixed size")
	}
	if r := c.Run; r.Compute.Deterministic && !r.DiLoCo() && r.Compute.Batch > 0 && detShare(r.Optimizer.TargetBatch, r.Compute.Batch, c.Shards-1, c.Shards) == 0 {
		return fmt.Errorf("node config: a deterministic run of %d nodes needs optimizer.target_batch >= %d (a minibatch of compute.batch %d for each), got %d", c.Shards, c.Shards*r.Compute.Batch, r.Compute.Batch, r.Optimizer.TargetBatch)
	}
	if c.CheckpointEvery < 0 {
		return fmt.Errorf("node config: checkpoint every %d steps, want >= 0", c.CheckpointEvery)
	}
	if c.MinPeers < 1 || c.MinPeers > 1024 {
		return fmt.Errorf("node config: min peers %d, want 1..1024", c.MinPeers)
	}
	for name, d := range map[string]time.Duration{
		"heartbeat interval": c.HeartbeatInterval, "peer expiry": c.PeerExpiry, "join window": c.JoinWindow,
		"round timeout": c.RoundTimeout, "frame timeout": c.FrameTimeout, "min peers timeout": c.MinPeersTimeout,
		"join timeout": c.JoinTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("node config: %s %v, want > 0", name, d)
		}
	}
	if !(c.MinLinkRate >= 1e3) || c.MinLinkRate > 1e12 {
		return fmt.Errorf("node config: min link rate %v bytes/s, want 1e3 (8 kbit/s) to 1e12", c.MinLinkRate)
	}
	if c.Network == nil {
		for _, a := range c.Join {
			if _, err := peer.AddrInfoFromString(a); err != nil {
				return fmt.Errorf("node config: join address %q: %v (want a full address as the join line prints it, ending in /p2p/<peer id>)", a, err)
			}
		}
	}
	if c.SwarmKey != nil && len(c.SwarmKey) != 32 {
		return fmt.Errorf("node config: swarm key has %d bytes, want 32", len(c.SwarmKey))
	}
	if c.SwarmKey != nil && c.Open {
		return errors.New("node config: a swarm key and open: an open swarm has no key")
	}
	for _, a := range c.Announce {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return fmt.Errorf("node config: --announce %q is not a multiaddr (e.g. /ip4/203.0.113.7/tcp/4001): %v", a, err)
		}
		if _, err := m.ValueForProtocol(ma.P_P2P); err == nil {
			return fmt.Errorf("node config: --announce %q ends in /p2p/…: give the address alone, the node adds its ID", a)
		}
	}
	if c.PeerExpiry < 2*c.HeartbeatInterval {
		return fmt.Errorf("node config: peer expiry %v must be at least two heartbeat intervals (%v)", c.PeerExpiry, 2*c.HeartbeatInterval)
	}
	return c.Run.Validate()
}

// CodecChoices names every codec a run may give, for error messages.
const CodecChoices = "fp32, fp16, bf16, int8, int4, int8:BLOCK, int4:BLOCK (16..65536), topk:FRACTION[:fp16] or powersgd:RANK[:fp16]"

// powerSpec is a run's PowerSGD setting: rank, and whether P and Q go
// in fp16.
type powerSpec struct {
	rank int
	half bool
}

// parseGradientCodec reads a run's codec: "powersgd:RANK[:fp16]" (a
// protocol of two all-reduces, not a per-part codec), else any codec
// compression.ParseCodec knows. Exactly one result is set.
func parseGradientCodec(spec string) (compression.Codec, *powerSpec, error) {
	rest, ok := strings.CutPrefix(spec, "powersgd")
	if !ok {
		c, err := compression.ParseCodec(spec)
		if errors.Is(err, compression.ErrUnknownCodec) {
			err = fmt.Errorf("%w; want %s", err, CodecChoices)
		}
		return c, nil, err
	}
	parts := strings.Split(strings.TrimPrefix(rest, ":"), ":")
	rank, err := strconv.Atoi(parts[0])
	switch {
	case !strings.HasPrefix(rest, ":") || err != nil || rank < 1 || rank > 64:
		return nil, nil, fmt.Errorf("want powersgd:RANK with RANK 1..64, optionally :fp16 (e.g. powersgd:4)")
	case len(parts) > 2 || (len(parts) == 2 && parts[1] != "fp16"):
		return nil, nil, fmt.Errorf("powersgd takes only :fp16 after the rank")
	}
	return nil, &powerSpec{rank: rank, half: len(parts) == 2}, nil
}

// Caveats are what a valid run should know before it spends hours: known
// weak combinations, with the alternative (measured in docs/BENCHMARKS.md).
func (r RunConfig) Caveats() []string {
	var out []string
	codec, opt := r.Averaging.Codec, r.Optimizer.Name
	sparse := strings.HasPrefix(codec, "topk") || strings.HasPrefix(codec, "powersgd")
	if sparse && (opt == "adam" || opt == "adamw") {
		out = append(out, fmt.Sprintf("codec %s with %s: error feedback delivers what top-k and PowerSGD hold back in bursts, which Adam's per-coordinate scaling flattens; on the MNIST demo this cost 0.5-1.2 points against fp32. Momentum SGD (--optimizer momentum --momentum 0.9 --lr 0.05) kept within 0.2 points; with Adam, int8 and int4 cost nothing measurable", codec, opt))
	}
	return out
}

// decay is the run's schedule after warm-up.
func (r RunConfig) decay() (trainer.Decay, error) {
	s := r.Optimizer.Schedule
	if s == "" { // trainer.ParseDecay reads "" as constant
		return "", errors.New(`optimizer.schedule = "", want cosine, linear, step or constant`)
	}
	d, err := trainer.ParseDecay(s)
	if err != nil {
		return "", fmt.Errorf("optimizer.schedule = %q, want cosine, linear, step or constant", s)
	}
	return d, nil
}
