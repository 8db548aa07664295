package gossip

import (
	"context"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// AskEach calls ask for every peer at once and returns the answers and
// errors in the order of peers: a download asks all its candidate
// sources for a manifest before it picks the ones to use.
func AskEach[T any](peers []peer.ID, ask func(peer.ID) (T, error)) ([]T, []error) {
	vals := make([]T, len(peers))
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals[i], errs[i] = ask(p)
		}()
	}
	wg.Wait()
	return vals, errs
}

// ChunkSource is a peer's open stream that serves the chunks of a
// download.
type ChunkSource interface {
	Source() (peer.ID, Stream)
}

// Pull fetches chunks from several sources in parallel, each source
// taking the next chunk wanted as soon as it delivered the last one.
// Chunks and Failed must be non-nil.
type Pull struct {
	Chunks map[peer.ID]int   // chunks each source delivered
	Failed map[peer.ID]error // sources dropped, and why
	// Got, when set, is told each chunk delivered (under Pull's lock).
	Got func(k int)
}

// PullChunks fetches the chunks in todo from srcs. fetcher gives each
// source the function that fetches and checks chunk k from it (its own,
// so it may keep scratch space). A source whose fetch fails is dropped:
// its stream is reset, the failure recorded in p.Failed, and the chunk
// goes to the others. It returns how many chunks of todo are left (0:
// all fetched), and ctx's error when ctx ended before they were.
func PullChunks[S ChunkSource](ctx context.Context, p *Pull, srcs []S, todo []int, fetcher func(S) func(k int) error) (int, error) {
	n := len(todo)
	if n == 0 {
		return 0, nil
	}
	queue := make(chan int, n)
	for _, k := range todo {
		queue <- k
	}
	var (
		mu        sync.Mutex
		wg        sync.WaitGroup
		completed int
		done      = make(chan struct{})
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, c := range srcs {
		from, s := c.Source()
		stop := context.AfterFunc(ctx, func() { s.Reset() })
		defer stop()
		fetch := fetcher(c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var k int
				select {
				case k = <-queue:
				case <-done:
					return
				case <-ctx.Done():
					return
				}
				if err := fetch(k); err != nil {
					queue <- k // never blocks: capacity n, and k came from it
					mu.Lock()
					p.Failed[from] = fmt.Errorf("chunk %d: %w", k, err)
					mu.Unlock()
					s.Reset()
					return
				}
				mu.Lock()
				p.Chunks[from]++
				if p.Got != nil {
					p.Got(k)
				}
				if completed++; completed == n {
					close(done)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if completed != n {
		return n - completed, ctx.Err()
	}
	return 0, nil
}
