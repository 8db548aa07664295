package trainer

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/trainer/text"
)

var (
	pretrain       = flag.Bool("pretrain", false, "run the pre-training experiment (BERT MLM on Opticks, then fine-tuning vs from scratch; ~14 minutes on 2 cores)")
	pretrainSteps  = flag.Int("pretrain.mlm", 2500, "MLM pre-training steps")
	pretrainLR     = flag.Float64("pretrain.lr", 2e-3, "MLM peak learning rate")
	fineSteps      = flag.Int("pretrain.fine", 300, "fine-tuning steps, for both the pre-trained and the from-scratch model")
	fineLR         = flag.Float64("pretrain.finelr", 1e-3, "fine-tuning peak learning rate (both models)")
	fineRows       = flag.Int("pretrain.rows", 0, "fine-tune on only this many labelled rows (0: all)")
	pretrainTasks  = flag.String("pretrain.tasks", "nsp", "fine-tuning tasks, comma-separated: replaced, nsp")
	pretrainSeq    = flag.Int("pretrain.seq", 32, "tokens per sequence")
	pretrainVocab  = flag.Int("pretrain.vocab", 1000, "vocabulary size")
	pretrainCkpt   = flag.String("pretrain.ckpt", "", "reuse this pre-trained checkpoint if it exists, else write it there")
	pretrainAssert = flag.Bool("pretrain.assert", true, "fail unless pre-training beats from scratch on every task")
	fineSeeds      = flag.Int("pretrain.seeds", 3, "fine-tune with this many seeds (heads, dropout, batch order) and compare the means")
)

// TestPretrainingHelps is the transfer-learning experiment: a small BERT
// pre-trained with masked-language modelling on the first 80% of Newton's
// Opticks, then fine-tuned on a classification task built from the text,
// against the same model trained on that task from scratch with the same
// budget; both are scored on passages from the held-out last 20%.
//
// Measured (docs/BENCHMARKS.md): on next-sentence prediction the gain is
// not there yet: at 300 steps the pre-trained model wins 3 seeds of 3 by
// 1–4.5 points, at 150 steps (-pretrain.fine 150 -pretrain.seeds 5) it
// loses on the mean, all within a few points of chance.
//
//	go test ./trainer -run TestPretrainingHelps -v -timeout 60m -args -pretrain
func TestPretrainingHelps(t *testing.T) {
	if !*pretrain {
		t.Skip("needs -pretrain (about 15 minutes)")
	}
	seq, batch := *pretrainSeq, 32
	docs, err := ReadCorpus()
	if err != nil {
		t.Skip(err)
	}
	trainDocs, testDocs := SplitTail(docs, 0.2)
	tok, err := text.Learn(trainDocs, *pretrainVocab, 2)
	if err != nil {
		t.Fatal(err)
	}
	mlm, err := MLMDataset("mlm", tok, trainDocs, seq, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ModelConfig{Arch: ArchBERT, Batch: batch, Seed: 1, Dropout: 0.1}

	ckpt, err := ReadCheckpoint(*pretrainCkpt)
	if *pretrainCkpt == "" || err != nil {
		start := time.Now()
		pre, err := NewModel(cfg, mlm)
		if err != nil {
			t.Fatal(err)
		}
		trainModel(t, pre, mlm, batch, *pretrainSteps, float32(*pretrainLR))
		mlmTest, err := MLMDataset("mlm-test", tok, testDocs, seq, 1, 4)
		if err != nil {
			t.Fatal(err)
		}
		acc, loss, err := pre.Evaluate(mlmTest)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pre-training: %d MLM rows, %d steps in %v; held-out masked-token accuracy %.3f, loss %.3f",
			mlm.N, *pretrainSteps, time.Since(start).Round(time.Second), acc, loss)
		ckpt = &Checkpoint{Step: uint64(*pretrainSteps), Run: []byte("{}"), RunID: "pretrain-test", Tensors: pre.Tensors(), Params: make([]float32, pre.NumParams())}
		pre.ReadParams(ckpt.Params)
		pre.Close()
		if *pretrainCkpt != "" {
			if err := WriteCheckpoint(*pretrainCkpt, *ckpt); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, task := range strings.Split(*pretrainTasks, ",") {
		build := ReplacedDataset
		if task == "nsp" {
			build = NSPDataset
		}
		train, err := build(task+"-train", tok, trainDocs, seq, 2)
		if err != nil {
			t.Fatal(err)
		}
		if *fineRows > 0 && *fineRows < train.N {
			train, _ = train.Shard(5, 0, train.N / *fineRows)
		}
		test, err := build(task+"-test", tok, testDocs, seq, 3)
		if err != nil {
			t.Fatal(err)
		}
		fine := func(fromCheckpoint bool, seed uint64) float64 {
			c := cfg
			c.Seed = seed
			m, err := NewModel(c, train)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if fromCheckpoint {
				p := make([]float32, m.NumParams())
				m.ReadParams(p)
				if _, err := ckpt.Transfer(p, m.Tensors()); err != nil {
					t.Fatal(err)
				}
				if err := m.WriteParams(p); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			trainModelSeed(t, m, train, batch, *fineSteps, float32(*fineLR), seed)
			acc, loss, err := m.Evaluate(test)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s (%d rows, test %d), seed %d, pre-trained %v: %d steps in %v; held-out accuracy %.3f, loss %.3f",
				task, train.N, test.N, seed, fromCheckpoint, *fineSteps, time.Since(start).Round(time.Second), acc, loss)
			return acc
		}
		var withPre, scratch float64
		for seed := range uint64(*fineSeeds) {
			withPre += fine(true, 1+seed) / float64(*fineSeeds)
			scratch += fine(false, 1+seed) / float64(*fineSeeds)
		}
		t.Logf("%s: mean held-out accuracy %.3f pre-trained, %.3f from scratch, over %d seeds", task, withPre, scratch, *fineSeeds)
		if *pretrainAssert && withPre <= scratch {
			t.Errorf("%s: pre-training did not help: %.3f fine-tuned vs %.3f from scratch", task, withPre, scratch)
		}
	}
}
