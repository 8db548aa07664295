package statesync

import "time"

// The package's tunables, in one table: what donors hold and serve for
// joiners (each pinned step is a full copy of the state), and how long
// and how widely a joiner looks for one. Each states its unit and what
// moving it trades. StateChunk is not one of them: it is part of the
// state hash.
const (
	// maxPinnedSteps caps the steps a donor holds frozen copies of.
	// Larger: joiners of more steps served at once; smaller: less memory
	// (a full copy of the state each).
	maxPinnedSteps = 2

	// maxStateStreams caps the joiners' streams a donor serves at once.
	// Larger: more joiners served in parallel; smaller: less of the
	// donor's uplink and CPU taken from its own training.
	maxStateStreams = 8

	// maxStateStreamsPerPeer caps one joiner's streams at a donor: a
	// joiner needs one stream per attempt, two lets a retry overlap.
	// Larger only lets one peer take more of maxStateStreams.
	maxStateStreamsPerPeer = 2

	// minLinkRate is the slowest joiner link a donor serves for sure, in
	// bytes per second (1 Mbit/s: node's default MinLinkRate, half the
	// slowest member of the slow-link suite). A stream that has taken less than this since its
	// grace period may lose its slot to a new joiner when all are taken,
	// and a stream's lifetime is the state's bytes at this rate. Lower:
	// slower joiners are safe, a slot squatter lasts longer; higher: the
	// reverse.
	minLinkRate = 125e3

	// streamGrace is how long a new stream holds its slot before it must
	// keep up with minLinkRate: the pin (a step or two of waiting) and the
	// first chunks. Longer: joiners that wait long for a step keep their
	// slots; shorter: squatters are displaced sooner.
	streamGrace = 10 * time.Second

	// lifetimeSlack is added to a stream's transfer time at minLinkRate:
	// room for round trips and a pause of the joiner's. It also bounds
	// how long a stream serving a tiny state may sit idle.
	lifetimeSlack = 10 * time.Second

	// maxDonorWait caps how long a donor behind the requested step waits
	// to reach it, whatever the joiner asks. Longer: a joiner can pin a
	// step further ahead; shorter: a stream slot is held less long.
	maxDonorWait = 30 * time.Second

	// pinSlack bounds a donor's pin at the joiner's wait plus this: a
	// backstop behind the wait's own timer.
	pinSlack = time.Second

	// manifestSlack is how long past its requested wait a joiner waits
	// for a donor's manifest (opening the stream included). Longer: slow
	// donors still count; shorter: a dead donor costs less.
	manifestSlack = 10 * time.Second

	// maxFetchDonors caps the donors a joiner downloads from at once
	// (best first). More: faster downloads and more spares when donors
	// die; fewer: less load on the swarm per joiner.
	maxFetchDonors = 4

	// maxFetchAttempts caps how often a download pins a newer step after
	// no donor could pin the one asked for. More: keeps up with a fast
	// swarm; fewer: a joiner gives up (and retries from the top) sooner.
	maxFetchAttempts = 3
)
