package kernels

import (
	"fmt"
	"runtime"
	"sync"
)

// Blocking, in elements. KC·nr·4 bytes of B̃ stay in L1 while the kernel
// sweeps the A block; MC·KC·4 bytes of Ã (288 KiB) stay in L2; the
// KC×NC B̃ panel (4 MiB) in L3. Tuned on an AMD EPYC (Zen 5, 48 KiB L1d,
// 1 MiB L2); see BENCHMARKS.md.
const (
	blockK = 256
	blockM = 288 // a multiple of every kernel's mr (12, 6, 4)
	blockN = 4096
	// minWork is the multiply-adds below which one more goroutine costs
	// more than it saves.
	minWork = 1 << 18
)

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices:
// op(A) is m×k, op(B) is k×n, C is m×n; transA/transB say that A is stored
// k×m or B stored n×k. It splits big products across GOMAXPROCS
// goroutines. Each element of C is summed in the same order whatever the
// split, so the result does not depend on the number of threads; it does
// depend on the micro-kernel (FMA or not), so CPUs of different kinds may
// differ in the last bits. Bad dimensions, strides or short slices panic,
// as in BLAS: they are the caller's bug, not input.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(false, runtime.GOMAXPROCS(0), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmSerial is Sgemm on the calling goroutine alone, for callers that
// already run one product per thread. Its bits are Sgemm's.
func SgemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(false, 1, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemm is Sgemm, or SgemmBF16 when bf16 is set, on at most threads
// goroutines.
func gemm(bf16 bool, threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if beta != 1 {
		for i := range m {
			row := c[i*ldc : i*ldc+n]
			if beta == 0 {
				clear(row) // not 0·C: NaN in C must not survive, as in BLAS
				continue
			}
			for j := range row {
				row[j] *= beta
			}
		}
	}
	if k == 0 || alpha == 0 {
		return
	}
	t := task{kn: active, bf16: bf16, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc}
	mr, nr := active.mr, active.nr
	if bf16 {
		t.kb = activeBF16
		mr, nr = activeBF16.mr, activeBF16.nr
	}
	workers := min(threads, m*n*k/minWork, maxWorkers)
	if workers <= 1 {
		t.run()
		return
	}
	// Split the longer side of C into chunks aligned to the tile; each
	// worker packs its own panels. The caller takes the last chunk.
	wg := waitGroups.Get().(*sync.WaitGroup)
	defer waitGroups.Put(wg)
	var parts []task
	var buf [maxWorkers]task
	if n >= m {
		chunk := roundUp((n+workers-1)/workers, nr)
		for j0 := 0; j0 < n; j0 += chunk {
			p := t
			p.n = min(chunk, n-j0)
			p.c = c[j0:]
			if transB {
				p.b = b[j0*ldb:]
			} else {
				p.b = b[j0:]
			}
			parts = append(buf[:len(parts)], p)
		}
	} else {
		chunk := roundUp((m+workers-1)/workers, mr)
		for i0 := 0; i0 < m; i0 += chunk {
			p := t
			p.m = min(chunk, m-i0)
			p.c = c[i0*ldc:]
			if transA {
				p.a = a[i0:]
			} else {
				p.a = a[i0*lda:]
			}
			parts = append(buf[:len(parts)], p)
		}
	}
	startWorkers(len(parts) - 1)
	wg.Add(len(parts) - 1)
	for _, p := range parts[:len(parts)-1] {
		p.done = wg
		tasks <- p
	}
	parts[len(parts)-1].run()
	wg.Wait()
}

// task is one worker's share of a product; done is signalled when it ends.
type task struct {
	kn             microKernel
	kb             bf16Kernel
	bf16           bool
	transA, transB bool
	m, n, k        int
	alpha          float32
	a, b, c        []float32
	lda, ldb, ldc  int
	done           *sync.WaitGroup
}

func (t *task) run() {
	if t.bf16 {
		serialBF16(t.kb, t.transA, t.transB, t.m, t.n, t.k, t.alpha, t.a, t.lda, t.b, t.ldb, t.c, t.ldc)
		return
	}
	serial(t.kn, t.transA, t.transB, t.m, t.n, t.k, t.alpha, t.a, t.lda, t.b, t.ldb, t.c, t.ldc)
}

// maxWorkers caps the goroutines one product uses.
const maxWorkers = 64

// The worker pool: long-lived goroutines fed through an unbuffered
// channel, so a parallel product neither allocates nor starts goroutines.
var (
	tasks      = make(chan task)
	workersMu  sync.Mutex
	started    int
	waitGroups = sync.Pool{New: func() any { return new(sync.WaitGroup) }}
)

// startWorkers makes sure at least n pool goroutines run.
func startWorkers(n int) {
	workersMu.Lock()
	defer workersMu.Unlock()
	for ; started < n; started++ {
		go func() {
			for t := range tasks {
				t.run()
				t.done.Done()
			}
		}()
	}
}

// workspace holds one goroutine's packed panels.
type workspace struct {
	a, b, tile []float32
}

var workspaces = sync.Pool{New: func() any { return new(workspace) }}

// serial is the blocked product on one goroutine: the five loops around
// the micro-kernel (jc over NC columns, pc over KC, ic over MC rows, jr, ir
// over tiles). It only adds to C.
func serial(kn microKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ws := workspaces.Get().(*workspace)
	defer workspaces.Put(ws)
	mr, nr := kn.mr, kn.nr
	ws.a = grow(ws.a, blockM*blockK)
	ws.b = grow(ws.b, blockK*roundUp(min(n, blockN), nr))
	ws.tile = grow(ws.tile, mr*nr)
	for jc := 0; jc < n; jc += blockN {
		nc := min(blockN, n-jc)
		for pc := 0; pc < k; pc += blockK {
			kc := min(blockK, k-pc)
			packB(ws.b, transB, b, ldb, pc, jc, kc, nc, nr)
			for ic := 0; ic < m; ic += blockM {
				mc := min(blockM, m-ic)
				packA(ws.a, transA, a, lda, ic, pc, mc, kc, mr, alpha)
				for jr := 0; jr < nc; jr += nr {
					bp := ws.b[jr*kc : (jr+nr)*kc]
					cols := min(nr, nc-jr)
					for ir := 0; ir < mc; ir += mr {
						ap := ws.a[ir*kc : (ir+mr)*kc]
						rows := min(mr, mc-ir)
						off := (ic+ir)*ldc + jc + jr
						if rows == mr && cols == nr {
							kn.fn(kc, ap, bp, c[off:off+(mr-1)*ldc+nr], ldc)
							continue
						}
						// Edge tile: compute it whole into scratch, add the part
						// that exists.
						t := ws.tile[:mr*nr]
						clear(t)
						kn.fn(kc, ap, bp, t, nr)
						for i := range rows {
							dst := c[off+i*ldc:][:cols]
							for j, v := range t[i*nr : i*nr+cols] {
								dst[j] += v
							}
						}
					}
				}
			}
		}
	}
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func roundUp(x, to int) int { return (x + to - 1) / to * to }

// checkArgs panics, naming the argument, where BLAS's xerbla would.
func checkArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels: Sgemm m=%d n=%d k=%d: negative dimension", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	check := func(name string, s []float32, rows, cols, ld int) {
		if ld < max(1, cols) {
			panic(fmt.Sprintf("kernels: Sgemm: ld%s=%d < %d columns", name, ld, cols))
		}
		if rows > 0 && cols > 0 && len(s) < (rows-1)*ld+cols {
			panic(fmt.Sprintf("kernels: Sgemm: len(%s)=%d, want ≥ %d for %d×%d with stride %d", name, len(s), (rows-1)*ld+cols, rows, cols, ld))
		}
	}
	check("a", a, ar, ac, lda)
	check("b", b, br, bc, ldb)
	check("c", c, m, n, ldc)
}
