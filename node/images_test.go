package node

import (
	"testing"

	"github.com/swarmtrain/swarmtrain/trainer"
)

// Augmentation is part of the run: on and off are two runs, and a run
// without it keeps the ID of builds before the field.
func TestAugmentChangesRunID(t *testing.T) {
	off := DefaultRunConfig()
	none := off
	none.Data.Augment = "none"
	on := off
	on.Data.Augment = "crop=4,flip"
	if off.ID() != none.ID() || off.ID() == on.ID() {
		t.Errorf("run IDs: off %s, none %s, on %s; want off = none != on", off.ID(), none.ID(), on.ID())
	}
	if err := on.Validate(); err != nil {
		t.Error(err)
	}
	// The default MNIST run's ID from before image folders and
	// augmentation: peers of older builds still match it.
	if id := off.ID(); id != "f45003c0f2ce19df331a70ff60c60ec6" {
		t.Errorf("default run ID %s changed", id)
	}
}

// An MNIST run records MNIST's preprocessing: what PyTorch needs to
// reproduce the node's accuracy from an export alone.
func TestMNISTPreprocess(t *testing.T) {
	cfg := Config{Run: DefaultRunConfig()}
	train, _, err := LoadData(cfg)
	if err != nil {
		t.Skipf("no MNIST: %v", err)
	}
	p := preprocessOf(cfg, train)
	if p == nil || p.Kind != "image" || p.Channels != 1 || p.Height != 28 || p.Width != 28 || !p.Flatten ||
		len(p.Mean) != 1 || p.Mean[0] != trainer.MNISTMean || p.Std[0] != trainer.MNISTStd || len(p.Labels) != 10 || p.Labels[9] != "9" || p.Resize != "" {
		t.Fatalf("MNIST preprocess %+v", p)
	}
}
