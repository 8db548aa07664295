package node

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/swarmtrain/swarmtrain/trainer"
)

// FileSHA256 is the hex SHA-256 of a file: the run config names the
// checkpoint a run starts from by it, so every peer starts from the same
// weights or is refused.
func FileSHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return sha256Hex(b), nil
}

// sha256Hex is how the run config names a file's bytes.
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// initFrom replaces the seeded weights by a checkpoint's (transfer
// learning: a fresh optimizer, step 0), tensor by tensor where the names
// match: a new head keeps its seeded initialisation. The file must be the
// one the run config names.
func (n *Node) initFrom(path string) error {
	c, b, err := trainer.ReadCheckpointBytes(path) // read once: what is hashed is what is loaded
	if err != nil {
		return fmt.Errorf("--init-from: %w", err)
	}
	if sum := sha256Hex(b); sum != n.cfg.Run.Model.InitFrom {
		return fmt.Errorf("--init-from %s has SHA-256 %s, the run names %s", path, sum, n.cfg.Run.Model.InitFrom)
	}
	p := make([]float32, len(n.rep.params))
	n.local.model.ReadParams(p)
	fresh, err := c.Transfer(p, n.local.model.Tensors())
	if err != nil {
		return fmt.Errorf("--init-from %s: %w", path, err)
	}
	if err := n.local.model.WriteParams(p); err != nil {
		return fmt.Errorf("--init-from %s: %w", path, err)
	}
	n.mu.Lock()
	copy(n.rep.params, p)
	n.commitLocked(n.rep.step, nil)
	n.mu.Unlock()
	n.log.Info("weights from checkpoint", "path", path, "its_step", c.Step, "its_run", c.RunID, "freshly_initialised", fresh)
	return nil
}

// frozenRanges are the [lo, hi) ranges of the flat vector that the run
// freezes; unknown names are an error, so a typo does not train silently.
func frozenRanges(tensors []trainer.Tensor, freeze []string) ([][2]int, error) {
	var out [][2]int
	for _, f := range freeze {
		off, hit := 0, false
		for _, t := range tensors {
			if t.Name == f || strings.HasPrefix(t.Name, f) {
				out = append(out, [2]int{off, off + t.Size()})
				hit = true
			}
			off += t.Size()
		}
		if !hit {
			return nil, fmt.Errorf("--freeze %q matches no tensor of the model", f)
		}
	}
	return out, nil
}
