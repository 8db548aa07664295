package trainer

import (
	"fmt"
	"image"
	_ "image/gif" // decoders register themselves with image.Decode
	_ "image/jpeg"
	_ "image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/image/draw"
)

// Image folder limits, checked before decoding allocates.
const (
	MaxImageSize    = 512      // --image-size, pixels a side
	maxImageFiles   = 1 << 20  // images in one folder
	maxImageFile    = 64 << 20 // bytes of one image file
	maxImagePixels  = 1 << 26  // width×height an image may declare
	maxImageClasses = 256      // labels are uint8
)

// streamSplit tags the held-out split's PCG stream.
const streamSplit = 0x73706c6974 // "split"

// ImageOptions says how LoadImageFolder prepares the images.
type ImageOptions struct {
	// Size is the side of the square the model sees: each image's shorter
	// side is scaled to Size (Catmull-Rom) and the centre cropped square.
	Size int
	// TestFraction of each class is held out, drawn with Seed, when the
	// folder has no test/ subfolder.
	TestFraction float64
	Seed         uint64
}

func (o ImageOptions) key() string {
	return fmt.Sprintf("size=%d test=%g seed=%d", o.Size, o.TestFraction, o.Seed)
}

// ImageFolder is a folder of labelled images: one subfolder per class
// (train/ and test/ may each hold the class folders instead, or test/
// beside them). Files are PNG, JPEG or GIF by extension; other files and
// hidden entries are skipped. Classes and files are in name order.
type ImageFolder struct {
	Dir         string
	Labels      []string
	Train, Test []ImageFile // Test empty: split by ImageOptions
}

// ImageFile is one image and its class index.
type ImageFile struct {
	Path  string
	Label int
}

// ScanImageFolder lists the images in dir.
func ScanImageFolder(dir string) (*ImageFolder, error) {
	f := &ImageFolder{Dir: dir}
	trainDir, testDir := dir, ""
	if isDir(filepath.Join(dir, "test")) {
		testDir = filepath.Join(dir, "test")
		if isDir(filepath.Join(dir, "train")) {
			trainDir = filepath.Join(dir, "train")
		}
	}
	classes, err := subdirs(trainDir, "test", "train")
	if err != nil {
		return nil, err
	}
	if len(classes) < 2 || len(classes) > maxImageClasses {
		return nil, fmt.Errorf("image folder %s: %d class folders, want 2..%d (one subfolder per class)", trainDir, len(classes), maxImageClasses)
	}
	f.Labels = classes
	for i, c := range classes {
		files, err := imageFiles(filepath.Join(trainDir, c))
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("image folder %s: class %q has no PNG, JPEG or GIF files", trainDir, c)
		}
		for _, p := range files {
			f.Train = append(f.Train, ImageFile{p, i})
		}
	}
	if testDir != "" {
		tc, err := subdirs(testDir)
		if err != nil {
			return nil, err
		}
		for _, c := range tc {
			i := slices.Index(classes, c)
			if i < 0 {
				return nil, fmt.Errorf("image folder %s: test class %q is not among the training classes %v", testDir, c, classes)
			}
			files, err := imageFiles(filepath.Join(testDir, c))
			if err != nil {
				return nil, err
			}
			for _, p := range files {
				f.Test = append(f.Test, ImageFile{p, i})
			}
		}
		if len(f.Test) == 0 {
			return nil, fmt.Errorf("image folder %s: no test images", testDir)
		}
	}
	if len(f.Train)+len(f.Test) > maxImageFiles {
		return nil, fmt.Errorf("image folder %s: more than %d images", dir, maxImageFiles)
	}
	return f, nil
}

// Paths lists every image, training then test, in order: what Hash reads.
func (f *ImageFolder) Paths() []string {
	var ps []string
	for _, s := range [][]ImageFile{f.Train, f.Test} {
		for _, im := range s {
			ps = append(ps, im.Path)
		}
	}
	return ps
}

// Hash is the SHA-256 of the folder: every image's path below Dir (its
// class is in it), length and bytes. Peers with equal hashes train on
// the same data.
func (f *ImageFolder) Hash() (string, error) { return SourceHash(f.Dir, f.Paths()) }

