package statesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/gossiptest"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// replica is a donor's training state: every replica at the same step
// holds the same values, as in a real swarm.
type replica struct {
	mu            sync.Mutex
	step          uint64
	nParams, nOpt int
	srv           *Server
}

// testGroup is the group every test state carries: it is inside the hash.
var testGroup = []peer.ID{testutil.PeerID(100), testutil.PeerID(101)}

func stateAt(step uint64, nParams, nOpt int) Snapshot {
	s := Snapshot{Step: step, Params: make([]float32, nParams), Opt: make([]float32, nOpt), Group: testGroup}
	for i := range s.Params {
		s.Params[i] = float32(i%977)*0.001 + float32(step)
	}
	for i := range s.Opt {
		s.Opt[i] = float32(i%13) - float32(step)
	}
	return s
}

func (r *replica) current() (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.step, nil
}

func (r *replica) snapshot() (Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return stateAt(r.step, r.nParams, r.nOpt), nil
}

func (r *replica) advance() {
	r.mu.Lock()
	r.step++
	step := r.step
	r.mu.Unlock()
	r.srv.Advanced(step)
}

// waitingFor counts the joiners waiting for the replica to reach step.
func (r *replica) waitingFor(step uint64) int {
	r.srv.mu.Lock()
	defer r.srv.mu.Unlock()
	return len(r.srv.waiters[step])
}

func (r *replica) pinnedSteps() int {
	r.srv.mu.Lock()
	defer r.srv.mu.Unlock()
	return len(r.srv.pinned)
}

// A state of several chunks spread over donors; the last transport is the joiner.
const (
	testNParams = 5*StateChunk + 123
	testNOpt    = 6*StateChunk + 7
)

func donorsAt(t *testing.T, n int, step uint64) (*gossip.MemNetwork, []*gossip.MemTransport, []peer.ID, []*replica) {
	return donorsOn(t, n, step, nil)
}

// donorsOn is donorsAt with the donors and the network on clk (nil: the
// wall clock).
func donorsOn(t *testing.T, n int, step uint64, clk clock.Clock) (*gossip.MemNetwork, []*gossip.MemTransport, []peer.ID, []*replica) {
	net, ts, ids := memPeers(n + 1)
	net.Timeout = 2 * time.Second
	net.Clock = clk
	var rs []*replica
	for _, tr := range ts[:n] {
		r := &replica{step: step, nParams: testNParams, nOpt: testNOpt}
		r.srv = NewServer(tr, "ab", r.current, r.snapshot, clk)
		rs = append(rs, r)
	}
	return net, ts, ids, rs
}

func request(step uint64) Request {
	return Request{Run: "ab", NParams: testNParams, NOpt: testNOpt, Step: step, Wait: 2 * time.Second}
}

func checkFetched(t *testing.T, f *Fetched, step uint64) {
	t.Helper()
	want := stateAt(step, testNParams, testNOpt)
	if f.Step != step || f.Hash != HashState(step, want.Params, want.Opt, want.Group) {
		t.Fatalf("got step %d hash %s, want step %d hash %s", f.Step, f.Hash, step, HashState(step, want.Params, want.Opt, want.Group))
	}
	for i := range want.Params {
		if f.Params[i] != want.Params[i] {
			t.Fatalf("param %d = %v, want %v", i, f.Params[i], want.Params[i])
		}
	}
	for i := range want.Opt {
		if f.Opt[i] != want.Opt[i] {
			t.Fatalf("optimizer value %d = %v, want %v", i, f.Opt[i], want.Opt[i])
		}
	}
	total := 0
	for _, c := range f.Chunks {
		total += c
	}
	if n := numChunks(testNParams + testNOpt); total != n {
		t.Fatalf("donors delivered %d chunks, the state has %d", total, n)
	}
}

// A joiner downloads one verified state from several donors at once, and
// the donors free their pinned copies afterwards.
func TestStateSyncFromManyDonors(t *testing.T) {
	net, ts, ids, rs := donorsAt(t, 3, 7)
	// No donor's chunk goes out before every donor has one to send (the
	// joiner asks each for a chunk at once): however the goroutines are
	// scheduled, the download is shared. (Letting only donor 0 wait left
	// a race: the first of the others could serve every chunk before the
	// second was scheduled.)
	var first sync.WaitGroup
	first.Add(3)
	var once [3]sync.Once
	net.SetFault(func(e gossip.FrameEvent) gossip.FrameAction {
		if e.Proto == gossip.ProtoState && !e.Opener && e.Seq > 0 {
			for i := range 3 {
				if e.From == ids[i] {
					once[i].Do(first.Done)
				}
			}
			first.Wait()
		}
		return gossip.Deliver
	})
	want := stateAt(7, testNParams, testNOpt)
	req := request(7)
	req.Want = HashState(7, want.Params, want.Opt, want.Group)
	f, err := Fetch(context.Background(), ts[3], ids[:3], req)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, f, 7)
	if len(f.Chunks) < 2 {
		t.Errorf("chunks came from %d donor(s): %v", len(f.Chunks), f.Chunks)
	}
	for i, r := range rs {
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if n := r.pinnedSteps(); n != 0 {
				return fmt.Errorf("donor %d still pins %d state copies", i, n)
			}
			return nil
		})
	}
}

