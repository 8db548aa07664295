package node

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/trainer"
	"github.com/swarmtrain/swarmtrain/trainer/text"
)

// RunConfig is everything peers must agree on to train together. Its hash
// is the run ID: peers whose RunConfig differs in any field are on
// different runs, never share a topic, and are refused with the field that
// differs.
type RunConfig struct {
	Dataset     string  `json:"dataset"`      // mnist, mlm, nsp, replaced, source or csv
	Hidden      []int   `json:"hidden"`       // MLP hidden widths
	Batch       int     `json:"batch"`        // local minibatch, samples per forward/backward
	TargetBatch int     `json:"target_batch"` // global samples per optimizer step, summed over the swarm
	Optimizer   string  `json:"optimizer"`    // "adam", "adamw", "sgd", "momentum"
	LR          float32 `json:"lr"`           // peak learning rate
	Momentum    float32 `json:"momentum"`     // SGD momentum (sgd/momentum only)
	WeightDecay float32 `json:"weight_decay"` // decoupled for adamw, L2-style for sgd
	Warmup      int     `json:"warmup"`       // linear warm-up steps
	Steps       int     `json:"steps"`        // optimizer steps of the run; cosine decay to LR/10 over them
	Seed        uint64  `json:"seed"`         // weight init and data order
	Codec       string  `json:"codec"`        // gradient codec on the wire: fp32, fp16, int8, topk:0.01, powersgd:4, …
	Lossless    string  `json:"lossless"`     // lossless stage: none, zstd
	// MinGroup is the fewest peers a round may have: below it no step is
	// taken and the swarm waits for peers (1: a lone peer trains alone).
	MinGroup int `json:"min_group"`
	// MaxGroup caps how many peers average together (0: no cap). A swarm
	// larger than it averages in Moshpit groups: parameters, not
	// gradients, within groups that rotate every step, so replicas agree
	// closely instead of bit for bit until the run's final state. Empty
	// in the JSON when 0, so runs without it keep their run IDs.
	MaxGroup int `json:"max_group,omitempty"`
	// Schedule is the decay after warm-up: cosine (""), linear, step or
	// constant. ClipNorm bounds the averaged gradient's global L2 norm
	// (0: off). Both empty in the JSON at their defaults: run IDs stay.
	Schedule string  `json:"schedule,omitempty"`
	ClipNorm float32 `json:"clip_norm,omitempty"`
	// InitFrom is the SHA-256 (hex) of the checkpoint file the weights
	// start from (transfer learning; empty: the seed's initialisation):
	// peers holding another file are on another run. Freeze names tensors
	// (or name prefixes, e.g. "layers.0.") that training leaves as they are.
	InitFrom string   `json:"init_from,omitempty"`
	Freeze   []string `json:"freeze,omitempty"`
	// Model is the architecture: "" (the MLP) or "cnn", whose conv–pool
	// blocks Channels lists (empty: trainer.DefaultChannels); Hidden then
	// holds its fully connected widths. Empty in the JSON for the MLP, so
	// MLP runs keep their run IDs.
	Model    string `json:"model,omitempty"`
	Channels []int  `json:"channels,omitempty"`
	// Text runs (Dataset mlm, nsp, replaced, source or csv) train the bert model. Data is
	// the SHA-256 of the text files and Vocab of the vocabulary file, so
	// peers holding other text or another vocabulary are on another run.
	// VocabSize is what a learned vocabulary aims for, Seq the tokens per
	// sequence; Width, Heads, Layers and Dropout shape the encoder. Zero
	// means the default; all are absent from MNIST runs' JSON.
	Data      string  `json:"data,omitempty"`
	Vocab     string  `json:"vocab,omitempty"`
	VocabSize int     `json:"vocab_size,omitempty"`
	Seq       int     `json:"seq,omitempty"`
	Width     int     `json:"width,omitempty"`
	Heads     int     `json:"heads,omitempty"`
	Layers    int     `json:"layers,omitempty"`
	Dropout   float32 `json:"dropout,omitempty"`
	// TrainRows trains on only this many training rows, drawn with the
	// seed (0: all): the few-labels setting where pre-training pays.
	TrainRows int `json:"train_rows,omitempty"`
}

