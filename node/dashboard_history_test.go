package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pointAt(step uint64) Point {
	return Point{Step: step, Time: int64(step) * 1000, Loss: 1 / float64(step+1)}
}

// A full ring thins to every other point and logs half as often: the
// first and last steps stay, memory stays at the cap.
func TestHistoryThins(t *testing.T) {
	h := newHistory(8, time.Second)
	gen0 := h.gen
	for s := uint64(1); s <= 20; s++ {
		h.add(pointAt(s))
		if len(h.pts) > 8 {
			t.Fatalf("%d points in a ring of 8", len(h.pts))
		}
	}
	if h.gen == gen0 || h.every <= time.Second {
		t.Fatalf("no thinning: gen %d, every %v", h.gen, h.every)
	}
	if last := h.pts[len(h.pts)-1].Step; last != 20 {
		t.Fatalf("newest point at step %d, want 20", last)
	}
	pts, gen := h.after(0)
	if len(pts) != len(h.pts) || gen != h.gen {
		t.Fatalf("after(0) gave %d points of gen %d", len(pts), gen)
	}
	pts, _ = h.after(h.seq - 2)
	if len(pts) != 2 || pts[1].Seq != h.seq {
		t.Fatalf("after(seq-2) gave %+v", pts)
	}
	if pts, _ := h.after(h.seq); pts == nil || len(pts) != 0 {
		t.Fatalf("after(seq) gave %#v, want an empty list (JSON [], not null: the page appends it)", pts)
	}
}

func TestHistoryDue(t *testing.T) {
	h := newHistory(8, time.Second)
	t0 := time.UnixMilli(5000)
	if !h.due(t0) {
		t.Fatal("an empty history is not due")
	}
	h.add(Point{Step: 1, Time: t0.UnixMilli()})
	if h.due(t0.Add(500*time.Millisecond)) || !h.due(t0.Add(time.Second)) {
		t.Fatal("points not paced by every")
	}
}

// metrics.jsonl is read back across a restart; corrupt, hostile and
// overlong lines are skipped and counted, never fatal.
func TestHistoryFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), HistoryFile)
	h := newHistory(historyCap, historyEvery)
	w, err := openHistoryFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for s := uint64(1); s <= 5; s++ {
		p := pointAt(s)
		h.add(p)
		if err := w.append(p, h); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintln(f, `{"step":6,"t":6000,"loss":`)                                                     // truncated by a crash
	fmt.Fprintln(f, `{"step":7,"t":7000,"loss":-1}`)                                                  // impossible figure
	fmt.Fprintln(f, `{"step":8,"t":8000,"loss":0.5,"acc":7}`)                                         // accuracy out of range
	fmt.Fprintln(f, `{"step":9,"t":9000,"loss":0.5,"x":"`+strings.Repeat("a", 2*maxHistoryLine)+`"}`) // overlong
	fmt.Fprintln(f, "")
	fmt.Fprintln(f, `{"step":10,"t":10000,"loss":0.25}`)
	f.Close()

	back := newHistory(historyCap, historyEvery)
	skipped, err := loadHistory(path, back)
	if err != nil {
		t.Fatal(err)
	}
	if skipped != 4 {
		t.Errorf("skipped %d lines, want 4", skipped)
	}
	var steps []uint64
	for _, p := range back.pts {
		steps = append(steps, p.Step)
	}
	if fmt.Sprint(steps) != "[1 2 3 4 5 10]" {
		t.Fatalf("read back steps %v", steps)
	}
	if n, err := loadHistory(filepath.Join(t.TempDir(), "none"), newHistory(4, time.Second)); n != 0 || err != nil {
		t.Fatalf("a missing file: %d, %v", n, err)
	}
}

// A file larger than maxHistoryFile costs only its tail: the history
// holds at most the ring, and the cut first line is not a corrupt row.
func TestHistoryFileHuge(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a file of maxHistoryFile")
	}
	path := filepath.Join(t.TempDir(), HistoryFile)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	junk := strings.Repeat("z", 1<<20) // a megabyte without a newline
	for range maxHistoryFile/len(junk) + 2 {
		f.WriteString(junk)
	}
	f.WriteString("\n")
	for s := 1; s <= 3*historyCap; s++ {
		fmt.Fprintf(f, `{"step":%d,"t":%d,"loss":0.5}`+"\n", s, s*1000)
	}
	f.Close()
	h := newHistory(historyCap, historyEvery)
	skipped, err := loadHistory(path, h)
	if err != nil {
		t.Fatal(err)
	}
	if skipped != 0 || len(h.pts) > historyCap || h.pts[len(h.pts)-1].Step != 3*historyCap {
		t.Fatalf("skipped %d, kept %d points, newest %d", skipped, len(h.pts), h.pts[len(h.pts)-1].Step)
	}

	// Appending past the cap rewrites the file from the ring.
	w, err := openHistoryFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p := pointAt(3*historyCap + 1)
	h.add(p)
	if err := w.append(p, h); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() > 1<<20 {
		t.Fatalf("file still %d bytes after the rewrite", fi.Size())
	}
	back := newHistory(historyCap, historyEvery)
	if _, err := loadHistory(path, back); err != nil || back.pts[len(back.pts)-1].Step != p.Step {
		t.Fatalf("rewritten file reads back wrong: %v", err)
	}
}