// A donor that dies mid-download costs nothing but its share: the other
// donors serve its chunks and the state is complete and verified.
func TestStateSyncSurvivesDonorDeath(t *testing.T) {
	net, ts, ids, _ := donorsAt(t, 3, 4)
	crashed := make(chan struct{})
	var once sync.Once
	net.SetFault(func(e gossip.FrameEvent) gossip.FrameAction {
		if e.Proto != gossip.ProtoState || e.Opener || e.Seq == 0 {
			return gossip.Deliver // requests and manifests
		}
		// Donor 0 dies sending its second chunk; the others' chunks wait
		// for that, so it surely gets that far.
		if e.From == ids[0] {
			if e.Seq == 2 {
				once.Do(func() { close(crashed) })
				return gossip.Crash
			}
			return gossip.Deliver
		}
		<-crashed
		return gossip.Deliver
	})
	f, err := Fetch(context.Background(), ts[3], ids[:3], request(4))
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, f, 4)
	if f.Failed[ids[0]] == nil {
		t.Errorf("the dead donor was not reported: %v", f.Failed)
	}
	if f.Chunks[ids[0]] != 1 {
		t.Errorf("dead donor credited with %d chunks", f.Chunks[ids[0]])
	}
}

// A donor whose chunks do not match its manifest (right framing, wrong
// values) is caught at the first bad chunk and dropped; the honest donors
// finish the download. A donor whose manifest does not hash to the state
// hash is refused before any chunk is fetched.
func TestStateSyncDropsLyingDonors(t *testing.T) {
	net, ts, ids, _ := donorsAt(t, 5, 9) // donors 2, 3 and 4 are replaced below
	// The honest donors' chunks wait until the liar sent one, so the liar
	// surely gets to lie.
	lied := make(chan struct{})
	var once sync.Once
	net.SetFault(func(e gossip.FrameEvent) gossip.FrameAction {
		if e.Proto == gossip.ProtoState && !e.Opener && e.Seq > 0 && (e.From == ids[0] || e.From == ids[1]) {
			<-lied
		}
		return gossip.Deliver
	})
	honest := stateAt(9, testNParams, testNOpt)
	chunks := ChunkHashes(honest.Params, honest.Opt)
	manifest := stateManifest{Step: 9, Hash: HashState(9, honest.Params, honest.Opt, honest.Group), NParams: testNParams, NOpt: testNOpt, Group: honest.Group}
	for _, c := range chunks {
		manifest.Chunks = append(manifest.Chunks, append([]byte(nil), c[:]...))
	}
	liar := ts[2] // serves the honest manifest, then zeros
	liar.Handle(gossip.ProtoState, func(s gossip.Stream) {
		s.Recv(gossip.MaxMessageSize)
		b, _ := json.Marshal(manifest)
		s.Send(b)
		for {
			if _, err := s.Recv(gossip.MaxMessageSize); err != nil {
				s.Close()
				return
			}
			frame, _ := compression.EncodePart(nil, compression.FP32{}, compression.LosslessNone, make([]float32, StateChunk))
			s.Send(frame)
			once.Do(func() { close(lied) })
		}
	})
	forger := ts[3] // a manifest whose chunk list does not hash to its claimed hash
	forger.Handle(gossip.ProtoState, func(s gossip.Stream) {
		s.Recv(gossip.MaxMessageSize)
		m := manifest
		m.Chunks = append([][]byte{make([]byte, 32)}, manifest.Chunks[1:]...)
		b, _ := json.Marshal(m)
		s.Send(b)
		s.Close()
	})
	grouper := ts[4] // the honest chunks under a forged group: it picks the next assembler
	grouper.Handle(gossip.ProtoState, func(s gossip.Stream) {
		s.Recv(gossip.MaxMessageSize)
		m := manifest
		m.Group = []peer.ID{testGroup[0], testutil.PeerID(102)}
		b, _ := json.Marshal(m)
		s.Send(b)
		s.Close()
	})
	f, err := Fetch(context.Background(), ts[5], []peer.ID{ids[2], ids[3], ids[4], ids[0]}, request(9))
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, f, 9)
	if err := f.Failed[ids[2]]; err == nil || !strings.Contains(err.Error(), "does not match the manifest") {
		t.Errorf("lying donor: %v", err)
	}
	if err := f.Failed[ids[3]]; err == nil || !strings.Contains(err.Error(), "manifest hashes to") {
		t.Errorf("forged manifest: %v", err)
	}
	if err := f.Failed[ids[4]]; err == nil || !strings.Contains(err.Error(), "manifest hashes to") {
		t.Errorf("forged group: %v", err)
	}
	if f.Chunks[ids[3]] != 0 || f.Chunks[ids[4]] != 0 {
		t.Error("a donor with a forged manifest delivered chunks")
	}
	if !slices.Equal(f.Group, testGroup) {
		t.Errorf("group %v, want %v", f.Group, testGroup)
	}
}

