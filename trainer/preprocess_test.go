package trainer

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A checkpoint keeps the preprocessing it was given, field for field.
func TestCheckpointKeepsPreprocess(t *testing.T) {
	d := testPixels("img", 2, 3, 4, 4, 0)
	d.Labels, d.Resized = []string{"a", "b", "c"}, true
	p, err := ImagePreprocess(d, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Channels != 3 || p.Height != 4 || p.Mean[0] != 0.5 || p.Std[2] != 0.25 || p.Resize == "" || len(p.Labels) != 3 {
		t.Fatalf("%+v", p)
	}
	path := filepath.Join(t.TempDir(), "c.safetensors")
	c := Checkpoint{Step: 3, Tensors: []Tensor{{Name: "w", Shape: []int{2}}}, Params: []float32{1, 2}, Preprocess: p}
	if err := WriteCheckpoint(path, c); err != nil {
		t.Fatal(err)
	}
	back, err := ReadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Preprocess, p) {
		t.Errorf("read back %+v, want %+v", back.Preprocess, p)
	}
	tp := TextPreprocess([]byte("[PAD]\n[UNK]\n"), 16, []string{"neg", "pos"})
	for _, pp := range []*Preprocess{p, tp} {
		s := pp.PythonSnippet("m.safetensors")
		if !strings.Contains(s, `"m.safetensors"`) || !strings.Contains(s, "x = ") || !strings.Contains(s, "labels") {
			t.Errorf("snippet for %s:\n%s", pp.Kind, s)
		}
	}
	if _, err := ImagePreprocess(&Dataset{Name: "t", X: []float32{1}}, true); err == nil {
		t.Error("text rows gave an image preprocess")
	}
}
