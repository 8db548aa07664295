package trainer

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// mappedRss is the resident size, in bytes, of the mapping that holds m
// in this process (/proc/self/smaps: the kernel's own count of the pages
// mapped, not a timing).
func mappedRss(t testing.TB, m []byte) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	addr := uint64(uintptr(unsafe.Pointer(&m[0])))
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := addrRange(line); ok {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, err := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no mapping holds %#x in /proc/self/smaps", addr)
	return 0
}

// addrRange parses a smaps header line, "lo-hi perms ...".
func addrRange(line string) (lo, hi uint64, ok bool) {
	a, _, _ := strings.Cut(line, " ")
	l, h, found := strings.Cut(a, "-")
	if !found {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseUint(l, 16, 64)
	hi, err2 := strconv.ParseUint(h, 16, 64)
	return lo, hi, err1 == nil && err2 == nil
}

// bigPixelFile writes a pixel file whose training set is mib MiB of
// 1 KiB rows, and a 1 MiB test set.
func bigPixelFile(t *testing.T, mib int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "big.pix")
	a, b := testPixels("train", mib<<10, 1, 32, 32, 1), testPixels("test", 1<<10, 1, 32, 32, 5)
	for _, d := range []*Dataset{a, b} {
		for r := range d.N { // every row its own: its index in its first bytes
			d.Pix[r*d.Dim], d.Pix[r*d.Dim+1], d.Pix[r*d.Dim+2] = byte(r), byte(r>>8), byte(r>>16)
		}
	}
	if err := WritePixelFile(path, PixMeta{Mean: a.Norm.Mean, Std: a.Norm.Std}, a, b); err != nil {
		t.Fatal(err)
	}
	return path
}

// mapBig maps the file of bigPixelFile: every call is its own mapping,
// with its own resident pages.
func mapBig(t *testing.T, path string) (train, test *Dataset) {
	t.Helper()
	sets, _, err := MapPixelFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !sets[0].Mapped() {
		t.Fatal("a mapped pixel file's set says it is not mapped")
	}
	return sets[0], sets[1]
}

// anonRss is this process's resident anonymous memory (its heap and
// stacks; not file pages), from /proc/self/status.
func anonRss(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no status: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Skip("no RssAnon in /proc/self/status")
	return 0
}

// A Batcher with a memory budget draws exactly the batches of one
// without, through more than an epoch of a dataset five times larger
// than the budget, while none of the file's mapping becomes resident and
// the process's own memory grows by less than the budget. Without a
// budget the whole file becomes resident (so the measurement can tell).
// The kernel's counts are read, no timings.
func TestBatcherMemoryBudget(t *testing.T) {
	path := bigPixelFile(t, 32)
	train, test := mapBig(t, path)
	other, _ := mapBig(t, path) // for the Batcher without a budget
	m := train.mapping
	if rss := mappedRss(t, m); rss > 2<<20 {
		t.Fatalf("%d KiB of the file resident right after mapping it, want the checksum pass's pages dropped", rss>>10)
	}
	const batch = 64
	free := NewBatcher(other, batch, 9)
	budgeted := NewBatcher(train, batch, 9)
	budget := budgeted.MinMemory() + budgeted.windowData() // one window and one read ahead
	if budget*4 > int64(len(train.Pix)) {
		t.Fatalf("budget %d is not well under the dataset's %d bytes", budget, len(train.Pix))
	}
	x, y := make([]float32, batch*train.Dim), make([]uint8, batch)
	fx, fy := make([]float32, batch*train.Dim), make([]uint8, batch)
	runtime.GC()
	base := anonRss(t)
	if err := budgeted.SetMemory(budget); err != nil {
		t.Fatal(err)
	}
	var peakMap, peakAnon int64
	for i := range train.N * 3 / 2 / batch {
		budgeted.Next(x, y)
		if i%5 == 0 {
			peakMap, peakAnon = max(peakMap, mappedRss(t, m)), max(peakAnon, anonRss(t)-base)
		}
		free.Next(fx, fy)
		if !slices.Equal(x, fx) || !slices.Equal(y, fy) {
			t.Fatalf("batch %d: the budget changed the rows drawn", i)
		}
	}
	t.Logf("budget %d KiB; peak resident: %d KiB of the %d KiB mapping, %d KiB more of the heap", budget>>10, peakMap>>10, len(m)>>10, peakAnon>>10)
	if peakMap > 2<<20 || peakAnon > budget {
		t.Fatalf("peak resident %d KiB of the mapping (want at most a header folio) and %d KiB of the heap, over the budget of %d KiB", peakMap>>10, peakAnon>>10, budget>>10)
	}
	// Seeking (a joiner, a restart) into the middle of a window, with
	// augmentation on: still the same rows.
	aug, _ := ParseAugment("crop=2,flip")
	for _, b := range []*Batcher{budgeted, free} {
		if err := b.SetAugment(aug); err != nil {
			t.Fatal(err)
		}
		if err := b.Seek(3, 1234); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		budgeted.Next(x, y)
		free.Next(fx, fy)
		if !slices.Equal(x, fx) || !slices.Equal(y, fy) {
			t.Fatalf("batch %d after Seek: the budget changed the rows drawn", i)
		}
	}
	if rss := mappedRss(t, other.mapping); rss < int64(len(train.Pix))*9/10 {
		t.Fatalf("without a budget only %d KiB resident after an epoch of %d KiB: the measurement cannot see a leak", rss>>10, len(train.Pix)>>10)
	}

	// An evaluation pass over a streamed test set keeps none of it mapped,
	// and reads the same rows.
	want := make([]float32, test.N*test.Dim)
	test.Rows(0, test.N, want)
	if err := test.StreamRows(); err != nil {
		t.Fatal(err)
	}
	if rss := mappedRss(t, m); rss > 2<<20 {
		t.Fatalf("%d KiB of the mapping resident after StreamRows", rss>>10)
	}
	buf := make([]float32, 100*test.Dim)
	for lo := 0; lo < test.N; lo += 100 {
		n := min(100, test.N-lo)
		if !slices.Equal(test.Rows(lo, n, buf), want[lo*test.Dim:(lo+n)*test.Dim]) {
			t.Fatalf("rows %d..%d differ when streamed", lo, lo+n)
		}
		if rss := mappedRss(t, m); rss > 2<<20 {
			t.Fatalf("evaluating a streamed set made %d KiB of the mapping resident", rss>>10)
		}
	}
}