// Text defaults, used where a text run's field is 0.
const (
	DefaultVocabSize = 2000
	DefaultSeq       = 64
)

// IsText reports whether the run trains on text (the bert model).
func (r RunConfig) IsText() bool {
	switch r.Dataset {
	case DatasetMLM, DatasetNSP, DatasetReplaced, DatasetSource, DatasetCSV:
		return true
	}
	return false
}

// ModelConfig is the trainer's view of the run's network.
func (r RunConfig) ModelConfig() trainer.ModelConfig {
	return trainer.ModelConfig{Arch: r.Model, Hidden: r.Hidden, Channels: r.Channels, Batch: r.Batch, Seed: r.Seed,
		Width: r.Width, Heads: r.Heads, Layers: r.Layers, Dropout: float64(r.Dropout)}
}

// DefaultRunConfig is the demo's run: an MLP that reaches ≥97% on MNIST
// in a few minutes on two cores.
func DefaultRunConfig() RunConfig {
	return RunConfig{
		Dataset:     DatasetMNIST,
		Hidden:      []int{256},
		Batch:       64,
		TargetBatch: 256,
		Optimizer:   "adam",
		LR:          2e-3,
		Warmup:      30,
		Steps:       1000,
		Seed:        1,
		Codec:       "fp32",
		Lossless:    "none",
		MinGroup:    1,
	}
}

// Validate names the first field out of range.
func (r RunConfig) Validate() error {
	switch {
	case r.Dataset != DatasetMNIST && !r.IsText():
		return fmt.Errorf("run config: dataset %q, want mnist, mlm, nsp, replaced, source or csv", r.Dataset)
	case r.IsText() != (r.Model == trainer.ArchBERT):
		return fmt.Errorf("run config: dataset %s with model %q: text datasets (mlm, nsp, replaced, source, csv) go with --model bert, and bert with them", r.Dataset, r.modelName())
	case len(r.Hidden) == 0 || len(r.Hidden) > 8:
		return fmt.Errorf("run config: hidden has %d layers, want 1..8", len(r.Hidden))
	case r.Batch < 1 || r.Batch > 4096:
		return fmt.Errorf("run config: batch %d, want 1..4096", r.Batch)
	case r.TargetBatch < r.Batch || r.TargetBatch > 1<<20:
		return fmt.Errorf("run config: target batch %d, want batch (%d)..%d", r.TargetBatch, r.Batch, 1<<20)
	case !(r.LR > 0 && r.LR < 10):
		return fmt.Errorf("run config: lr %v, want in (0, 10)", r.LR)
	case r.Momentum < 0 || r.Momentum >= 1:
		return fmt.Errorf("run config: momentum %v, want [0, 1)", r.Momentum)
	case r.WeightDecay < 0 || r.WeightDecay >= 1:
		return fmt.Errorf("run config: weight decay %v, want [0, 1)", r.WeightDecay)
	case r.Warmup < 0 || r.Warmup > r.Steps:
		return fmt.Errorf("run config: warmup %d, want 0..steps (%d)", r.Warmup, r.Steps)
	case r.Steps < 1 || r.Steps > 10_000_000:
		return fmt.Errorf("run config: steps %d, want 1..10000000", r.Steps)
	case r.TrainRows < 0:
		return fmt.Errorf("run config: train rows %d, want 0 (all) or more", r.TrainRows)
	case r.MinGroup < 1 || r.MinGroup > 1024:
		return fmt.Errorf("run config: min group %d, want 1..1024", r.MinGroup)
	case r.MaxGroup != 0 && (r.MaxGroup < 2 || r.MaxGroup > 1024):
		return fmt.Errorf("run config: max group %d, want 0 (no cap) or 2..1024", r.MaxGroup)
	case r.MaxGroup != 0 && r.MaxGroup < r.MinGroup:
		return fmt.Errorf("run config: max group %d is below min group %d", r.MaxGroup, r.MinGroup)
	case r.MaxGroup != 0 && r.Codec != "fp32":
		// Moshpit groups average the weights themselves; quantising them
		// every step would add noise no error feedback can take back.
		return fmt.Errorf("run config: max group needs codec fp32 (got %q): groups above it average the parameters, not gradients", r.Codec)
	}
	for i, w := range r.Hidden {
		if w < 1 || w > 8192 {
			return fmt.Errorf("run config: hidden[%d] = %d, want 1..8192", i, w)
		}
	}
	switch r.Model {
	case "":
		if len(r.Channels) > 0 {
			return errors.New("run config: channels are for --model cnn")
		}
	case trainer.ArchBERT:
		if err := r.validateText(); err != nil {
			return err
		}
	case trainer.ArchCNN:
		if len(r.Channels) > 4 {
			return fmt.Errorf("run config: %d conv blocks, want 1..4", len(r.Channels))
		}
		for i, c := range r.Channels {
			if c < 1 || c > 1024 {
				return fmt.Errorf("run config: channels[%d] = %d, want 1..1024", i, c)
			}
		}
	default:
		return fmt.Errorf("run config: model %q, want mlp, cnn or bert", r.Model)
	}
	switch r.Optimizer {
	case "adam", "adamw", "sgd", "momentum", "nesterov":
	default:
		return fmt.Errorf("run config: optimizer %q, want adam, adamw, sgd, momentum or nesterov", r.Optimizer)
	}
	if _, err := r.decay(); err != nil {
		return fmt.Errorf("run config: %w", err)
	}
	if r.InitFrom != "" && (len(r.InitFrom) != 64 || strings.Trim(r.InitFrom, "0123456789abcdef") != "") {
		return fmt.Errorf("run config: init_from %q is not a SHA-256 in hex", r.InitFrom)
	}
	for _, f := range r.Freeze {
		if f == "" {
			return errors.New("run config: an empty --freeze name would freeze every tensor")
		}
	}
	if !(r.ClipNorm >= 0 && r.ClipNorm < 1e30) {
		return fmt.Errorf("run config: clip norm %v, want >= 0 (0: off)", r.ClipNorm)
	}
	if _, _, err := parseGradientCodec(r.Codec); err != nil {
		return fmt.Errorf("run config: codec %q: %w", r.Codec, err)
	}
	if _, err := compression.LosslessByName(r.Lossless); err != nil {
		return fmt.Errorf("run config: lossless %q: %w", r.Lossless, err)
	}
	return nil
}

