// Package statesync hands a joiner the swarm's state: donors pin one step
// and serve it from a frozen copy (Server), and the joiner downloads it in
// verified chunks from several donors at once (Fetch, Download). The
// state hash peers gossip (HashState) is a hash over the chunks' hashes,
// so every chunk is checked on arrival, from whichever donor sent it.
//
// Its streams go through gossip.Transport, so it runs over
// gossip.MemNetwork in tests.
package statesync