// A shard drawn under a budget without a copy (NewRowsBatcher) gives the
// batches of the copy Shard makes, and keeps the mapping unmapped.
func TestRowsBatcherMemoryBudget(t *testing.T) {
	path := bigPixelFile(t, 8)
	train, _ := mapBig(t, path)
	other, _ := mapBig(t, path)
	const batch = 32
	copied, err := other.Shard(5, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := train.ShardRows(5, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	a, b := NewBatcher(copied, batch, 4), NewRowsBatcher(train, rows, batch, 4)
	if err := b.SetMemory(b.MinMemory()); err != nil {
		t.Fatal(err)
	}
	if b.Rows() != copied.N {
		t.Fatalf("%d rows to draw from, the shard has %d", b.Rows(), copied.N)
	}
	x, y := make([]float32, batch*train.Dim), make([]uint8, batch)
	cx, cy := make([]float32, batch*train.Dim), make([]uint8, batch)
	for i := range copied.N * 2 / batch {
		a.Next(cx, cy)
		b.Next(x, y)
		if !slices.Equal(x, cx) || !slices.Equal(y, cy) {
			t.Fatalf("batch %d: the shard's rows differ from its copy's", i)
		}
	}
	if rss := mappedRss(t, train.mapping); rss > 2<<20 {
		t.Fatalf("%d KiB of the mapping resident", rss>>10)
	}
}

func TestBatcherMemoryRefused(t *testing.T) {
	train, _ := mapBig(t, bigPixelFile(t, 4))
	b := NewBatcher(train, 8, 1)
	err := b.SetMemory(1 << 20)
	if err == nil || !strings.Contains(err.Error(), "1.0 MiB") || !strings.Contains(err.Error(), "2.0 MiB") || !strings.Contains(err.Error(), "window") {
		t.Fatalf("a budget under one window: %v, want an error naming both sizes", err)
	}
	heap := testPixels("heap", 100, 1, 4, 4, 0)
	err = NewBatcher(heap, 8, 1).SetMemory(64 << 20)
	if err == nil || !strings.Contains(err.Error(), "not mapped") {
		t.Fatalf("a budget on a heap dataset: %v", err)
	}
	if err := b.SetMemory(b.MinMemory()); err != nil {
		t.Fatalf("the minimum it names: %v", err)
	}
}
