package node

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
	"github.com/swarmtrain/swarmtrain/trainer"
	"github.com/swarmtrain/swarmtrain/trainer/text"
)

// Datasets a run trains on.
const (
	DatasetMNIST    = "mnist"    // images, mlp or cnn
	DatasetMLM      = "mlm"      // masked-language modelling on a corpus (bert pre-training)
	DatasetNSP      = "nsp"      // next-sentence prediction on a corpus (classification)
	DatasetReplaced = "replaced" // replaced-word detection on a corpus (classification)
	DatasetSource   = "source"   // which text of the corpus a passage comes from (classification)
	DatasetCSV      = "csv"      // text,label rows from the user's CSV files (classification)
)

// Text-task constants every peer shares.
const (
	testFraction = 0.1 // the corpus tail held out for testing
	mlmCopies    = 4   // differently masked copies of each training sequence
	minMerges    = 2   // a vocabulary merge needs a pair seen this often
)

// textFiles lists the files a text run reads, in the order they are hashed.
func (c Config) textFiles() ([]string, error) {
	if c.Run.Data.Dataset == DatasetCSV {
		return []string{c.TrainCSV, c.TestCSV}, nil
	}
	if len(c.Corpus) == 0 {
		return trainer.DefaultCorpus()
	}
	return c.Corpus, nil
}

// readTextFiles reads the run's text files once and returns their paths
// and contents with the SHA-256 over each file's length and bytes, in
// order: what is hashed is what is trained on, even if a file changes
// meanwhile.
func (c Config) readTextFiles() (paths []string, contents [][]byte, sum string, err error) {
	if paths, err = c.textFiles(); err != nil {
		return nil, nil, "", err
	}
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, "", fmt.Errorf("text data: %w", err)
		}
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
		contents = append(contents, b)
	}
	return paths, contents, hex.EncodeToString(h.Sum(nil)), nil
}

func docsOf(contents [][]byte) []string {
	docs := make([]string, len(contents))
	for i, b := range contents {
		docs[i] = string(b)
	}
	return docs
}

// PrepareText readies a text run before New: it checks the input files,
// learns a vocabulary from the training text when cfg names none (written
// to learnedPath, which becomes cfg.VocabPath), and sets Run.Data.Files and
// Run.Data.Vocab to the files' hashes. Learning is deterministic, so peers with
// the same text learn the same vocabulary; a shared --vocab file is what
// fine-tuning from a pre-trained checkpoint needs.
func PrepareText(cfg *Config, learnedPath string) error {
	if !cfg.Run.IsText() {
		return nil
	}
	if cfg.Run.Data.Dataset == DatasetCSV && (cfg.TrainCSV == "" || cfg.TestCSV == "") {
		return errors.New("dataset csv needs --train-csv and --test-csv (text,label rows)")
	}
	_, contents, sum, err := cfg.readTextFiles()
	if err != nil {
		return err
	}
	if cfg.Run.Data.Dataset == DatasetSource && (len(contents) < 2 || len(contents) > trainer.MaxSourceTexts) {
		return fmt.Errorf("dataset source needs 2 to %d --text files (the label is the file), got %d", trainer.MaxSourceTexts, len(contents))
	}
	cfg.Run.Data.Files = sum
	if cfg.VocabPath == "" {
		if cfg.Run.Data.Dataset == DatasetCSV {
			return errors.New("dataset csv needs --vocab: the vocabulary of the model it fine-tunes (a pre-training node writes vocab.txt into its directory)")
		}
		trainDocs, _ := trainer.SplitTail(docsOf(contents), testFraction)
		tok, err := text.Learn(trainDocs, cmp.Or(cfg.Run.Model.VocabSize, DefaultVocabSize), minMerges)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := tok.Save(&buf); err != nil {
			return err
		}
		if err := atomicfile.Write(learnedPath, buf.Bytes()); err != nil {
			return fmt.Errorf("writing the learned vocabulary: %w", err)
		}
		cfg.VocabPath = learnedPath
	}
	if cfg.Run.Data.Vocab, err = FileSHA256(cfg.VocabPath); err != nil {
		return fmt.Errorf("--vocab: %w", err)
	}
	return nil
}

// LoadData builds the run's training and test sets from the node's files,
// checking them against the hashes the run names, and keeps Run.Data.TrainRows
// training rows when it is set.
func LoadData(cfg Config) (train, test *trainer.Dataset, err error) {
	train, test, err = loadData(cfg)
	if err == nil && cfg.Run.Data.TrainRows > 0 {
		if train, err = train.Sample(cfg.Run.Seed, cfg.Run.Data.TrainRows); err != nil {
			return nil, nil, fmt.Errorf("--train-rows: %w", err)
		}
	}
	return train, test, err
}

