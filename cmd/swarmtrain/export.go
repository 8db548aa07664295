package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/trainer"
)

func exportCmd() *cobra.Command {
	var from, out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write a node's trained weights as a plain safetensors file (no optimizer state)",
		Long: `Reads a checkpoint (a node directory's checkpoint.safetensors, written with
--checkpoint-every) and writes only the model's tensors, under their names
(layers.0.weight, layers.0.bias, …), for PyTorch, JAX or any safetensors reader:

  swarmtrain export --from ./node-a --out model.safetensors
  python -c "from safetensors.torch import load_file; print(load_file('model.safetensors').keys())"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || out == "" {
				return errors.New("export needs --from (a node directory or a checkpoint file) and --out")
			}
			if fi, err := os.Stat(from); err == nil && fi.IsDir() {
				from = filepath.Join(from, node.CheckpointFile)
			}
			c, err := trainer.ReadCheckpoint(from)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			c.Optimizer, c.OptState = "", nil
			if err := trainer.WriteCheckpoint(out, *c); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: step %d, %d tensors, %d parameters (run %s)\n", out, c.Step, len(c.Tensors), len(c.Params), c.RunID)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "node directory or checkpoint file to read")
	cmd.Flags().StringVar(&out, "out", "", "safetensors file to write")
	return cmd
}
