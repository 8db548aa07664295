package gossip

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Links time frames on the (here virtual) clock: a frame waits for the
// sender's one uplink, shared by all its streams, then its latency.
func TestMemLinksShareTheUplink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 1 << 20
		net := NewMemNetwork()
		net.Links = func(from, to peer.ID) Link {
			return Link{Latency: 50 * time.Millisecond, Uplink: size} // a frame a second
		}
		var mu sync.Mutex
		sent := map[peer.ID]int{}
		net.Sent = func(ev FrameEvent, n int) {
			mu.Lock()
			sent[ev.From] += n
			mu.Unlock()
		}
		a, b := net.Add("a"), net.Add("b")
		start := time.Now()
		arrived := make(chan time.Duration, 2)
		b.Handle(ProtoPart, func(s Stream) {
			if _, err := s.Recv(size); err != nil {
				t.Error(err)
			}
			arrived <- time.Since(start)
		})
		for range 2 {
			s, err := a.Open(context.Background(), "b", ProtoPart)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				if err := s.Send(make([]byte, size)); err != nil {
					t.Error(err)
				}
			}()
		}
		first, second := <-arrived, <-arrived
		if first != time.Second+50*time.Millisecond || second != 2*time.Second+50*time.Millisecond {
			t.Errorf("two 1 MiB frames on a 1 MiB/s uplink with 50 ms latency arrived after %v and %v, want 1.05 s and 2.05 s", first, second)
		}
		synctest.Wait() // the senders have counted their frames
		mu.Lock()
		defer mu.Unlock()
		if sent["a"] != 2*size || sent["b"] != 0 {
			t.Errorf("counted %v bytes sent, want a: %d", sent, 2*size)
		}
	})
}
