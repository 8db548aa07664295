package trainer

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"strings"
	"testing"
)

// idxBytes encodes an unsigned-byte IDX file.
func idxBytes(dims []int, data []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, idxUint8, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, uint32(d))
	}
	b.Write(data)
	return b.Bytes()
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func TestReadIDX(t *testing.T) {
	data := []byte{1, 2, 3, 4, 5, 6}
	for name, raw := range map[string][]byte{"plain": idxBytes([]int{3, 1, 2}, data), "gzip": gz(idxBytes([]int{3, 1, 2}, data))} {
		m, err := ReadIDX(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(m.Dims) != 3 || m.Dims[0] != 3 || m.Dims[1] != 1 || m.Dims[2] != 2 || !bytes.Equal(m.Data, data) {
			t.Fatalf("%s: got dims %v data %v", name, m.Dims, m.Data)
		}
	}
}

func TestReadIDXErrors(t *testing.T) {
	good := idxBytes([]int{2, 3}, []byte{1, 2, 3, 4, 5, 6})
	huge := idxBytes([]int{1 << 16, 1 << 16}, nil) // declares 4 GiB
	gzTrunc := gz(good)
	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"empty", "truncated magic", nil},
		{"short magic", "truncated magic", []byte{0, 0}},
		{"bad magic", "bad magic", []byte{1, 2, 8, 1, 0, 0, 0, 0}},
		{"float type", "unsupported element type 0x0d", []byte{0, 0, 0x0d, 1, 0, 0, 0, 0}},
		{"zero dims", "0 dimensions", []byte{0, 0, 8, 0}},
		{"many dims", "200 dimensions", []byte{0, 0, 8, 200}},
		{"short header", "truncated header", good[:9]},
		{"short data", "truncated data", good[:len(good)-1]},
		{"trailing", "trailing bytes", append(append([]byte{}, good...), 9)},
		{"huge", "exceeds", huge},
		{"bad gzip", "gzip", []byte{0x1f, 0x8b, 0, 0}},
		{"cut gzip", "idx:", gzTrunc[:len(gzTrunc)-6]},
	} {
		m, err := ReadIDX(bytes.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got (%v, %v), want error containing %q", tc.name, m, err, tc.want)
		}
	}
}

// FuzzReadIDX checks that no input panics or yields data inconsistent with
// its dims. Seeds live in testdata/fuzz/FuzzReadIDX.
func FuzzReadIDX(f *testing.F) {
	f.Add(idxBytes([]int{2, 2}, []byte{0, 1, 2, 3}))
	f.Add(gz(idxBytes([]int{1}, []byte{7})))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ReadIDX(bytes.NewReader(in))
		if err != nil {
			return
		}
		n := 1
		for _, d := range m.Dims {
			n *= d
		}
		if n != len(m.Data) || len(m.Dims) < 1 {
			t.Fatalf("dims %v but %d bytes", m.Dims, len(m.Data))
		}
	})
}