// A donor whose sizes differ from our model is refused before anything
// is allocated for its state.
func TestStateSyncRefusesWrongSizes(t *testing.T) {
	_, ts, ids := memPeers(2)
	ts[0].Handle(gossip.ProtoState, func(s gossip.Stream) {
		s.Recv(gossip.MaxMessageSize)
		b, _ := json.Marshal(stateManifest{Step: 5, Hash: "00", NParams: 1 << 30})
		s.Send(b)
		s.Close()
	})
	_, err := Fetch(context.Background(), ts[1], ids[:1], Request{Run: "ab", NParams: 2, Step: 5})
	if err == nil || !strings.Contains(err.Error(), "this model has") {
		t.Fatalf("got %v, want a size refusal", err)
	}
}

// Donors one step behind pin the requested step when they reach it; if
// the swarm already moved past it, the joiner pins the newer step.
func TestStateSyncPinsAcrossSteps(t *testing.T) {
	_, ts, ids, rs := donorsAt(t, 3, 11)
	rs[0].advance() // donor 0 is at 12, the others get there while we ask
	type fetched struct {
		f   *Fetched
		err error
	}
	got := make(chan fetched, 1)
	go func() {
		f, err := Fetch(context.Background(), ts[3], ids[:3], request(12))
		got <- fetched{f, err}
	}()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		for i, r := range rs[1:] {
			if r.waitingFor(12) == 0 {
				return fmt.Errorf("donor %d does not wait for step 12 yet", i+1)
			}
		}
		return nil
	})
	rs[1].advance()
	rs[2].advance()
	res := <-got
	f, err := res.f, res.err
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, f, 12)
	if len(f.Failed) != 0 {
		t.Errorf("donors failed: %v", f.Failed)
	}
	// Everyone moves to 13: a request for 12 ends with 13. (Once the
	// donors have let go of their copies of 12: a donor still finishing
	// the first download's stream would serve its pinned 12.)
	for i, r := range rs {
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if n := r.pinnedSteps(); n != 0 {
				return fmt.Errorf("donor %d still pins %d state copies", i, n)
			}
			return nil
		})
	}
	for _, r := range rs {
		r.advance()
	}
	f, err = Fetch(context.Background(), ts[3], ids[:3], request(12))
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, f, 13)
}

// With Want set, only donors holding that state are used, even when they
// are outnumbered.
func TestStateSyncFollowsWantedHash(t *testing.T) {
	_, ts, ids, rs := donorsAt(t, 3, 2)
	odd := stateAt(2, testNParams, testNOpt)
	odd.Params[0] = 42 // donors 0 and 1 diverged the same way
	for _, r := range rs[:2] {
		r.srv.snapshot = func() (Snapshot, error) { return odd, nil }
	}
	honest := stateAt(2, testNParams, testNOpt)
	req := request(2)
	req.Want = HashState(2, honest.Params, honest.Opt, honest.Group)
	f, err := Fetch(context.Background(), ts[3], ids[:3], req)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, f, 2)
	if f.Chunks[ids[2]] != numChunks(testNParams+testNOpt) {
		t.Errorf("chunks by donor: %v; want all from donor 2", f.Chunks)
	}
}

// With MinVouch 2, a state only one donor announces is not downloaded,
// even when that donor is the only one that answered (a hostile peer
// serving its own zeroed state under a manifest that hashes right); two
// donors announcing one state outvote it.
func TestStateSyncNeedsMinVouch(t *testing.T) {
	_, ts, ids, rs := donorsAt(t, 3, 4)
	zero := Snapshot{Step: 4, Params: make([]float32, testNParams), Opt: make([]float32, testNOpt)}
	rs[0].srv.snapshot = func() (Snapshot, error) { return zero, nil }
	req := request(4)
	req.MinVouch = 2
	_, err := Fetch(context.Background(), ts[3], ids[:1], req)
	if err == nil || !strings.Contains(err.Error(), "fewer than the 2 needed") {
		t.Fatalf("one hostile donor: %v, want a refusal for too few vouching donors", err)
	}
	f, err := Fetch(context.Background(), ts[3], ids[:3], req)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, f, 4)
	if f.Chunks[ids[0]] != 0 {
		t.Error("the hostile donor delivered chunks")
	}
}

