package node

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
//
// A text run names its data by hash (data.files over the text files,
// data.vocab over the vocabulary), not by bytes this build knows. A node
// given none of those files (cmd leaves VocabPath empty) downloads the
// dataset most of its peers announce, and keeps it only if it hashes to
// what the run names; peers that served one that does not are left out
// of the next try. The text files travel as NN-NAME, in the run's order,
// then vocab.txt; they are kept in --dir/data/text.

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
// it from the join peers when this machine has none; for a text run
// without local files, it sets the text and vocabulary paths to the
// files fetched from the peers.
func (n *Node) ensureData(ctx context.Context) error {
	if n.cfg.Run.IsText() {
		return n.ensureText(ctx)
	}
	if n.cfg.Run.Data.Dataset == DatasetImages {
		if n.cfg.DataDir == "" {
			return errors.New("dataset images: this node has no --data folder (image folders are not fetched from peers)")
		}
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
	ctx, cancel := n.clock.WithTimeout(ctx, dataFetchTimeout)
	defer cancel()
	peers, err := n.dataPeers(ctx)
	if len(peers) == 0 {
		return "", fmt.Errorf("mnist: no peer to fetch it from: %w", err)
	}
	got, err := datasync.Fetch(ctx, n.net, peers, datasync.Request{Root: mnistRoot, Clock: n.clock})
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

// dataPeers connects to the join addresses and greets each, then greets
// the other peers their welcomes listed (up to maxDataPeers in all), so
// one join address is enough to download from several peers at once. It
// returns the peers that admitted us and, when none did, why.
func (n *Node) dataPeers(ctx context.Context) ([]peer.ID, error) {
	if len(n.cfg.Join) == 0 {
		return nil, errors.New("no --join address")
	}
	var peers []peer.ID
	var listed []gossip.PeerAddrs
	var errs []error
	for _, addr := range n.cfg.Join {
		cctx, cancel := n.clock.WithTimeout(ctx, 15*time.Second)
		p, err := n.net.Connect(cctx, addr)
		var more []gossip.PeerAddrs
		if err == nil {
			more, err = n.adm.GreetPeers(cctx, n.net, p)
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
		listed = append(listed, more...)
	}
	// The listed peers: dial hints from peers that admitted us; each
	// must admit us too, and its data is verified like anyone's.
	var extra []gossip.PeerAddrs
	for _, l := range listed {
		if len(peers)+len(extra) >= maxDataPeers {
			break
		}
		if l.ID != n.ID() && !slices.Contains(peers, l.ID) && !slices.ContainsFunc(extra, func(e gossip.PeerAddrs) bool { return e.ID == l.ID }) {
			extra = append(extra, l)
		}
	}
	ok := make([]bool, len(extra))
	var wg sync.WaitGroup
	for i, l := range extra {
		wg.Go(func() {
			cctx, cancel := n.clock.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			n.net.Learn(l.ID, l.Addrs)
			if err := n.net.Redial(cctx, l.ID); err != nil {
				n.log.Debug("listed data peer not reachable", "peer", l.ID, "err", err)
				return
			}
			ok[i] = n.adm.Greet(cctx, n.net, l.ID) == nil
		})
	}
	wg.Wait()
	for i, l := range extra {
		if ok[i] {
			peers = append(peers, l.ID)
		}
	}
	return peers, errors.Join(errs...)
}

// maxDataPeers caps the peers a download greets: the join peers and the
// peers their welcomes listed.
const maxDataPeers = 8

// welcomePeers lists, for a welcome to asker, live peers of the run that
// others can dial (not clients), with their addresses.
func (n *Node) welcomePeers(asker peer.ID) []gossip.PeerAddrs {
	var out []gossip.PeerAddrs
	for _, m := range n.view.Live(n.clock.Now()) {
		if len(out) == gossip.MaxWelcomePeers {
			break
		}
		if m.Peer == asker || m.Peer == n.ID() || m.Client || len(m.Addrs) == 0 {
			continue
		}
		out = append(out, gossip.PeerAddrs{ID: m.Peer, Addrs: m.Addrs[:min(len(m.Addrs), 4)]})
	}
	return out
}

// serveData serves the run's dataset to admitted peers, when this node
// holds the files the run pins and may serve them.
func (n *Node) serveData() {
	switch {
	case n.cfg.NoServeData:
		n.log.Info("not serving data", "reason", "--no-serve-data")
		return
	case n.cfg.Run.Data.Dataset == DatasetImages:
		return // each peer brings its own image folder
	}
	var ds *datasync.Dataset
	var err error
	if n.cfg.Run.IsText() {
		ds, err = textDataset(n.cfg)
	} else {
		ds, err = mnistDataset(n.cfg.DataDir)
	}
	if err != nil {
		n.log.Info("not serving data", "reason", err)
		return
	}
	datasync.NewServer(n.adv.dataNet(n.net), ds, n.clock)
}

// vocabName is the vocabulary's name among a text run's served files.
const vocabName = "vocab.txt"

// downloadedText is where a node keeps the text its peers gave it.
func downloadedText(dir string) string { return filepath.Join(dir, "data", "text") }

// textName is the served name of a run's text file i: its index (the
// order is part of data.files) and its base name, made a datasync name.
func textName(i int, path string) string {
	base := []byte(filepath.Base(path))
	for j, c := range base {
		if datasync.ValidName(string(c)) != nil && c != '.' {
			base[j] = '_'
		}
	}
	return fmt.Sprintf("%02d-%s", i, truncateName(string(base), 100))
}

func truncateName(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// textDataset is a text run's files as served: the text files in order,
// then the vocabulary.
func textDataset(cfg Config) (*datasync.Dataset, error) {
	paths, contents, sum, err := cfg.readTextFiles()
	if err != nil {
		return nil, err
	}
	if sum != cfg.Run.Data.Files {
		return nil, fmt.Errorf("text data %v has SHA-256 %s, the run names %s", paths, sum, cfg.Run.Data.Files)
	}
	vb, err := readVocab(cfg)
	if err != nil {
		return nil, err
	}
	var files []datasync.File
	for i, p := range paths {
		files = append(files, datasync.File{Name: textName(i, p), Data: contents[i]})
	}
	return datasync.NewDataset(append(files, datasync.File{Name: vocabName, Data: vb}))
}

// checkText accepts files only as a text run's served dataset whose text
// hashes to data.files and whose vocabulary to data.vocab.
func checkText(r RunConfig) func([]datasync.File) error {
	return func(files []datasync.File) error {
		if len(files) < 2 || files[len(files)-1].Name != vocabName {
			return fmt.Errorf("want text files, then %s", vocabName)
		}
		texts := files[:len(files)-1]
		if r.Data.Dataset == DatasetCSV && len(texts) != 2 {
			return fmt.Errorf("dataset csv has a training and a test file, got %d files", len(texts))
		}
		h := sha256.New()
		for i, f := range texts {
			if !strings.HasPrefix(f.Name, fmt.Sprintf("%02d-", i)) {
				return fmt.Errorf("text file %d is named %q, want it to start with %02d-", i, f.Name, i)
			}
			h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(f.Data))))
			h.Write(f.Data)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != r.Data.Files {
			return fmt.Errorf("the text files have SHA-256 %s, the run names %s (data.files)", sum, r.Data.Files)
		}
		if sum := sha256Hex(files[len(files)-1].Data); sum != r.Data.Vocab {
			return fmt.Errorf("the vocabulary has SHA-256 %s, the run names %s (data.vocab)", sum, r.Data.Vocab)
		}
		return nil
	}
}

// ensureText finds a text run's files: named ones (VocabPath set: cmd
// found them), an earlier download, or the peers'.
func (n *Node) ensureText(ctx context.Context) error {
	if n.cfg.VocabPath != "" {
		return nil
	}
	dir := downloadedText(n.cfg.Dir)
	files, err := readDownloadedText(dir)
	if err == nil {
		err = checkText(n.cfg.Run)(files)
	}
	if err != nil {
		n.log.Info("no text data on this machine: fetching it from peers", "kept", err)
		if files, err = n.fetchText(ctx); err != nil {
			return fmt.Errorf("text data: %w (or give this node the run's files: --text or --train-csv/--test-csv, and --vocab)", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		for _, f := range files {
			if err := atomicfile.Write(filepath.Join(dir, f.Name), f.Data); err != nil {
				return fmt.Errorf("text data: keeping the download: %w", err)
			}
		}
	}
	var texts []string
	for _, f := range files[:len(files)-1] {
		texts = append(texts, filepath.Join(dir, f.Name))
	}
	if n.cfg.Run.Data.Dataset == DatasetCSV {
		n.cfg.TrainCSV, n.cfg.TestCSV = texts[0], texts[1]
	} else {
		n.cfg.Corpus = texts
	}
	n.cfg.VocabPath = filepath.Join(dir, vocabName)
	return nil
}

// readDownloadedText reads an earlier download: NN-* files in order,
// then the vocabulary.
func readDownloadedText(dir string) ([]datasync.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []datasync.File
	for _, e := range entries { // sorted by name: NN- keeps the run's order
		if e.Name() == vocabName || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files = append(files, datasync.File{Name: e.Name(), Data: b})
	}
	vb, err := os.ReadFile(filepath.Join(dir, vocabName))
	if err != nil {
		return nil, err
	}
	return append(files, datasync.File{Name: vocabName, Data: vb}), nil
}

// fetchTextTries bounds the downloads of a text dataset: each try
// leaves out the peers whose dataset did not match the run.
const fetchTextTries = 3

// fetchText downloads a text run's files from the join peers.
func (n *Node) fetchText(ctx context.Context) ([]datasync.File, error) {
	ctx, cancel := n.clock.WithTimeout(ctx, dataFetchTimeout)
	defer cancel()
	peers, err := n.dataPeers(ctx)
	if len(peers) == 0 {
		return nil, fmt.Errorf("no peer to fetch it from: %w", err)
	}
	for range fetchTextTries {
		got, err := datasync.Fetch(ctx, n.net, peers, datasync.Request{Check: checkText(n.cfg.Run), Clock: n.clock})
		for p, e := range got.Failed {
			n.log.Warn("data peer dropped", "peer", p, "reason", e)
		}
		if err == nil {
			n.log.Info("fetched data", "dataset", n.cfg.Run.Data.Dataset, "root", got.Root, "chunks", fmt.Sprint(got.Chunks))
			return got.Files, nil
		}
		var left []peer.ID
		for _, p := range peers {
			if got.Failed[p] == nil {
				left = append(left, p)
			}
		}
		if len(left) == 0 || ctx.Err() != nil {
			return nil, err
		}
		peers = left
	}
	return nil, errors.New("every try fetched data that does not match the run")
}
