package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/datasync"
	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// The data comes with the swarm. A node that finds no MNIST on its
// machine (no --data, no GoMNIST module in a Go module cache, nothing
// downloaded before in its --dir) fetches the files from the peers it
// joins through, in verified chunks (package datasync), and keeps them in
// --dir/data/mnist, so a restart reuses them. The run names the dataset
// ("mnist"); this build pins which bytes that is: mnistRoot, the
// datasync root of the GoMNIST files. Local files win: a node only
// downloads what it cannot find. Every node whose MNIST is those files
// (found or downloaded) serves them to admitted peers unless
// --no-serve-data.

// mnistRoot is datasync's root of trainer.MNISTGzipNames as the GoMNIST
// module ships them (11,594,722 bytes in 45 chunks). A manifest from a
// peer must hash to it before a byte of data is asked for.
const mnistRoot = "751b255c287c579d49bc8fd843ab27ac040f450be198748ca4f8ad2d323d107b"

// dataFetchTimeout bounds finding peers and downloading the dataset from
// them: MNIST takes 90 s at 1 Mbit/s, the slowest link a swarm serves.
const dataFetchTimeout = 10 * time.Minute

// moduleMNIST finds the GoMNIST module's data folder; tests replace it
// to play a machine without Go.
var moduleMNIST = trainer.MNISTDir

// downloadedMNIST is where a node keeps the MNIST its peers gave it.
func downloadedMNIST(dir string) string { return filepath.Join(dir, "data", "mnist") }

// locateMNIST is the folder LoadMNIST reads: --data, else the GoMNIST
// module's copy, else what peers gave this node before. "" means none:
// why names what was tried.
func locateMNIST(cfg Config) (dir string, why []string) {
	if cfg.DataDir != "" {
		return cfg.DataDir, nil
	}
	d, err := moduleMNIST()
	if err == nil {
		return d, nil
	}
	why = append(why, err.Error())
	down := downloadedMNIST(cfg.Dir)
	if _, err := mnistDataset(down); err != nil {
		return "", append(why, err.Error())
	}
	return down, nil
}

// mnistDataset reads the GoMNIST files in dir: what this node serves,
// if they are exactly those files.
func mnistDataset(dir string) (*datasync.Dataset, error) {
	var files []datasync.File
	for _, name := range trainer.MNISTGzipNames() {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("mnist: %w", err)
		}
		files = append(files, datasync.File{Name: name, Data: b})
	}
	ds, err := datasync.NewDataset(files)
	if err != nil {
		return nil, fmt.Errorf("mnist in %s: %w", dir, err)
	}
	if ds.Root() != mnistRoot {
		return nil, fmt.Errorf("mnist in %s: the files are not the GoMNIST ones (data root %s, want %s)", dir, ds.Root(), mnistRoot)
	}
	return ds, nil
}

// ensureData makes n.cfg.DataDir the folder of the run's MNIST, fetching
// it from the join peers when this machine has none. Text runs name
// their files on the command line (their hashes are in the run).
func (n *Node) ensureData(ctx context.Context) error {
	if n.cfg.Run.IsText() {
		return nil
	}
	dir, why := locateMNIST(n.cfg)
	if dir == "" {
		n.log.Info("no MNIST on this machine: fetching it from peers", "tried", strings.Join(why, "; "))
		var err error
		if dir, err = n.fetchMNIST(ctx); err != nil {
			return fmt.Errorf("%w (looked for local MNIST first: %s; --data DIR gives a folder of it)", err, strings.Join(why, "; "))
		}
	}
	n.cfg.DataDir = dir
	return nil
}

// fetchMNIST downloads MNIST from the join peers into --dir/data/mnist.
func (n *Node) fetchMNIST(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, dataFetchTimeout)
	defer cancel()
	peers, err := n.dataPeers(ctx)
	if len(peers) == 0 {
		return "", fmt.Errorf("mnist: no peer to fetch it from: %w", err)
	}
	got, err := datasync.Fetch(ctx, n.net, peers, datasync.Request{Root: mnistRoot})
	if err != nil {
		return "", fmt.Errorf("mnist: fetching from peers: %w", err)
	}
	for p, e := range got.Failed {
		n.log.Warn("data peer dropped", "peer", p, "reason", e)
	}
	dir := downloadedMNIST(n.cfg.Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for _, f := range got.Files {
		if err := atomicfile.Write(filepath.Join(dir, f.Name), f.Data); err != nil {
			return "", fmt.Errorf("mnist: keeping the download: %w", err)
		}
	}
	n.log.Info("fetched data", "dataset", "mnist", "root", got.Root, "dir", dir, "chunks", fmt.Sprint(got.Chunks))
	return dir, nil
}

// dataPeers connects to the join addresses and greets each: the peers
// that admitted us, and, when none did, why.
func (n *Node) dataPeers(ctx context.Context) ([]peer.ID, error) {
	if len(n.cfg.Join) == 0 {
		return nil, errors.New("no --join address")
	}
	var peers []peer.ID
	var errs []error
	for _, addr := range n.cfg.Join {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		p, err := n.net.Connect(cctx, addr)
		if err == nil {
			err = n.adm.Greet(cctx, n.net, p)
			var ref *gossip.RefusedError
			if errors.As(err, &ref) {
				err = fmt.Errorf("refused by %s: %s", p, ref.Reason)
			}
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		peers = append(peers, p)
	}
	return peers, errors.Join(errs...)
}

// serveData serves the run's dataset to admitted peers, when this node
// holds the files the run pins and may serve them.
func (n *Node) serveData() {
	switch {
	case n.cfg.NoServeData:
		n.log.Info("not serving data", "reason", "--no-serve-data")
		return
	case n.cfg.Run.IsText():
		return
	}
	ds, err := mnistDataset(n.cfg.DataDir)
	if err != nil {
		n.log.Info("not serving data", "reason", err)
		return
	}
	datasync.NewServer(n.adv.dataNet(n.net), ds, nil)
}
