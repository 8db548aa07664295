package trainer

import (
	"os"

	"golang.org/x/sys/unix"
)

// readAhead asks the kernel to read f[off:off+n] into the page cache in
// the background (posix_fadvise WILLNEED): the next window is there when
// its reads come.
func readAhead(f *os.File, off, n int64) { unix.Fadvise(int(f.Fd()), off, n, unix.FADV_WILLNEED) }
