package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/trainer"
)

func exportCmd() *cobra.Command {
	var from, out string
	var data dataFlags
	var prune float64
	var int8q bool
	var layout string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write a node's trained weights as a safetensors file (plain or PyTorch layout), optionally pruned or int8-quantized",
		Long: `Reads a checkpoint (a node directory's checkpoint.safetensors, written at the end
of every run, on Ctrl-C, and every --checkpoint-every steps) and writes only the
model's tensors.

--layout plain (the default) keeps swarmtrain's own layout: names as the model
has them (layers.0.weight, layers.0.bias, …) and dense weights in×out (x·W), the
file a node reads back with --init-from. --layout torch writes what PyTorch
modules hold: dense weights out×in (torch.nn.Linear), and for the MLP and the
CNN the names of an nn.Sequential, so load_state_dict takes the file as is:

  mlp  nn.Sequential(nn.Linear(784,256), nn.ReLU(), nn.Linear(256,10))
       0.weight [256,784], 0.bias, 2.weight [10,256], 2.bias (hidden layers add 2 each)
  cnn  per block i: nn.Conv2d(c,o,5,padding=2), nn.ReLU(), nn.MaxPool2d(2) at 3i..3i+2,
       then nn.Flatten() and the fc layers as the MLP's from index 3·blocks+1
  bert names unchanged (embed.*, layers.L.attn.{query,key,value,out}.*,
       layers.L.ff.{1,2}.*, head.*); Linear weights out×in, embeddings rows×width

  swarmtrain export --from ./node-a --out model.safetensors --layout torch
  python3 -c "import torch; from safetensors.torch import load_file
  m = torch.nn.Sequential(torch.nn.Linear(784,256), torch.nn.ReLU(), torch.nn.Linear(256,10))
  m.load_state_dict(load_file('model.safetensors'))"

MNIST inputs are the 784 pixels, row by row, as (p/255 - 0.1307) / 0.3081
(trainer.MNISTMean, MNISTStd), the normalisation the model was trained with.
Checkpoints and exports record how inputs were prepared (metadata key
"swarmtrain", field "preprocess": image size, channels, per-channel mean and
std and class names, or the vocabulary and sequence length), and export prints
a short Python program that reads it and prepares one input.

--prune 0.8 zeroes the 80% smallest weights (global magnitude pruning; biases
kept); --int8 stores every weight matrix as int8 levels with one float32 scale
per output channel (<name>.scale: per column of a dense in×out matrix, per
first-axis slice of a conv). With either, the MNIST test accuracy of the
model before and after is measured and printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || out == "" {
				return errors.New("export needs --from (a node directory or a checkpoint file) and --out")
			}
			if fi, err := os.Stat(from); err == nil && fi.IsDir() {
				// A text node's vocabulary: its own, or its demo's.
				for _, v := range []string{filepath.Join(from, "vocab.txt"), filepath.Join(from, "..", "vocab.txt")} {
					if data.vocab == "" && fileExists(v) {
						data.vocab = v
					}
				}
				dir := from
				from = filepath.Join(from, node.CheckpointFile)
				if !fileExists(from) {
					return fmt.Errorf("export: %s holds no checkpoint (%s): a node writes one when its run ends and when it is stopped (Ctrl-C, SIGTERM); train there first: swarmtrain node --dir %s", dir, node.CheckpointFile, dir)
				}
			}
			if layout != "plain" && layout != "torch" {
				return fmt.Errorf("export: --layout %q: want plain (swarmtrain's names, dense weights in×out) or torch (nn.Sequential names, out×in)", layout)
			}
			if layout == "torch" && int8q {
				return errors.New("export: --layout torch and --int8 do not go together: the int8 file has per-column scales of swarmtrain's in×out matrices")
			}
			c, err := trainer.ReadCheckpoint(from)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			// toLayout turns the plain tensors into the asked layout, last.
			toLayout := func(c *trainer.Checkpoint) error {
				if layout != "torch" {
					return nil
				}
				rc, err := node.DecodeRunConfig(c.Run)
				if err != nil {
					return fmt.Errorf("export: the checkpoint's run config: %w", err)
				}
				c.Tensors, c.Params, err = trainer.TorchLayout(rc.Model.Kind, c.Tensors, c.Params)
				return err
			}
			w := cmd.OutOrStdout()
			c.Optimizer, c.OptState = "", nil
			if prune == 0 && !int8q {
				if err := toLayout(c); err != nil {
					return err
				}
				if err := trainer.WriteCheckpoint(out, *c); err != nil {
					return fmt.Errorf("export: %w", err)
				}
				fmt.Fprintf(w, "wrote %s: step %d, %d tensors, %d parameters, %s layout (run %s)\n", out, c.Step, len(c.Tensors), len(c.Params), layout, c.RunID)
				printPreprocess(w, out, c)
				return nil
			}
			eval, err := evaluator(c, data)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			acc, err := eval(c.Params)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "trained model (step %d): test accuracy %.2f%%\n", c.Step, 100*acc)
			if prune > 0 {
				n, err := trainer.PruneMagnitude(c.Params, c.Tensors, prune)
				if err != nil {
					return fmt.Errorf("export: %w", err)
				}
				if acc, err = eval(c.Params); err != nil {
					return err
				}
				fmt.Fprintf(w, "pruned %d weights (%.0f%% of the matrices): test accuracy %.2f%%\n", n, 100*prune, 100*acc)
			}
			if !int8q {
				if err := toLayout(c); err != nil {
					return err
				}
				if err := trainer.WriteCheckpoint(out, *c); err != nil {
					return fmt.Errorf("export: %w", err)
				}
				fmt.Fprintf(w, "wrote %s: %d tensors, float32\n", out, len(c.Tensors))
				printPreprocess(w, out, c)
				return nil
			}
			levels, scales := trainer.QuantizeInt8(c.Params, c.Tensors)
			if acc, err = eval(c.Params); err != nil {
				return err
			}
			fmt.Fprintf(w, "int8 weights (per-channel scales): test accuracy %.2f%%\n", 100*acc)
			if err := trainer.WriteInt8Export(out, c.Tensors, c.Params, levels, scales, c.Step, c.RunID); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			st, _ := os.Stat(out)
			fmt.Fprintf(w, "wrote %s: %d bytes, int8 matrices, float32 biases and scales\n", out, st.Size())
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&from, "from", "", "node directory or checkpoint file to read")
	fs.StringVar(&out, "out", "", "safetensors file to write")
	fs.Float64Var(&prune, "prune", 0, "zero this fraction of the weights, smallest magnitudes first (0..1)")
	fs.BoolVar(&int8q, "int8", false, "store weight tensors as int8 with one scale per output channel")
	fs.StringVar(&layout, "layout", "plain", "plain: swarmtrain's tensor names, dense weights in×out (what --init-from reads); torch: dense weights out×in and, for mlp and cnn, nn.Sequential names (load_state_dict)")
	data.bind(fs) // the run's data, for the accuracy check
	return cmd
}

// evaluator rebuilds the checkpoint's model and returns a function that
// measures the test accuracy of a parameter vector on the run's data.
func evaluator(c *trainer.Checkpoint, data dataFlags) (func([]float32) (float64, error), error) {
	rc, err := node.DecodeRunConfig(c.Run)
	if err != nil {
		return nil, fmt.Errorf("the checkpoint's run config: %w", err)
	}
	if len(rc.Model.Hidden) == 0 {
		return nil, errors.New("the checkpoint's run config does not describe a model (no hidden layers)")
	}
	cfg := node.Config{Run: rc}
	if err := data.apply(&cfg); err != nil {
		return nil, err
	}
	if rc.IsText() && cfg.VocabPath == "" {
		return nil, errors.New("the accuracy check of a text model needs its --vocab (and --text or the CSV files it trained on)")
	}
	train, test, err := node.LoadData(cfg)
	if err != nil {
		return nil, err
	}
	mc := rc.ModelConfig()
	mc.Batch = max(mc.Batch, 1)
	m, err := trainer.NewModel(mc, train)
	if err != nil {
		return nil, err
	}
	if err := c.Matches(m.Tensors()); err != nil {
		return nil, err
	}
	return func(p []float32) (float64, error) {
		if err := m.WriteParams(p); err != nil {
			return 0, err
		}
		acc, _, err := m.Evaluate(test)
		return acc, err
	}, nil
}

// printPreprocess prints the Python that prepares one input for the
// model at path from its own metadata.
func printPreprocess(w io.Writer, path string, c *trainer.Checkpoint) {
	if c.Preprocess == nil {
		return
	}
	fmt.Fprintf(w, "\nprepare one input in Python (numpy; Pillow for images) from the file's metadata:\n\n%s", c.Preprocess.PythonSnippet(path))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