func (r RunConfig) modelName() string {
	if r.Model == "" {
		return trainer.ArchMLP
	}
	return r.Model
}

// validateText checks a bert run's text fields.
func (r RunConfig) validateText() error {
	isSHA := func(s string) bool { return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == "" }
	switch {
	case !isSHA(r.Data):
		return fmt.Errorf("run config: data %q is not the SHA-256 of the text files", r.Data)
	case !isSHA(r.Vocab):
		return fmt.Errorf("run config: vocab %q is not the SHA-256 of a vocabulary file", r.Vocab)
	case r.VocabSize != 0 && (r.VocabSize < 16 || r.VocabSize > text.MaxVocab):
		return fmt.Errorf("run config: vocab size %d, want 16..%d", r.VocabSize, text.MaxVocab)
	case r.Seq != 0 && (r.Seq < 8 || r.Seq > 512):
		return fmt.Errorf("run config: seq %d, want 8..512", r.Seq)
	case r.Width < 0 || r.Width > 4096 || r.Heads < 0 || r.Heads > 64 || r.Layers < 0 || r.Layers > 24:
		return fmt.Errorf("run config: width %d, heads %d, layers %d: want up to 4096, 64 and 24", r.Width, r.Heads, r.Layers)
	case !(r.Dropout >= 0 && r.Dropout < 1):
		return fmt.Errorf("run config: dropout %v, want [0, 1)", r.Dropout)
	case len(r.Channels) > 0:
		return errors.New("run config: channels are for --model cnn")
	}
	return nil
}

