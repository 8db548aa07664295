package allreduce

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// Verified results. An owner sends its encoded average to every member;
// nothing in that exchange stops it from sending different bytes to
// different members (equivocation), and replicas would silently diverge.
// So once a member knows the direct outcome of every part (the bytes its
// owner sent, or none), it sends every other member a report: a digest of
// each part it holds. Before applying the round, a member compares its
// own digests with every report it got; any difference voids the round
// for it. Honest members report to each other directly, so if two of them
// hold different bytes, both see it and neither applies. A false report
// can only void a round: a member applies only the bytes it holds, and
// only if no report contradicts them. A repair answer (ProtoPart) is
// accepted only if it matches the digest most reports hold for the part.
//
// This file is that bookkeeping as plain data (digests, the report
// format, the comparisons); report.go does the streams and waiting.

// digest is the BLAKE3-256 hash of a part's final bytes. It must resist
// collisions, since the one who would forge one is the owner, who picks
// both byte strings: so not xxh3 (an owner crafts collisions for it at
// will), and all 32 bytes (a 128-bit truncation leaves a 2^64 birthday
// search; the 16 bytes saved per part and member are nothing next to a
// part). BLAKE3 rather than SHA-256 because every member hashes the
// whole averaged vector every round: on the AMD EPYC this was measured
// on, 1.5–1.8 GB/s against SHA-256's 0.3–0.55 GB/s (SHA-NI), which kept
// the check inside the all-reduce's cost budget.
type digest [32]byte

func digestOf(part []byte) digest { return blake3.Sum256(part) }

// report is what one member says it got directly: for each part of the
// round, the digest of its bytes, or none (has false).
type report struct {
	sums []digest
	has  []bool
}

// maxReport bounds a report frame: a round ID and a flag and digest for
// each part of the largest group.
const maxReport = maxHeader + binary.MaxVarintLen64 + gossip.MaxMembers*(1+len(digest{}))

// encodeReport frames rep for round id:
//
//	uvarint len(id) | id | uvarint k | k × (flag 0 | flag 1, digest)
func encodeReport(id string, rep report) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(id)+len(rep.has)*(1+len(digest{})))
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(rep.has)))
	for j, ok := range rep.has {
		if !ok {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = append(b, rep.sums[j][:]...)
	}
	return b
}

var errReport = errors.New("malformed report")

// decodeReport reads a report frame; anything out of shape (an ID longer
// than a header allows, more parts than a group may have, a flag other
// than 0 or 1, a short digest, stray bytes) is refused.
func decodeReport(b []byte) (id string, rep report, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > 64 || uint64(len(b)-w) < n {
		return "", report{}, fmt.Errorf("%w: round id", errReport)
	}
	id, b = string(b[w:w+int(n)]), b[w+int(n):]
	k, w := binary.Uvarint(b)
	if w <= 0 || k > gossip.MaxMembers {
		return "", report{}, fmt.Errorf("%w: part count", errReport)
	}
	b = b[w:]
	rep = report{sums: make([]digest, k), has: make([]bool, k)}
	for j := range rep.has {
		if len(b) == 0 {
			return "", report{}, fmt.Errorf("%w: part %d missing", errReport, j)
		}
		flag := b[0]
		b = b[1:]
		switch flag {
		case 0:
		case 1:
			if len(b) < len(digest{}) {
				return "", report{}, fmt.Errorf("%w: part %d: short digest", errReport, j)
			}
			copy(rep.sums[j][:], b)
			rep.has[j] = true
			b = b[len(digest{}):]
		default:
			return "", report{}, fmt.Errorf("%w: part %d: flag %d", errReport, j, flag)
		}
	}
	if len(b) != 0 {
		return "", report{}, fmt.Errorf("%w: %d stray bytes", errReport, len(b))
	}
	return id, rep, nil
}

// agreed returns the digest of part j that most reports hold (ok false
// when none holds one, or when two digests tie: the reports contradict
// each other, and the round is void anyway).
func agreed(reports []*report, j int) (d digest, ok bool) {
	counts := map[digest]int{}
	best := 0
	for _, rep := range reports {
		if rep == nil || !rep.has[j] {
			continue
		}
		c := counts[rep.sums[j]] + 1
		counts[rep.sums[j]] = c
		switch {
		case c > best:
			d, best, ok = rep.sums[j], c, true
		case c == best && rep.sums[j] != d:
			ok = false
		}
	}
	return d, ok
}

// held reports that some report holds a digest of part j.
func held(reports []*report, j int) bool {
	for _, rep := range reports {
		if rep != nil && rep.has[j] {
			return true
		}
	}
	return false
}

// mismatch is a report that contradicts our bytes of a part.
type mismatch struct {
	part, member int // the part, and the member whose report differs
}

// mismatches compares our digests (mine, held where have) with every
// report: each part a member reports with a digest other than ours is a
// mismatch. A part one side does not hold compares with nothing.
func mismatches(mine []digest, have []bool, reports []*report) []mismatch {
	var out []mismatch
	for m, rep := range reports {
		if rep == nil {
			continue
		}
		for j := range have {
			if have[j] && rep.has[j] && rep.sums[j] != mine[j] {
				out = append(out, mismatch{part: j, member: m})
			}
		}
	}
	return out
}

// ErrMismatch means members hold different final bytes of a part: its
// owner sent different results to different members, or a member
// reported a false digest. The round is void; nothing may be applied.
var ErrMismatch = errors.New("members hold different results")
