package trainer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tinyIDXDir writes a 3-image train set and a 2-image test set of 2×2 pixels.
func tinyIDXDir(t *testing.T, gzipped bool) string {
	dir := t.TempDir()
	sfx, enc := "", func(b []byte) []byte { return b }
	if gzipped {
		sfx, enc = ".gz", gz
	}
	writeFile(t, dir, "train-images-idx3-ubyte"+sfx, enc(idxBytes([]int{3, 2, 2}, []byte{0, 255, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2})))
	writeFile(t, dir, "train-labels-idx1-ubyte"+sfx, enc(idxBytes([]int{3}, []byte{0, 9, 5})))
	writeFile(t, dir, "t10k-images-idx3-ubyte"+sfx, enc(idxBytes([]int{2, 2, 2}, []byte{3, 3, 3, 3, 4, 4, 4, 4})))
	writeFile(t, dir, "t10k-labels-idx1-ubyte"+sfx, enc(idxBytes([]int{2}, []byte{1, 2})))
	return dir
}

func TestLoadMNISTIDX(t *testing.T) {
	for _, gzipped := range []bool{false, true} {
		train, test, err := LoadMNIST(tinyIDXDir(t, gzipped))
		if err != nil {
			t.Fatal(err)
		}
		if train.N != 3 || train.Dim != 4 || test.N != 2 || test.Dim != 4 || train.Classes != 10 {
			t.Fatalf("shapes: train %d×%d test %d×%d", train.N, train.Dim, test.N, test.Dim)
		}
		if err := train.Validate(); err != nil {
			t.Fatal(err)
		}
		if train.Y[1] != 9 || test.Y[1] != 2 {
			t.Fatalf("labels %v %v", train.Y, test.Y)
		}
		want0 := float32((0 - MNISTMean) / MNISTStd)
		want255 := float32((1 - MNISTMean) / MNISTStd)
		x := train.Rows(0, 1, make([]float32, train.Dim))
		if x[0] != want0 || x[1] != want255 {
			t.Fatalf("normalisation: got %v %v, want %v %v", x[0], x[1], want0, want255)
		}
	}
}

func TestLoadMNISTCSV(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "mnist_train.csv", []byte("label,a,b\n1,0,255\n2,3,4\n"))
	writeFile(t, dir, "mnist_test.csv", gz([]byte("7,9,9\n")))
	if err := os.Rename(filepath.Join(dir, "mnist_test.csv"), filepath.Join(dir, "mnist_test.csv.gz")); err != nil {
		t.Fatal(err)
	}
	train, test, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 2 || train.Dim != 2 || test.N != 1 || test.Y[0] != 7 {
		t.Fatalf("train %+v test %+v", train, test)
	}
}

func TestLoadMNISTErrors(t *testing.T) {
	replace := func(name string, b []byte) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { writeFile(t, dir, name, b) }
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string // all must appear in the error
	}{
		{"garbage", replace("train-images-idx3-ubyte", []byte("hello, world")), []string{"train-images-idx3-ubyte", "bad magic"}},
		{"truncated", replace("t10k-images-idx3-ubyte", idxBytes([]int{2, 2, 2}, []byte{1, 2, 3})), []string{"t10k-images-idx3-ubyte", "truncated"}},
		{"2-D images", replace("train-images-idx3-ubyte", idxBytes([]int{3, 4}, make([]byte, 12))), []string{"train-images-idx3-ubyte", "wrong dims"}},
		{"count", replace("train-labels-idx1-ubyte", idxBytes([]int{2}, []byte{0, 1})), []string{"train-labels-idx1-ubyte", "count mismatch"}},
		{"label", replace("t10k-labels-idx1-ubyte", idxBytes([]int{2}, []byte{1, 10})), []string{"t10k-labels-idx1-ubyte", "label 10"}},
		{"test width", replace("t10k-images-idx3-ubyte", idxBytes([]int{2, 1, 3}, make([]byte, 6))), []string{"t10k-images-idx3-ubyte", "wrong dims"}},
		{"missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "t10k-labels-idx1-ubyte")) }, []string{"not t10k-labels-idx1-ubyte"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tinyIDXDir(t, false)
			tc.setup(t, dir)
			_, _, err := LoadMNIST(dir)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("got %v, want error containing %q", err, w)
				}
			}
		})
	}
	if _, _, err := LoadMNIST(t.TempDir()); err == nil || !strings.Contains(err.Error(), "mnist_train.csv") {
		t.Errorf("empty dir: %v", err)
	}
	if _, _, err := LoadMNIST(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("missing dir accepted")
	}
	dir := t.TempDir()
	writeFile(t, dir, "mnist_train.csv", []byte("1,2\n"))
	writeFile(t, dir, "mnist_test.csv", []byte("1,2,3\n"))
	if _, _, err := LoadMNIST(dir); err == nil || !strings.Contains(err.Error(), "wrong dims") {
		t.Errorf("csv width mismatch: %v", err)
	}
}

func TestLoadMNISTReal(t *testing.T) {
	train, test := realMNIST(t)
	if train.N != 60000 || test.N != 10000 || train.Dim != 784 || test.Dim != 784 {
		t.Fatalf("train %d×%d, test %d×%d", train.N, train.Dim, test.N, test.Dim)
	}
	for _, d := range []*Dataset{train, test} {
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		var counts [10]int
		for _, y := range d.Y {
			counts[y]++
		}
		for c, n := range counts {
			if n < d.N/20 {
				t.Errorf("%s: class %d has only %d rows", d.Name, c, n)
			}
		}
	}
}

func TestMNISTDirHelpers(t *testing.T) {
	if got := dotted("t10k-labels-idx1-ubyte"); got != "t10k-labels.idx1-ubyte" {
		t.Errorf("dotted: %s", got)
	}
	dir, err := MNISTDir()
	if err != nil {
		t.Fatal(err)
	}
	if !hasMNIST(dir) {
		t.Fatalf("MNISTDir %s has no data", dir)
	}
	// With an empty module cache and no go command, the error says what to do.
	t.Setenv("GOMODCACHE", t.TempDir())
	t.Setenv("PATH", "")
	if _, err := MNISTDir(); err == nil || !strings.Contains(err.Error(), "--data DIR") {
		t.Errorf("without a module cache: %v", err)
	}
}
