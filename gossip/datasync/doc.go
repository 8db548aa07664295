// Package datasync hands a node that lacks the run's dataset the files
// its peers train on. A dataset is an ordered list of named files, cut
// into chunks of ChunkSize bytes over their concatenation; its Manifest
// lists the files and one SHA-256 per chunk, and its Root, a hash over
// the manifest, names the dataset. A downloader that knows the root
// (MNIST's is pinned in the binary) checks each peer's manifest against
// it before asking for a byte, and each chunk against the manifest as it
// arrives: a peer that sends a chunk that does not match is dropped and
// its chunks go to the others, as in package statesync. Without a known
// root (a text run, whose run names a hash over whole files), the root
// most peers announce is downloaded and the caller's Check verifies the
// files at the end.
//
// Every peer may be hostile: names, sizes and counts are bounded before
// anything is allocated, servers cap streams in all and per peer, and a
// stream may take every chunk once, within a lifetime sized by the
// dataset at the slowest link served.
//
//	srv := datasync.NewServer(t, ds, nil) // serve what we have
//	got, err := datasync.Fetch(ctx, t, peers, datasync.Request{Root: root})
package datasync
