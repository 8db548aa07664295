package node

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/trainer"
)

// DatasetImages is an image folder: --data DIR with one subfolder per
// class (see trainer.ScanImageFolder). The run names it by hash
// (data.files) and size (data.image_size); every peer needs its own copy.
const DatasetImages = "images"

// Image-folder constants every peer shares.
const (
	DefaultImageSize  = 32  // data.image_size when the run names none
	imageTestFraction = 0.1 // held out of each class when the folder has no test/
)

// IsImageFolder says whether dir looks like an image folder rather than
// MNIST: no MNIST files, and class subfolders of images.
func IsImageFolder(dir string) bool {
	if dir == "" {
		return false
	}
	if _, err := trainer.LoadMNISTFiles(dir); err == nil {
		return false
	}
	_, err := trainer.ScanImageFolder(dir)
	return err == nil
}

// PrepareImages readies an image-folder run before New: when the run
// is MNIST but --data is an image folder it becomes an images run; it
// sets data.files to the folder's hash and data.image_size to
// DefaultImageSize when unset. A run config that names another hash is
// refused: peers must train on the same images.
func PrepareImages(cfg *Config) error {
	d := &cfg.Run.Data
	if d.Dataset == DatasetMNIST && IsImageFolder(cfg.DataDir) {
		d.Dataset = DatasetImages
	}
	if d.Dataset != DatasetImages {
		return nil
	}
	if cfg.DataDir == "" {
		return fmt.Errorf("dataset images needs --data DIR (one subfolder of images per class)")
	}
	f, err := trainer.ScanImageFolder(cfg.DataDir)
	if err != nil {
		return err
	}
	sum, err := f.Hash()
	if err != nil {
		return err
	}
	if d.Files != "" && d.Files != sum {
		return fmt.Errorf("--data %s hashes to %s, the run names %s (data.files): peers must train on the same images", cfg.DataDir, sum, d.Files)
	}
	d.Files = sum
	if d.ImageSize == 0 {
		d.ImageSize = DefaultImageSize
	}
	return nil
}

// loadImages reads the run's image folder, checked against its hash.
func loadImages(cfg Config) (train, test *trainer.Dataset, meta *trainer.PixMeta, err error) {
	r := cfg.Run
	f, err := trainer.ScanImageFolder(cfg.DataDir)
	if err != nil {
		return nil, nil, nil, err
	}
	sum, err := f.Hash()
	if err != nil {
		return nil, nil, nil, err
	}
	if sum != r.Data.Files {
		return nil, nil, nil, fmt.Errorf("image folder %s has SHA-256 %s, the run names %s: peers must train on the same images", cfg.DataDir, sum, r.Data.Files)
	}
	opt := trainer.ImageOptions{Size: r.Data.ImageSize, TestFraction: imageTestFraction, Seed: r.Seed}
	return trainer.LoadImageFolder(f, opt, cfg.DataCache, sum)
}
