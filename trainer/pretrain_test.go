package trainer

import (
	"flag"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/trainer/text"
)

var (
	pretrain      = flag.Bool("pretrain", false, "run the pre-training-helps experiment (BERT MLM on Opticks, then next-sentence fine-tuning; ~15 minutes on 2 cores)")
	pretrainSteps = flag.Int("pretrain.mlm", 600, "MLM pre-training steps")
	fineSteps     = flag.Int("pretrain.fine", 300, "fine-tuning steps, for both the pre-trained and the from-scratch model")
	pretrainTask  = flag.String("pretrain.task", "replaced", "fine-tuning task: replaced (replaced-word detection) or nsp (next-sentence prediction)")
	pretrainCkpt  = flag.String("pretrain.ckpt", "", "reuse this pre-trained checkpoint if it exists, else write it there")
)

// TestPretrainingHelps is the transfer-learning acceptance experiment:
// a small BERT pre-trained with masked-language modelling on the first 90%
// of Newton's Opticks, then fine-tuned on next-sentence prediction, beats
// the same model trained on next-sentence prediction from scratch with the
// same budget, on sentence pairs from the held-out last 10%.
//
//	go test ./trainer -run TestPretrainingHelps -pretrain -v -timeout 60m
func TestPretrainingHelps(t *testing.T) {
	if !*pretrain {
		t.Skip("needs -pretrain (about 15 minutes)")
	}
	const seq, batch, vocab = 64, 32, 2000
	docs, err := ReadCorpus()
	if err != nil {
		t.Skip(err)
	}
	trainDocs, testDocs := SplitTail(docs, 0.2)
	tok, err := text.Learn(trainDocs, vocab, 2)
	if err != nil {
		t.Fatal(err)
	}
	mlm, err := MLMDataset("mlm", tok, trainDocs, seq, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	task := ReplacedDataset
	if *pretrainTask == "nsp" {
		task = NSPDataset
	}
	nspTrain, err := task(*pretrainTask+"-train", tok, trainDocs, seq, 2)
	if err != nil {
		t.Fatal(err)
	}
	nspTest, err := task(*pretrainTask+"-test", tok, testDocs, seq, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("vocabulary %d, MLM rows %d, NSP train %d, test %d", tok.Size(), mlm.N, nspTrain.N, nspTest.N)
	cfg := ModelConfig{Arch: ArchBERT, Batch: batch, Seed: 1, Dropout: 0.1}

	ckpt, err := ReadCheckpoint(*pretrainCkpt)
	if *pretrainCkpt == "" || err != nil {
		start := time.Now()
		pre, err := NewModel(cfg, mlm)
		if err != nil {
			t.Fatal(err)
		}
		trainModel(t, pre, mlm, batch, *pretrainSteps, 3e-3)
		mlmTest, err := MLMDataset("mlm-test", tok, testDocs, seq, 1, 4)
		if err != nil {
			t.Fatal(err)
		}
		acc, loss, err := pre.Evaluate(mlmTest)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pre-training: %d steps in %v; held-out masked-token accuracy %.3f, loss %.3f", *pretrainSteps, time.Since(start).Round(time.Second), acc, loss)
		ckpt = &Checkpoint{Step: uint64(*pretrainSteps), Run: []byte("{}"), RunID: "pretrain-test", Tensors: pre.Tensors(), Params: make([]float32, pre.NumParams())}
		pre.ReadParams(ckpt.Params)
		pre.Close()
		if *pretrainCkpt != "" {
			if err := WriteCheckpoint(*pretrainCkpt, *ckpt); err != nil {
				t.Fatal(err)
			}
		}
	}

	fine := func(fromCheckpoint bool) float64 {
		m, err := NewModel(cfg, nspTrain)
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
		trainModel(t, m, nspTrain, batch, *fineSteps, 1e-3)
		acc, loss, err := m.Evaluate(nspTest)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s fine-tuning (pre-trained %v): %d steps in %v; held-out accuracy %.3f, loss %.3f", *pretrainTask, fromCheckpoint, *fineSteps, time.Since(start).Round(time.Second), acc, loss)
		return acc
	}
	withPre, scratch := fine(true), fine(false)
	if withPre <= scratch {
		t.Errorf("pre-training did not help: %.3f fine-tuned vs %.3f from scratch", withPre, scratch)
	}
}