// LoadImageFolder decodes the images of f into a training and a test set
// of opt.Size×opt.Size images, through a pixel file in cacheDir (see
// CachedPixels; key is f's Hash, "" computes it). Images are RGB unless
// every one is grey. The normalisation is the training pixels' own
// per-channel mean and std, returned in meta with the class names.
func LoadImageFolder(f *ImageFolder, opt ImageOptions, cacheDir, key string) (train, test *Dataset, meta *PixMeta, err error) {
	if opt.Size < 4 || opt.Size > MaxImageSize {
		return nil, nil, nil, fmt.Errorf("image size %d, want 4..%d", opt.Size, MaxImageSize)
	}
	if len(f.Test) == 0 && !(opt.TestFraction > 0 && opt.TestFraction < 1) {
		return nil, nil, nil, fmt.Errorf("image folder %s: no test/ folder and held-out fraction %g, want in (0,1)", f.Dir, opt.TestFraction)
	}
	if key == "" && cacheDir != "" {
		if key, err = f.Hash(); err != nil {
			return nil, nil, nil, err
		}
	}
	sets, meta, err := CachedPixels(cacheDir, "images", key, opt.key(), func() (PixMeta, []*Dataset, error) {
		return decodeImageFolder(f, opt)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if len(sets) != 2 || len(meta.Labels) != len(f.Labels) {
		return nil, nil, nil, fmt.Errorf("image folder %s: cached pixel file has %d sets and %d labels, want 2 and %d", f.Dir, len(sets), len(meta.Labels), len(f.Labels))
	}
	for _, s := range sets {
		s.Labels, s.Resized = meta.Labels, true
	}
	return sets[0], sets[1], meta, nil
}

func decodeImageFolder(f *ImageFolder, opt ImageOptions) (PixMeta, []*Dataset, error) {
	trainFiles, testFiles := f.Train, f.Test
	if len(testFiles) == 0 {
		trainFiles, testFiles = splitImages(f.Train, len(f.Labels), opt)
	}
	s := opt.Size
	plane := s * s
	grey := true
	decode := func(files []ImageFile) ([]uint8, []uint8, error) {
		pix := make([]uint8, 0, len(files)*3*plane)
		y := make([]uint8, len(files))
		dst := image.NewRGBA(image.Rect(0, 0, s, s))
		for i, im := range files {
			if err := readImage(dst, im.Path); err != nil {
				return nil, nil, err
			}
			n := len(pix)
			pix = pix[:n+3*plane]
			r, g, b := pix[n:n+plane], pix[n+plane:n+2*plane], pix[n+2*plane:n+3*plane]
			for k := range plane {
				r[k], g[k], b[k] = dst.Pix[4*k], dst.Pix[4*k+1], dst.Pix[4*k+2]
				grey = grey && r[k] == g[k] && g[k] == b[k]
			}
			y[i] = uint8(im.Label)
		}
		return pix, y, nil
	}
	trainPix, trainY, err := decode(trainFiles)
	if err != nil {
		return PixMeta{}, nil, err
	}
	testPix, testY, err := decode(testFiles)
	if err != nil {
		return PixMeta{}, nil, err
	}
	ch := 3
	if grey { // keep one plane of three
		ch = 1
		trainPix, testPix = firstPlane(trainPix, plane), firstPlane(testPix, plane)
	}
	mean, std := StatsOf(trainPix, ch*plane, ch)
	norm := NewNorm(mean, std)
	shape := []int{ch, s, s}
	mk := func(name string, pix, y []uint8) *Dataset {
		return &Dataset{Name: name, Pix: pix, Y: y, Norm: norm, N: len(y), Dim: ch * plane, Shape: shape, Classes: len(f.Labels)}
	}
	base := filepath.Base(f.Dir)
	return PixMeta{Mean: mean, Std: std, Labels: f.Labels}, []*Dataset{mk(base+"-train", trainPix, trainY), mk(base+"-test", testPix, testY)}, nil
}

// splitImages holds out ceil(fraction·n) images of each class with n >= 2,
// drawn by a PCG seeded with opt.Seed, so every peer holds out the same.
func splitImages(files []ImageFile, classes int, opt ImageOptions) (train, test []ImageFile) {
	byClass := make([][]ImageFile, classes)
	for _, im := range files {
		byClass[im.Label] = append(byClass[im.Label], im)
	}
	for c, fs := range byClass {
		k := 0
		if len(fs) >= 2 {
			k = min(len(fs)-1, max(1, int(float64(len(fs))*opt.TestFraction+0.999999)))
		}
		p := perm(len(fs), opt.Seed^uint64(c), streamSplit)
		out := make([]bool, len(fs))
		for _, i := range p[:k] {
			out[i] = true
		}
		for i, im := range fs {
			if out[i] {
				test = append(test, im)
			} else {
				train = append(train, im)
			}
		}
	}
	return train, test
}

func firstPlane(pix []uint8, plane int) []uint8 {
	out := make([]uint8, 0, len(pix)/3)
	for lo := 0; lo < len(pix); lo += 3 * plane {
		out = append(out, pix[lo:lo+plane]...)
	}
	return out
}

// readImage decodes the image at path into dst: the shorter side scaled
// to dst's, the centre cropped, over black where it is transparent. The
// declared size is checked before the pixels are decoded.
func readImage(dst *image.RGBA, path string) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	if fi, err := fh.Stat(); err != nil {
		return err
	} else if fi.Size() > maxImageFile {
		return fmt.Errorf("image %s: %d bytes, more than %d", path, fi.Size(), maxImageFile)
	}
	cfg, _, err := image.DecodeConfig(fh)
	if err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || int64(cfg.Width)*int64(cfg.Height) > maxImagePixels {
		return fmt.Errorf("image %s: %d×%d pixels, want at most %d", path, cfg.Width, cfg.Height, maxImagePixels)
	}
	if _, err := fh.Seek(0, 0); err != nil {
		return err
	}
	src, _, err := image.Decode(fh)
	if err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	b := src.Bounds()
	side := min(b.Dx(), b.Dy())
	crop := image.Rect(0, 0, side, side).Add(b.Min).Add(image.Pt((b.Dx()-side)/2, (b.Dy()-side)/2))
	clear(dst.Pix)
	if side == dst.Rect.Dx() {
		draw.Draw(dst, dst.Rect, src, crop.Min, draw.Over)
	} else {
		draw.CatmullRom.Scale(dst, dst.Rect, src, crop, draw.Over, nil)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// subdirs lists the visible subfolders of dir in name order, less skip.
func subdirs(dir string, skip ...string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("image folder: %w", err)
	}
	var out []string
	for _, e := range es {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && !slices.Contains(skip, e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// imageFiles lists the PNG, JPEG and GIF files of dir in name order.
func imageFiles(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("image folder: %w", err)
	}
	var out []string
	for _, e := range es {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".png", ".jpg", ".jpeg", ".gif":
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	return out, nil
}
