//go:build unix

package trainer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// canAdvise says mapFile maps (so madvise can drop pages).
const canAdvise = true

// mapFile maps path read-only and shared: processes mapping one file
// share its pages in the page cache instead of each holding a copy. The
// file stays open for reads of a streamed set (the mapping would not
// need it).
func mapFile(path string) ([]byte, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	size := fi.Size()
	if size <= 0 || size != int64(int(size)) {
		f.Close()
		return nil, nil, fmt.Errorf("size %d cannot be mapped", size)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return b, f, nil
}

func unmapFile(b []byte) { unix.Munmap(b) }

// dropPages unmaps this process's pages of m[lo:hi], whole pages inside
// it only (the kernel may have mapped a whole large folio around a read,
// up to 2 MiB, so a caller drops generously): they leave its resident set (the page cache keeps them for
// other processes and a later read). m is a read-only shared mapping, so
// nothing is lost: a later read faults the page back in.
func dropPages(m []byte, lo, hi int) {
	pg := os.Getpagesize()
	lo, hi = min(len(m), (max(0, lo)+pg-1)/pg*pg), min(len(m), hi/pg*pg)
	if hi == len(m) && len(m)%pg != 0 {
		hi = len(m) // the mapping's last, partial page is whole to the kernel
	}
	if lo < hi {
		unix.Madvise(m[lo:hi], unix.MADV_DONTNEED)
	}
}
