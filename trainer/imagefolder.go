package trainer

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"image"
	_ "image/gif" // decoders register themselves with image.Decode
	_ "image/jpeg"
	_ "image/png"
	"io"
	"math"
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

// Stream tags of the held-out split and of the training rows' order.
const (
	streamSplit = 0x73706c6974 // "split"
	streamRows  = 0x726f7773   // "rows"
)

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

// key names the decoding in the cache file's name. "rows=seeded": the
// training rows are stored in a seeded order, which peers must share, so
// a file of the class-by-class layout of earlier builds is not reused.
func (o ImageOptions) key() string {
	return fmt.Sprintf("size=%d test=%g seed=%d rows=seeded", o.Size, o.TestFraction, o.Seed)
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
	sets, meta, err := CachedPixelFile(cacheDir, "images", key, opt.key(), func(path string) error {
		return writeImageFolder(path, f, opt)
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

// writeImageFolder decodes the images of f into a pixel file at path,
// image by image: a row at a time is in memory, never the decoded set.
// The rows go to a temporary file beside path as RGB; whether every
// image was grey (one channel) is known only at the end, so the
// checksums and sums of both layouts are kept as they go, and the pixel
// file is then written from the temporary file, one plane of three when
// grey. Failures to write are cacheWriteErrors; a bad image is not.
func writeImageFolder(path string, f *ImageFolder, opt ImageOptions) (err error) {
	trainFiles, testFiles := f.Train, f.Test
	if len(testFiles) == 0 {
		trainFiles, testFiles = splitImages(f.Train, len(f.Labels), opt)
	}
	// The folder lists its images class by class; an epoch reads the rows
	// in blocks (blocks.go), so the training rows are stored in an order
	// drawn with the seed, and a block holds many classes.
	shuffled := make([]ImageFile, len(trainFiles))
	for i, j := range perm(len(trainFiles), opt.Seed, streamRows) {
		shuffled[i] = trainFiles[j]
	}
	trainFiles = shuffled
	s := opt.Size
	plane := s * s
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return cacheWriteError{err}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".rgb*")
	if err != nil {
		return cacheWriteError{err}
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	grey := true
	var sums pixSums
	row := make([]uint8, 3*plane)
	dst := image.NewRGBA(image.Rect(0, 0, s, s))
	type set struct {
		y        []uint8
		rgb, one uint32 // CRC-32C of labels and rows, three planes or one
	}
	decode := func(files []ImageFile, stats bool) (set, error) {
		st := set{y: make([]uint8, len(files))}
		for i, im := range files {
			st.y[i] = uint8(im.Label)
		}
		st.rgb = crc32.Checksum(st.y, castagnoli)
		st.one = st.rgb
		for _, im := range files {
			if err := readImage(dst, im.Path); err != nil {
				return st, err
			}
			r, g, b := row[:plane], row[plane:2*plane], row[2*plane:]
			for k := range plane {
				r[k], g[k], b[k] = dst.Pix[4*k], dst.Pix[4*k+1], dst.Pix[4*k+2]
				grey = grey && r[k] == g[k] && g[k] == b[k]
			}
			st.rgb = crc32.Update(st.rgb, castagnoli, row)
			st.one = crc32.Update(st.one, castagnoli, r)
			if stats {
				sums.add(row, plane)
			}
			if _, err := w.Write(row); err != nil {
				return st, cacheWriteError{err}
			}
		}
		return st, nil
	}
	train, err := decode(trainFiles, true)
	if err != nil {
		return err
	}
	test, err := decode(testFiles, false)
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return cacheWriteError{err}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return cacheWriteError{err}
	}
	ch := 3
	if grey {
		ch = 1
	}
	mean, std := sums.stats(ch, plane)
	base := filepath.Base(f.Dir)
	sets := []set{train, test}
	hs := make([]pixSet, 2)
	for i, name := range []string{base + "-train", base + "-test"} {
		hs[i] = pixSet{Name: name, N: len(sets[i].y), Dim: ch * plane, Shape: []int{ch, s, s}, Classes: len(f.Labels), CRC: sets[i].rgb}
		if grey {
			hs[i].CRC = sets[i].one
		}
	}
	r := bufio.NewReaderSize(tmp, 1<<20)
	err = writePixelFile(path, PixMeta{Mean: mean, Std: std, Labels: f.Labels}, hs, func(w io.Writer, i int) error {
		if _, err := w.Write(sets[i].y); err != nil {
			return err
		}
		for range hs[i].N {
			if _, err := io.ReadFull(r, row); err != nil {
				return err
			}
			if _, err := w.Write(row[:hs[i].Dim]); err != nil { // one plane of three when grey
				return err
			}
		}
		return nil
	})
	if err != nil {
		return cacheWriteError{err}
	}
	return nil
}

// pixSums accumulates the training pixels' per-channel sums as rows of
// three planes go by, so the mean and std need no copy of the set (the
// integer sums make them exact and order-free, as StatsOf's).
type pixSums struct {
	s, s2 [3]uint64
	rows  int
}

func (p *pixSums) add(row []uint8, plane int) {
	for c := range 3 {
		for _, v := range row[c*plane : (c+1)*plane] {
			p.s[c] += uint64(v)
			p.s2[c] += uint64(v) * uint64(v)
		}
	}
	p.rows++
}

// stats is StatsOf's mean and std of the first channels planes.
func (p *pixSums) stats(channels, plane int) (mean, std []float64) {
	mean, std = make([]float64, channels), make([]float64, channels)
	count := float64(p.rows * plane)
	for c := range channels {
		if count == 0 {
			mean[c], std[c] = 0, 1
			continue
		}
		m := float64(p.s[c]) / count / 255
		v := float64(p.s2[c])/count/(255*255) - m*m
		mean[c], std[c] = m, 1
		if v > 1e-12 {
			std[c] = math.Sqrt(v)
		}
	}
	return mean, std
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
