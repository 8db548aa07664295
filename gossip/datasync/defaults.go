package datasync

import "time"

// The package's tunables. ChunkSize is not one of them: it is part of
// every dataset's root.
const (
	// ChunkSize is the bytes per chunk (the last one of a dataset may be
	// shorter): 256 KiB, the frame size of a state chunk.
	ChunkSize = 256 << 10

	// MaxFiles bounds the files of a dataset: MNIST has 4, a text run a
	// few corpus files and a vocabulary.
	MaxFiles = 64

	// MaxBytes bounds a dataset's total size (1 GiB): far above MNIST's
	// 11 MB, low enough that a lying manifest cannot make a downloader
	// allocate without limit. MaxChunks follows from it.
	MaxBytes  = 1 << 30
	MaxChunks = MaxBytes / ChunkSize

	// maxNameLen bounds a file name in a manifest.
	maxNameLen = 128

	// maxStreams caps the streams a server serves at once, and
	// maxStreamsPerPeer one peer's share: a downloader needs one.
	maxStreams        = 8
	maxStreamsPerPeer = 2

	// minLinkRate is the slowest downloader link served for sure, in
	// bytes per second (1 Mbit/s, as for state): a stream's lifetime is
	// the whole dataset at this rate plus lifetimeSlack.
	minLinkRate   = 125e3
	lifetimeSlack = 30 * time.Second

	// streamGrace is how long a new stream holds its slot before it must
	// keep up with minLinkRate: when every slot is taken, the stream
	// furthest behind loses its slot to a newcomer. Longer: slow starts
	// are safe; shorter: squatters are displaced sooner.
	streamGrace = 10 * time.Second

	// manifestWait bounds how long a downloader waits for a peer's
	// manifest, opening the stream included.
	manifestWait = 15 * time.Second

	// maxFetchPeers caps the peers a download uses at once.
	maxFetchPeers = 4
)