// JSON is the canonical encoding the run ID is hashed from (struct field
// order is fixed, so equal configs give equal bytes).
func (r RunConfig) JSON() json.RawMessage {
	b, _ := json.Marshal(r)
	return b
}

// ID is the run ID: the first 16 bytes of SHA-256 of the canonical JSON.
func (r RunConfig) ID() string {
	sum := sha256.Sum256(r.JSON())
	return hex.EncodeToString(sum[:16])
}

// Config is one node: the run it trains plus where and how it runs.
type Config struct {
	Run RunConfig

	Dir     string   // node directory: identity.key, node.json, result.json
	Listen  []string // multiaddrs to listen on
	Join    []string // multiaddrs of peers to join; empty starts a new swarm
	HTTP    string   // host:port for /status and /metrics; empty disables
	DataDir string   // MNIST IDX/CSV folder; empty uses the GoMNIST module's data
	// Text runs: the corpus files (mlm, nsp, replaced, source; empty
	// means trainer.DefaultCorpus), the labelled CSV files (csv) and the
	// vocabulary file. Their hashes must be Run.Data and Run.Vocab
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
	// steps and at the end (0: never). A node that finds a checkpoint of
	// its run in Dir resumes from it.
	CheckpointEvery int
	// InitPath is the checkpoint file whose weights the run starts from;
	// its SHA-256 must be Run.InitFrom (the CLI sets both).
	InitPath string

	Log io.Writer // human log; nil discards
	// Network, when set, is the network the node runs on instead of a
	// libp2p host listening on Listen (Dir then holds no identity): tests
	// run whole swarms in-process over it.
	Network Network
}

// DefaultConfig returns a complete node config for DefaultRunConfig.
func DefaultConfig() Config {
	return Config{
		Run:               DefaultRunConfig(),
		Listen:            []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"},
		MinPeers:          1,
		MinPeersTimeout:   2 * time.Minute,
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
	if c.CheckpointEvery < 0 {
		return fmt.Errorf("node config: checkpoint every %d steps, want >= 0", c.CheckpointEvery)
	}
	if c.MinPeers < 1 || c.MinPeers > 1024 {
		return fmt.Errorf("node config: min peers %d, want 1..1024", c.MinPeers)
	}
	for name, d := range map[string]time.Duration{
		"heartbeat interval": c.HeartbeatInterval, "peer expiry": c.PeerExpiry, "join window": c.JoinWindow,
		"round timeout": c.RoundTimeout, "frame timeout": c.FrameTimeout, "min peers timeout": c.MinPeersTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("node config: %s %v, want > 0", name, d)
		}
	}
	if !(c.MinLinkRate >= 1e3) || c.MinLinkRate > 1e12 {
		return fmt.Errorf("node config: min link rate %v bytes/s, want 1e3 (8 kbit/s) to 1e12", c.MinLinkRate)
	}
	if c.PeerExpiry < 2*c.HeartbeatInterval {
		return fmt.Errorf("node config: peer expiry %v must be at least two heartbeat intervals (%v)", c.PeerExpiry, 2*c.HeartbeatInterval)
	}
	return c.Run.Validate()
}

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
	sparse := strings.HasPrefix(r.Codec, "topk") || strings.HasPrefix(r.Codec, "powersgd")
	if sparse && (r.Optimizer == "adam" || r.Optimizer == "adamw") {
		out = append(out, fmt.Sprintf("codec %s with %s: error feedback delivers what top-k and PowerSGD hold back in bursts, which Adam's per-coordinate scaling flattens; on the MNIST demo this cost 0.5-1.2 points against fp32. Momentum SGD (--optimizer momentum --momentum 0.9 --lr 0.05) kept within 0.2 points; with Adam, int8 and int4 cost nothing measurable", r.Codec, r.Optimizer))
	}
	return out
}

// decay is the run's schedule after warm-up; "" is cosine.
func (r RunConfig) decay() (trainer.Decay, error) {
	if r.Schedule == "" {
		return trainer.DecayCosine, nil
	}
	return trainer.ParseDecay(r.Schedule)
}
