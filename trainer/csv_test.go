package trainer

import (
	"bytes"
	"strings"
	"testing"
)

func TestReadCSV(t *testing.T) {
	in := "label,p0,p1,p2\r\n3,0,128,255\r\n\n9, 1 ,2,003\n"
	pix, lbl, dim, err := readCSV(strings.NewReader(in), 10)
	if err != nil {
		t.Fatal(err)
	}
	if dim != 3 || !bytes.Equal(lbl, []byte{3, 9}) || !bytes.Equal(pix, []byte{0, 128, 255, 1, 2, 3}) {
		t.Fatalf("got dim %d labels %v pixels %v", dim, lbl, pix)
	}
	// No header.
	if _, lbl, _, err := readCSV(strings.NewReader("0,1\n1,2"), 10); err != nil || len(lbl) != 2 {
		t.Fatalf("headerless: %v %v", lbl, err)
	}
}

func TestReadCSVErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "no data rows"},
		{"label,a\n", "no data rows"},
		{"3\n", "line 1: no pixel fields"},
		{"3,1,2\n4,1\n", "line 2: 1 pixel fields, want 2"},
		{"3,1,2\n4,1,2,3\n", "line 2: more than 2 pixel fields"},
		{"3,1,256\n", "line 1 field 3"},
		{"3,1,-1\n", "line 1 field 3"},
		{"3,1,x\n", "not an integer"},
		{"3,1,\n", "trailing comma"},
		{"10,1,2\n", "label 10 out of range"},
		{"3,1,2\nlabel,1,2\n", "line 2 field 1"},
		{"3," + strings.Repeat("1,", maxCSVLine) + "1\n", "longer than"},
	} {
		_, _, _, err := readCSV(strings.NewReader(tc.in), 10)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: got %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

// FuzzReadCSV checks that no input panics and that accepted input is
// consistent: dim pixels per label, labels in range.
func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("label,a,b\n1,0,255\n2,3,4\n"))
	f.Add([]byte("3,1,2\r\n4,1\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		pix, lbl, dim, err := readCSV(bytes.NewReader(in), 10)
		if err != nil {
			return
		}
		if dim < 1 || len(lbl) < 1 || len(pix) != len(lbl)*dim {
			t.Fatalf("dim %d, %d labels, %d pixels", dim, len(lbl), len(pix))
		}
		for _, l := range lbl {
			if l >= 10 {
				t.Fatalf("label %d", l)
			}
		}
	})
}