// When every donor of a download dies, the chunks already verified are
// kept: the next attempt at the same state fetches only the rest.
func TestStateSyncResumesAfterAllDonorsDie(t *testing.T) {
	net, ts, ids, _ := donorsAt(t, 4, 6) // donors 0, 1 serve first; 2, 3 later
	joiner := ts[4]
	net.SetFault(func(e gossip.FrameEvent) gossip.FrameAction {
		// Donors 0 and 1 each deliver their manifest and two chunks, then die.
		if e.Proto == gossip.ProtoState && !e.Opener && e.Seq == 3 && (e.From == ids[0] || e.From == ids[1]) {
			return gossip.Crash
		}
		return gossip.Deliver
	})
	var d Download
	if _, err := d.Fetch(context.Background(), joiner, ids[:2], request(6)); err == nil {
		t.Fatal("a download whose donors all died succeeded")
	}
	kept := 0
	for _, h := range d.have {
		if h {
			kept++
		}
	}
	if kept != 4 {
		t.Fatalf("kept %d verified chunks, want the 4 delivered", kept)
	}
	f, err := d.Fetch(context.Background(), joiner, ids[2:4], request(6))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, c := range f.Chunks {
		got += c
	}
	if n := numChunks(testNParams + testNOpt); got != n-kept {
		t.Errorf("second attempt fetched %d chunks, want the %d missing", got, n-kept)
	}
	want := stateAt(6, testNParams, testNOpt)
	if f.Hash != HashState(6, want.Params, want.Opt, want.Group) {
		t.Error("resumed download is not the state")
	}
}

// One peer holding streams open cannot lock joiners out: past two
// streams it is told "busy", while another joiner is still served.
func TestServerCapsStreamsPerPeer(t *testing.T) {
	_, ts, ids, rs := donorsAt(t, 2, 3) // donor 0 serves; 1 hogs, 2 joins
	hog := ts[1]
	for i := range 2 { // ask for a future step: the server holds these open, waiting
		s, err := hog.Open(context.Background(), ids[0], gossip.ProtoState)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		b, _ := json.Marshal(stateRequest{Run: "ab", Step: 100, WaitMS: 5000})
		if err := s.Send(b); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		rs[0].srv.mu.Lock()
		defer rs[0].srv.mu.Unlock()
		if n := rs[0].srv.byPeer[ids[1]]; n != 2 {
			return fmt.Errorf("server holds %d of the hog's streams", n)
		}
		return nil
	})
	_, err := Fetch(context.Background(), hog, ids[:1], request(3))
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("third stream from the same peer: got %v, want busy", err)
	}
	f, err := Fetch(context.Background(), ts[2], ids[:1], request(3))
	if err != nil {
		t.Fatalf("another joiner was locked out: %v", err)
	}
	checkFetched(t, f, 3)
}

// A donor behind the requested step waits for it no longer than the
// request allows (at most maxDonorWait), then says where it is, and the
// joiner pins that step instead: a stalled swarm is synced where it
// stands. The half minute passes on a mock clock.
func TestStateSyncDonorWaitExpires(t *testing.T) {
	mock := clock.NewMock()
	net, ts, ids, rs := donorsOn(t, 1, 3, mock)
	net.Timeout = time.Hour // only the donor's wait bounds the manifest
	req := request(5)       // the swarm gossiped step 5, the donor is stuck at 3
	req.Wait, req.Clock = maxDonorWait, mock
	type fetched struct {
		f   *Fetched
		err error
	}
	got := make(chan fetched, 1)
	go func() {
		f, err := Fetch(context.Background(), ts[1], ids[:1], req)
		got <- fetched{f, err}
	}()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if rs[0].waitingFor(5) == 0 {
			return errors.New("the donor does not wait for step 5 yet")
		}
		return nil
	})
	mock.Add(maxDonorWait - time.Second)
	select {
	case res := <-got:
		t.Fatalf("the donor stopped waiting before the request's wait: %v", res.err)
	default:
	}
	mock.Add(time.Second)
	res := <-got
	if res.err != nil {
		t.Fatal(res.err)
	}
	checkFetched(t, res.f, 3)
}

var (
	memPeers = gossiptest.MemPeers
)
