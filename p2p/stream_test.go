package p2p

import (
	"bytes"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// deadlineStream is a network.Stream over a buffer that records the
// deadlines set on it; the other methods are never called here.
type deadlineStream struct {
	network.Stream
	buf         bytes.Buffer
	read, write []time.Time
}

func (d *deadlineStream) Read(p []byte) (int, error)  { return d.buf.Read(p) }
func (d *deadlineStream) Write(p []byte) (int, error) { return d.buf.Write(p) }
func (d *deadlineStream) SetReadDeadline(t time.Time) error {
	d.read = append(d.read, t)
	return nil
}
func (d *deadlineStream) SetWriteDeadline(t time.Time) error {
	d.write = append(d.write, t)
	return nil
}

// A frame gets the timeout plus its size at the minimum rate: a large
// part is not cut off on a slow link, a small one is still bounded by
// the timeout alone, and without a rate every frame gets the timeout.
func TestStreamFrameDeadlineFollowsSize(t *testing.T) {
	const timeout = time.Second
	const rate = 1e6 // bytes/s
	payload := make([]byte, 3_000_000)
	// Each deadline is checked against the times around the call that set
	// it, so a slow machine (or the race detector) cannot fail the test.
	var before, after time.Time
	near := func(got time.Time, want time.Duration) bool {
		return !got.Before(before.Add(want)) && !got.After(after.Add(want))
	}
	call := func(f func()) { before = time.Now(); f(); after = time.Now() }

	raw := &deadlineStream{}
	s := NewStream(raw, timeout)
	s.SetMinRate(rate)
	var err error
	call(func() { err = s.Send(payload) })
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.write) != 1 || !near(raw.write[0], timeout+3*time.Second) {
		t.Fatalf("write deadlines %v: want one, 4s away", raw.write)
	}
	var got []byte
	call(func() { got, err = s.Recv(len(payload)) })
	if err != nil || len(got) != len(payload) {
		t.Fatalf("Recv: %d bytes, %v", len(got), err)
	}
	// The prefix within the timeout, then the payload within its size's time.
	if len(raw.read) != 2 || !near(raw.read[0], timeout) || !near(raw.read[1], timeout+3*time.Second) {
		t.Fatalf("read deadlines %v: want 1s, then 4s away", raw.read)
	}

	raw = &deadlineStream{}
	s = NewStream(raw, timeout)
	call(func() { err = s.Send(payload) })
	if err != nil || !near(raw.write[0], timeout) {
		t.Fatalf("without a rate: write deadlines %v (%v); want the timeout alone", raw.write, err)
	}
	call(func() { _, err = s.Recv(len(payload)) })
	if err != nil || len(raw.read) != 1 || !near(raw.read[0], timeout) {
		t.Fatalf("without a rate: read deadlines %v (%v); want the timeout alone", raw.read, err)
	}

	s.SetTimeout(5 * time.Second)
	raw.read = nil
	s.Send([]byte("x"))
	call(func() { s.Recv(1) })
	if !near(raw.read[0], 5*time.Second) {
		t.Fatalf("after SetTimeout(5s) the read deadline is %v away", time.Until(raw.read[0]))
	}
}