// newBatcher draws the node's batches from its shard of train (all of
// it without --shard), seeded with seed, augmented as the run says. Under
// --data-memory the shard is rows of the mapped set rather than a copy,
// and training reads a window of blocks at a time, evaluation of test a
// chunk at a time, from the pixel file: the same batches either way.
func newBatcher(cfg Config, train, test *trainer.Dataset, seed uint64) (*trainer.Batcher, error) {
	batch := cfg.Run.Compute.Batch
	var b *trainer.Batcher
	switch {
	case cfg.Shards == 0:
		b = trainer.NewBatcher(train, batch, seed)
	case cfg.DataMemory > 0:
		rows, err := train.ShardRows(cfg.Run.Seed, cfg.Shard, cfg.Shards)
		if err != nil {
			return nil, err
		}
		b = trainer.NewRowsBatcher(train, rows, batch, seed)
	default:
		shard, err := train.Shard(cfg.Run.Seed, cfg.Shard, cfg.Shards)
		if err != nil {
			return nil, err
		}
		b = trainer.NewBatcher(shard, batch, seed)
	}
	if aug, _ := trainer.ParseAugment(cfg.Run.Data.Augment); aug.On() { // Validate has checked it
		if err := b.SetAugment(aug); err != nil {
			return nil, err
		}
	}
	if cfg.DataMemory == 0 {
		return b, nil
	}
	if err := b.SetMemory(cfg.DataMemory); err != nil {
		return nil, fmt.Errorf("--data-memory: %w", err)
	}
	if err := test.StreamRows(); err != nil {
		return nil, fmt.Errorf("--data-memory: %w", err)
	}
	return b, nil
}

// readVocab reads a text run's vocabulary file, checked against the hash
// the run names.
func readVocab(cfg Config) ([]byte, error) {
	if cfg.VocabPath == "" {
		return nil, errors.New("text run without a vocabulary file")
	}
	b, err := os.ReadFile(cfg.VocabPath)
	if err != nil {
		return nil, fmt.Errorf("--vocab: %w", err)
	}
	if sum := sha256Hex(b); sum != cfg.Run.Data.Vocab {
		return nil, fmt.Errorf("--vocab %s has SHA-256 %s, the run names %s", cfg.VocabPath, sum, cfg.Run.Data.Vocab)
	}
	return b, nil
}

func loadData(cfg Config) (train, test *trainer.Dataset, err error) {
	r := cfg.Run
	if r.Data.Dataset == DatasetImages {
		train, test, _, err := loadImages(cfg)
		return train, test, err
	}
	if !r.IsText() {
		return trainer.LoadMNISTCached(cfg.DataDir, cfg.DataCache)
	}
	paths, contents, sum, err := cfg.readTextFiles()
	if err != nil {
		return nil, nil, err
	}
	if sum != r.Data.Files {
		return nil, nil, fmt.Errorf("text data %v has SHA-256 %s, the run names %s: peers must train on the same files", paths, sum, r.Data.Files)
	}
	vb, err := readVocab(cfg)
	if err != nil {
		return nil, nil, err
	}
	tok, err := text.Load(bytes.NewReader(vb))
	if err != nil {
		return nil, nil, fmt.Errorf("--vocab %s: %w", cfg.VocabPath, err)
	}
	seq := cmp.Or(r.Model.Seq, DefaultSeq)
	if r.Data.Dataset == DatasetCSV {
		cols := trainer.TextColumns{Text: r.Data.TextColumn, Label: r.Data.LabelColumn}
		train, labels, err := trainer.ReadTextTable(cfg.TrainCSV, bytes.NewReader(contents[0]), tok, seq, nil, cols, isJSONL(cfg.TrainCSV))
		if err != nil {
			return nil, nil, err
		}
		test, _, err = trainer.ReadTextTable(cfg.TestCSV, bytes.NewReader(contents[1]), tok, seq, labels, cols, isJSONL(cfg.TestCSV))
		return train, test, err
	}
	trainDocs, testDocs := trainer.SplitTail(docsOf(contents), testFraction)
	if r.Data.Dataset == DatasetMLM {
		if train, err = trainer.MLMDataset("mlm-train", tok, trainDocs, seq, mlmCopies, r.Seed); err == nil {
			test, err = trainer.MLMDataset("mlm-test", tok, testDocs, seq, 1, r.Seed+1)
		}
		return train, test, err
	}
	task := trainer.NSPDataset
	switch r.Data.Dataset {
	case DatasetReplaced:
		task = trainer.ReplacedDataset
	case DatasetSource:
		task = trainer.SourceDataset
	}
	if train, err = task(r.Data.Dataset+"-train", tok, trainDocs, seq, r.Seed); err == nil {
		test, err = task(r.Data.Dataset+"-test", tok, testDocs, seq, r.Seed+1)
	}
	return train, test, err
}

// preprocessOf is how the run prepares a model input, for checkpoints
// and exports: the image size, channels and normalisation, or the
// vocabulary and sequence length, with the class names. nil when it
// cannot be said (MLM rows have no classes, but still a vocabulary).
func preprocessOf(cfg Config, train *trainer.Dataset) *trainer.Preprocess {
	r := cfg.Run
	if r.IsText() {
		vb, err := readVocab(cfg)
		if err != nil {
			return nil
		}
		return trainer.TextPreprocess(vb, cmp.Or(r.Model.Seq, DefaultSeq), train.Labels)
	}
	p, err := trainer.ImagePreprocess(train, r.Model.Kind == trainer.ArchMLP)
	if err != nil {
		return nil
	}
	return p
}

// isJSONL says whether a csv run's file is JSON Lines, by its name.
func isJSONL(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".jsonl" || ext == ".ndjson"
}
