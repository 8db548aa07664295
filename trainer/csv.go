package trainer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Caps for CSV input, checked before each allocation grows.
const (
	maxCSVLine   = 1 << 20 // bytes per line
	maxCSVValues = 1 << 30 // pixel values in one file (the IDX cap)
)

// readCSV decodes lines of "label,p0,...,pD-1" with integer pixels in 0..255
// and labels in 0..classes-1. A first line whose label field is not a number
// is taken as a header and skipped; blank lines are ignored; CRLF is accepted.
// Every row must have the width of the first. Errors carry the line number.
func readCSV(r io.Reader, classes int) (pix, labels []byte, dim int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxCSVLine)
	dim = -1
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimRight(sc.Bytes(), "\r")
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if line == 1 && !isDigit(bytes.TrimSpace(b)[0]) {
			continue // header
		}
		n := 0 // fields in this row
		for len(b) > 0 || n == 0 {
			var field []byte
			if i := bytes.IndexByte(b, ','); i >= 0 {
				field, b = b[:i], b[i+1:]
				if len(b) == 0 {
					return nil, nil, 0, fmt.Errorf("csv: line %d: trailing comma", line)
				}
			} else {
				field, b = b, nil
			}
			v, ok := parseByte(bytes.TrimSpace(field))
			if !ok {
				return nil, nil, 0, fmt.Errorf("csv: line %d field %d: %q is not an integer in 0..255", line, n+1, truncate(field, 16))
			}
			if n == 0 {
				if int(v) >= classes {
					return nil, nil, 0, fmt.Errorf("csv: line %d: label %d out of range 0..%d", line, v, classes-1)
				}
				labels = append(labels, v)
			} else {
				if dim >= 0 && n > dim {
					return nil, nil, 0, fmt.Errorf("csv: line %d: more than %d pixel fields (the first row's width)", line, dim)
				}
				if len(pix) >= maxCSVValues {
					return nil, nil, 0, fmt.Errorf("csv: more than %d pixel values", maxCSVValues)
				}
				pix = append(pix, v)
			}
			n++
		}
		switch {
		case dim < 0 && n < 2:
			return nil, nil, 0, fmt.Errorf("csv: line %d: no pixel fields after the label", line)
		case dim < 0:
			dim = n - 1
		case n-1 != dim:
			return nil, nil, 0, fmt.Errorf("csv: line %d: %d pixel fields, want %d (the first row's width)", line, n-1, dim)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, 0, fmt.Errorf("csv: line %d longer than %d bytes", line+1, maxCSVLine)
		}
		return nil, nil, 0, fmt.Errorf("csv: after line %d: %w", line, err)
	}
	if len(labels) == 0 {
		return nil, nil, 0, errors.New("csv: no data rows")
	}
	return pix, labels, dim, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseByte parses a decimal integer in 0..255 (leading zeros allowed).
func parseByte(f []byte) (byte, bool) {
	if len(f) == 0 {
		return 0, false
	}
	v := 0
	for _, c := range f {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
		if v > 255 {
			return 0, false
		}
	}
	return byte(v), true
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
