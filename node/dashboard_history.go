package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
)

// Point is one logged step of the run: a row of <dir>/metrics.jsonl and a
// point of the dashboard's curves.
type Point struct {
	Seq  uint64  `json:"-"`    // position in this node's history (not stored)
	Step uint64  `json:"step"` // optimizer steps applied
	Time int64   `json:"t"`    // unix milliseconds
	Loss float64 `json:"loss"`
	// Acc is the accuracy on a fixed sample of the test set, when this
	// step was evaluated (nil otherwise: evaluation is paced).
	Acc           *float64 `json:"acc,omitempty"`
	SamplesPerSec float64  `json:"samples_per_sec"`
	// RoundSeconds is the mean duration of the averaging rounds that
	// completed since the previous point (0: none).
	RoundSeconds float64 `json:"round_seconds"`
	Rounds       int     `json:"rounds"`
	Failed       int     `json:"failed"`
	Syncs        int     `json:"syncs"`
	BytesIn      int64   `json:"bytes_in"`
	BytesOut     int64   `json:"bytes_out"`
	Peers        int     `json:"peers"` // live peers, self included
}

func (p Point) valid() error {
	for _, f := range []float64{p.Loss, p.SamplesPerSec, p.RoundSeconds} {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return fmt.Errorf("figure %v is not a finite non-negative number", f)
		}
	}
	if p.Acc != nil && !(*p.Acc >= 0 && *p.Acc <= 1) {
		return fmt.Errorf("accuracy %v outside [0, 1]", *p.Acc)
	}
	if p.Rounds < 0 || p.Failed < 0 || p.Syncs < 0 || p.BytesIn < 0 || p.BytesOut < 0 || p.Peers < 0 {
		return errors.New("negative count")
	}
	return nil
}

// history keeps a whole run in bounded memory: when the ring is full,
// every other point is dropped and points are logged half as often, so
// the curves keep their shape from the first step to the last at a
// coarser grain. It does no I/O and reads no clock.
type history struct {
	cap   int
	pts   []Point
	seq   uint64        // Seq of the newest point
	gen   uint64        // bumped by each thinning: readers start over
	every time.Duration // the least time between logged points; doubles at each thinning
	last  int64         // Time of the newest point
}

func newHistory(capacity int, every time.Duration) *history {
	return &history{cap: max(capacity, 2), every: every}
}

// due reports whether a point taken at now should be logged.
func (h *history) due(now time.Time) bool {
	return len(h.pts) == 0 || now.UnixMilli()-h.last >= h.every.Milliseconds()
}

// add logs p and reports whether older points were thinned out.
func (h *history) add(p Point) (thinned bool) {
	if len(h.pts) >= h.cap {
		kept := h.pts[:0]
		for i, q := range h.pts {
			if i%2 == 1 || i == len(h.pts)-1 {
				kept = append(kept, q)
			}
		}
		h.pts = kept
		h.gen++
		h.every *= 2
		thinned = true
	}
	h.seq++
	p.Seq = h.seq
	h.pts = append(h.pts, p)
	h.last = p.Time
	return thinned
}

// after returns the points newer than seq, and the generation they
// belong to: a reader whose generation differs asks again from zero.
func (h *history) after(seq uint64) ([]Point, uint64) {
	i := len(h.pts)
	for i > 0 && h.pts[i-1].Seq > seq {
		i--
	}
	return append([]Point{}, h.pts[i:]...), h.gen // [] not null in JSON
}

// Limits on reading back metrics.jsonl: a huge or hostile file costs at
// most maxHistoryFile of reading and the ring's memory.
const (
	historyCap     = 2048
	historyEvery   = time.Second
	maxHistoryFile = 32 << 20 // bytes read back, and the size at which the file is rewritten
	maxHistoryLine = 4 << 10
)

// loadHistory reads the tail of a metrics.jsonl written by an earlier
// run of this node into h. A corrupt or overlong line is skipped and
// counted; only the file's last maxHistoryFile bytes are read. A missing
// file is an empty history.
func loadHistory(path string, h *history) (skipped int, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	partial := false
	if off := fi.Size() - maxHistoryFile; off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return 0, err
		}
		partial = true // the first line is cut: not a row
	}
	r := bufio.NewReaderSize(io.LimitReader(f, maxHistoryFile), maxHistoryLine)
	for {
		line, isPrefix, err := r.ReadLine()
		if err == io.EOF {
			return skipped, nil
		}
		if err != nil {
			return skipped, err
		}
		if isPrefix { // overlong: skip to its end
			for isPrefix && err == nil {
				_, isPrefix, err = r.ReadLine()
			}
			if !partial {
				skipped++
			}
			partial = false
			continue
		}
		if partial {
			partial = false
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var p Point
		if err := json.Unmarshal(line, &p); err != nil || p.valid() != nil {
			skipped++
			continue
		}
		h.add(p) // thinning as it goes: a resumed run logs at the grain it had reached
	}
}

// historyFile appends points to metrics.jsonl, and rewrites it from the
// ring once it has grown past maxHistoryFile.
type historyFile struct {
	path string
	f    *os.File
	size int64
}

func openHistoryFile(path string) (*historyFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &historyFile{path: path, f: f, size: fi.Size()}, nil
}

func (w *historyFile) append(p Point, h *history) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if w.size+int64(len(b))+1 > maxHistoryFile {
		return w.rewrite(h)
	}
	n, err := w.f.Write(append(b, '\n'))
	w.size += int64(n)
	return err
}

// rewrite replaces the file with the ring's points (p is among them).
func (w *historyFile) rewrite(h *history) error {
	var buf bytes.Buffer
	for _, p := range h.pts {
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		buf.Write(append(b, '\n'))
	}
	if err := atomicfile.Write(w.path, buf.Bytes()); err != nil {
		return err
	}
	w.f.Close()
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	w.f, w.size = f, int64(buf.Len())
	return nil
}

func (w *historyFile) Close() error { return w.f.Close() }
