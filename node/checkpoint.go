package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/statesync"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// CheckpointFile is the checkpoint's name inside a node directory.
const CheckpointFile = "checkpoint.safetensors"

func (n *Node) checkpointPath() string { return filepath.Join(n.cfg.Dir, CheckpointFile) }

// resume loads the node directory's checkpoint, if there is one. A
// checkpoint of another run is an error: silently starting over would
// overwrite it.
func (n *Node) resume() error {
	c, err := trainer.ReadCheckpoint(n.checkpointPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	run, rc, err := checkpointRun(c)
	if err != nil {
		return fmt.Errorf("%s: %w", n.checkpointPath(), err)
	}
	if run != n.run {
		why := ""
		if rc != nil {
			why = " (" + gossip.ConfigDiff(n.cfg.Run.JSON(), rc) + "; theirs: the checkpoint's)"
		}
		return fmt.Errorf("%s belongs to run %s, this node is on run %s%s: use another --dir, or move the checkpoint away", n.checkpointPath(), run, n.run, why)
	}
	if err := c.Matches(n.local.model.Tensors()); err != nil {
		return fmt.Errorf("%s: %w", n.checkpointPath(), err)
	}
	if c.Optimizer != n.local.opt.Name() {
		return fmt.Errorf("%s holds %s state, the run uses %s", n.checkpointPath(), c.Optimizer, n.local.opt.Name())
	}
	group := make([]peer.ID, 0, len(c.Group))
	for _, g := range c.Group {
		p, err := peer.Decode(g)
		if err != nil {
			return fmt.Errorf("%s: group member %q: %w", n.checkpointPath(), g, err)
		}
		group = append(group, p)
	}
	s := statesync.Snapshot{Step: c.Step, Params: c.Params, Opt: c.OptState, Group: group}
	if err := n.load(s, statesync.HashState(c.Step, c.Params, c.OptState, group)); err != nil {
		return fmt.Errorf("%s: %w", n.checkpointPath(), err)
	}
	n.log.Info("resumed from checkpoint", "step", c.Step, "path", n.checkpointPath())
	n.det.void(fmt.Sprintf("resumed from a checkpoint at step %d: the data order starts over", c.Step))
	return nil
}

// checkpointRun is the run a checkpoint belongs to, as this build names
// it, with that run config in the current encoding: the run config it
// holds is read like any other, so a checkpoint written before a
// RunConfigVersion bump resumes its run (the ID it stores was hashed from
// the older encoding). A checkpoint without a run config is known by the
// ID it stores.
func checkpointRun(c *trainer.Checkpoint) (id string, run json.RawMessage, err error) {
	if len(c.Run) == 0 {
		return c.RunID, nil, nil
	}
	rc, err := DecodeRunConfig(c.Run)
	if err != nil {
		return "", nil, err
	}
	return rc.ID(), rc.JSON(), nil
}

// checkpoint writes the current state at the end of a run or a leave
// (final), and at every CheckpointEvery-th step (0: none between). The
// final one is never skipped: a trained model that is not on disk is
// lost. A failed write is logged, not fatal: the previous checkpoint is
// still there.
func (n *Node) checkpoint(final bool) {
	every := uint64(n.cfg.CheckpointEvery)
	n.mu.Lock()
	step := n.rep.step
	if !final && (every == 0 || step%every != 0 || step == n.stats.lastCheckpoint) {
		n.mu.Unlock()
		return
	}
	n.stats.lastCheckpoint = step
	c := trainer.Checkpoint{Step: step, Run: n.cfg.Run.JSON(), RunID: n.run, Tensors: n.local.model.Tensors(),
		Params: append([]float32(nil), n.rep.params...), Optimizer: n.local.opt.Name(), OptState: append([]float32(nil), n.rep.optState...),
		Preprocess: n.local.prep}
	for _, p := range n.rep.lastGroup {
		c.Group = append(c.Group, p.String())
	}
	n.mu.Unlock()
	if err := trainer.WriteCheckpoint(n.checkpointPath(), c); err != nil {
		n.log.Error("checkpoint", "step", step, "err", err)
		return
	}
	if final {
		n.log.Info("checkpoint written", "step", step, "path", n.checkpointPath())
		return
	}
	n.log.Debug("checkpoint written", "step", step)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
