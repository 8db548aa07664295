package trainer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/swarmtrain/swarmtrain/trainer/text"
)

// Random streams of the text datasets (PCG second seeds), so that masks and
// pairings never repeat another stream's draws.
const (
	streamMLM      = 0x6d6c6d   // "mlm"
	streamNSP      = 0x6e7370   // "nsp"
	streamReplaced = 0x7265706c // "repl"
	streamSource   = 0x73726365 // "srce"
)

// OpticksPath is the public-domain text in Go's own source tree, part of
// DefaultCorpus: under the GOROOT this binary was
// built with, or else under the one `go env GOROOT` names (a binary copied
// to another machine with Go installed elsewhere).
func OpticksPath() string {
	rel := filepath.Join("src", "testdata", "Isaac.Newton-Opticks.txt")
	p := filepath.Join(runtime.GOROOT(), rel)
	if _, err := os.Stat(p); err != nil {
		if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
			if alt := filepath.Join(strings.TrimSpace(string(out)), rel); alt != rel {
				return alt
			}
		}
	}
	return p
}

// The Adventures of Tom Sawyer (Mark Twain, public domain), as the
// klauspost/compress module, which this program is built with, ships it.
const sawyerModule = "github.com/klauspost/compress"

var sawyerFile = filepath.Join("testdata", "Mark.Twain-Tom.Sawyer.txt")

// SawyerPath finds Tom Sawyer in the module cache (see moduleDir).
func SawyerPath() (string, error) {
	ok := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, sawyerFile))
		return err == nil
	}
	dir, tried := moduleDir(sawyerModule, ok)
	if dir == "" {
		return "", fmt.Errorf("corpus: cannot find Tom Sawyer from %s (tried %s); give text files with --text", sawyerModule, strings.Join(tried, "; "))
	}
	return filepath.Join(dir, sawyerFile), nil
}

// DefaultCorpus is the text the text tasks use when given none: Newton's
// Opticks and Twain's Tom Sawyer, public-domain books that come with Go
// and with a module of this program, so nothing is downloaded. Two books
// of different kinds are what the source task tells apart.
func DefaultCorpus() ([]string, error) {
	sawyer, err := SawyerPath()
	if err != nil {
		return nil, err
	}
	return []string{OpticksPath(), sawyer}, nil
}

// SplitTail cuts every document at frac of its length (on a line break
// when there is one nearby): the heads to train on, the tails to test on.
// Contiguous tails keep test passages out of the training text.
func SplitTail(docs []string, frac float64) (train, test []string) {
	for _, d := range docs {
		cut := int(float64(len(d)) * (1 - frac))
		if i := strings.IndexByte(d[cut:], '\n'); i >= 0 {
			cut += i
		}
		train, test = append(train, d[:cut]), append(test, d[cut:])
	}
	return train, test
}

// MLMDataset cuts the token stream of docs into sequences of seq tokens
// ([CLS] tokens… [SEP]) and masks each copies times with fresh draws, as
// BERT's static masking does: every ordinary token is picked with
// probability 15% (at most MaskedPerSequence(seq) per sequence) and
// replaced by [MASK] 80% of the time, a random token 10%, itself 10%.
// Rows are the inputs followed by the targets (−1 where not picked).
func MLMDataset(name string, tok *text.Tokenizer, docs []string, seq, copies int, seed uint64) (*Dataset, error) {
	if seq < 4 || seq > maxBERTSeq || copies < 1 || copies > 100 {
		return nil, fmt.Errorf("mlm data: seq %d (want 4..%d), copies %d (want 1..100)", seq, maxBERTSeq, copies)
	}
	var stream []int
	for _, d := range docs {
		stream = append(stream, tok.Encode(d)...)
	}
	body := seq - 2
	chunks := len(stream) / body
	if chunks == 0 {
		return nil, fmt.Errorf("mlm data %q: %d tokens, fewer than one sequence of %d", name, len(stream), body)
	}
	r := rand.New(rand.NewPCG(seed, streamMLM))
	limit := MaskedPerSequence(seq)
	ds := &Dataset{Name: name, N: chunks * copies, Dim: 2 * seq, Classes: 2, Vocab: tok.Size(), MLM: true}
	ds.X = make([]float32, ds.N*ds.Dim)
	ds.Y = make([]uint8, ds.N)
	ordinary := tok.Size() - len(text.Specials)
	for c := range copies {
		for k := range chunks {
			row := ds.X[(c*chunks+k)*ds.Dim:][:ds.Dim]
			in, tgt := row[:seq], row[seq:]
			in[0], in[seq-1] = text.ClsID, text.SepID
			for i := range tgt {
				tgt[i] = -1
			}
			picked := 0
			for i, id := range stream[k*body : (k+1)*body] {
				in[1+i] = float32(id)
				if picked == limit || r.Float64() >= mlmMaskPercent/100.0 {
					continue
				}
				picked++
				tgt[1+i] = float32(id)
				switch u := r.Float64(); {
				case u < mlmMaskShare:
					in[1+i] = text.MaskID
				case u < mlmMaskShare+mlmRandomShare:
					in[1+i] = float32(len(text.Specials) + r.IntN(ordinary))
				}
			}
		}
	}
	return ds, nil
}

// sentences splits a token stream after every ".", "?" or "!".
func sentences(tok *text.Tokenizer, stream []int) [][]int {
	ends := map[int]bool{}
	for _, p := range []string{".", "?", "!"} {
		if id, ok := tok.ID(p); ok {
			ends[id] = true
		}
	}
	var out [][]int
	start := 0
	for i, id := range stream {
		if ends[id] {
			if i+1-start >= 2 {
				out = append(out, stream[start:i+1])
			}
			start = i + 1
		}
	}
	return out
}

// NSPDataset is next-sentence prediction, a classification task built
// from the corpus: a row is [CLS] A [SEP] B [SEP] (padded to seq), label 1
// when B is the sentence that follows A in the text and 0 when B is a
// sentence drawn from elsewhere in the same document, half and half.
func NSPDataset(name string, tok *text.Tokenizer, docs []string, seq int, seed uint64) (*Dataset, error) {
	if seq < 8 || seq > maxBERTSeq {
		return nil, fmt.Errorf("nsp data: seq %d, want 8..%d", seq, maxBERTSeq)
	}
	// Pairs never cross a document boundary, and B's stand-ins come from
	// A's own document: with two books, a sentence from the other one
	// would give itself away by its style, not by not following A.
	var perDoc [][][]int
	pairs := 0
	for _, d := range docs {
		if sents := sentences(tok, tok.Encode(d)); len(sents) >= 3 {
			perDoc = append(perDoc, sents)
			pairs += len(sents) - 1
		}
	}
	if pairs == 0 {
		return nil, fmt.Errorf("nsp data %q: no text has 3 sentences", name)
	}
	r := rand.New(rand.NewPCG(seed, streamNSP))
	half := (seq - 3) / 2
	ds := &Dataset{Name: name, N: pairs, Dim: seq, Classes: 2, Vocab: tok.Size()}
	ds.X = make([]float32, ds.N*seq)
	ds.Y = make([]uint8, ds.N)
	row := 0
	for _, sents := range perDoc {
		for i := range len(sents) - 1 {
			a, b := sents[i], sents[i+1]
			if r.IntN(2) == 0 {
				j := r.IntN(len(sents) - 2)
				if j >= i { // anything but i+1 (and i)
					j += 2
				}
				b = sents[j]
			} else {
				ds.Y[row] = 1
			}
			a = a[max(0, len(a)-half):] // the end of A touches B
			b = b[:min(len(b), seq-3-len(a))]
			putSequence(ds.X[row*seq:(row+1)*seq], a, b)
			row++
		}
	}
	return ds, nil
}

// putSequence writes [CLS] s₁ [SEP] s₂ [SEP] … at the start of row; the
// caller has cut the segments to fit.
func putSequence(row []float32, segments ...[]int) {
	row[0] = text.ClsID
	i := 1
	for _, seg := range segments {
		for _, id := range seg {
			row[i] = float32(id)
			i++
		}
		row[i] = text.SepID
		i++
	}
}

// TextColumns name a table's text and label columns (CSV header names,
// JSONL keys); empty means "text" and "label".
type TextColumns struct{ Text, Label string }

func (c TextColumns) names() (string, string) {
	t, l := c.Text, c.Label
	if t == "" {
		t = "text"
	}
	if l == "" {
		l = "label"
	}
	return t, l
}

// maxJSONLLine caps one JSONL record.
const maxJSONLLine = 1 << 20

// textRow is one labelled text of a table, encoded.
type textRow struct {
	ids   []int
	label string
}

// ReadTextCSV reads "text,label" rows (a header row "text,label" is
// skipped) and encodes each text as [CLS] tokens… [SEP], cut or padded to
// seq. Labels are names; classes are numbered in sorted name order, or by
// labels when given (a test file must use the training file's classes).
// Errors name the line.
func ReadTextCSV(name string, r io.Reader, tok *text.Tokenizer, seq int, labels []string) (*Dataset, []string, error) {
	return ReadTextTable(name, r, tok, seq, labels, TextColumns{}, false)
}

// ReadTextTable is ReadTextCSV for CSV with named columns (a header row
// naming cols picks them out of any number of columns; without one, rows
// are text,label) or, jsonl, for JSON Lines: one object a line, the text a
// string under cols.Text and the label a string or number under
// cols.Label; blank lines are skipped.
func ReadTextTable(name string, r io.Reader, tok *text.Tokenizer, seq int, labels []string, cols TextColumns, jsonl bool) (*Dataset, []string, error) {
	if seq < 3 || seq > maxBERTSeq {
		return nil, nil, fmt.Errorf("%s: seq %d, want 3..%d", name, seq, maxBERTSeq)
	}
	var rows []textRow
	var err error
	if jsonl {
		rows, err = readJSONLRows(name, r, tok, cols)
	} else {
		rows, err = readCSVRows(name, r, tok, cols)
	}
	if err != nil {
		return nil, nil, err
	}
	return textRowsDataset(name, rows, tok, seq, labels)
}

func readCSVRows(name string, r io.Reader, tok *text.Tokenizer, cols TextColumns) ([]textRow, error) {
	tname, lname := cols.names()
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	ti, li := 0, 1
	var rows []textRow
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err) // csv errors carry the line
		}
		line, _ := cr.FieldPos(0)
		if line == 1 {
			rec[0] = strings.TrimPrefix(rec[0], "\ufeff") // a byte-order mark, as spreadsheets write
			t := slices.IndexFunc(rec, func(f string) bool { return strings.EqualFold(strings.TrimSpace(f), tname) })
			l := slices.IndexFunc(rec, func(f string) bool { return strings.EqualFold(strings.TrimSpace(f), lname) })
			if t >= 0 && l >= 0 && t != l {
				ti, li = t, l
				continue // the header
			}
			if len(rec) != 2 {
				return nil, fmt.Errorf("%s: line 1: %d columns and no header naming %q and %q, want a header or text,label rows", name, len(rec), tname, lname)
			}
		}
		label := strings.TrimSpace(rec[li])
		if label == "" {
			return nil, fmt.Errorf("%s: line %d: empty label", name, line)
		}
		ids := tok.Encode(rec[ti])
		if len(ids) == 0 {
			return nil, fmt.Errorf("%s: line %d: the text has no words", name, line)
		}
		rows = append(rows, textRow{ids, label})
	}
	return rows, nil
}

func readJSONLRows(name string, r io.Reader, tok *text.Tokenizer, cols TextColumns) ([]textRow, error) {
	tname, lname := cols.names()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxJSONLLine)
	var rows []textRow
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\ufeff"))
		}
		if len(b) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		var txt string
		if err := json.Unmarshal(obj[tname], &txt); err != nil || obj[tname] == nil {
			return nil, fmt.Errorf("%s: line %d: %q is not a string", name, line, tname)
		}
		var label string
		raw := obj[lname]
		if err := json.Unmarshal(raw, &label); err != nil {
			var num json.Number
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if raw == nil || d.Decode(&num) != nil {
				return nil, fmt.Errorf("%s: line %d: %q is not a string or a number", name, line, lname)
			}
			label = num.String()
		}
		label = strings.TrimSpace(label)
		if label == "" {
			return nil, fmt.Errorf("%s: line %d: empty label", name, line)
		}
		ids := tok.Encode(txt)
		if len(ids) == 0 {
			return nil, fmt.Errorf("%s: line %d: the text has no words", name, line)
		}
		rows = append(rows, textRow{ids, label})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w (lines are limited to %d bytes)", name, err, maxJSONLLine)
	}
	return rows, nil
}

// textRowsDataset numbers the labels (sorted, unless given) and lays the
// rows out as [CLS] tokens… [SEP] sequences of seq ids.
func textRowsDataset(name string, rows []textRow, tok *text.Tokenizer, seq int, labels []string) (*Dataset, []string, error) {
	if len(rows) == 0 {
		return nil, nil, fmt.Errorf("%s: no rows", name)
	}
	if labels == nil {
		seen := map[string]bool{}
		for _, r := range rows {
			if !seen[r.label] {
				seen[r.label] = true
				labels = append(labels, r.label)
			}
		}
		slices.Sort(labels)
		if len(labels) < 2 || len(labels) > 256 {
			return nil, nil, fmt.Errorf("%s: %d distinct labels, want 2..256", name, len(labels))
		}
	}
	class := map[string]int{}
	for i, l := range labels {
		class[l] = i
	}
	ds := &Dataset{Name: name, N: len(rows), Dim: seq, Classes: len(labels), Vocab: tok.Size(), Labels: labels}
	ds.X = make([]float32, ds.N*seq)
	ds.Y = make([]uint8, ds.N)
	for i, r := range rows {
		c, ok := class[r.label]
		if !ok {
			return nil, nil, fmt.Errorf("%s: row %d: label %q is not one of the training labels %v", name, i+1, r.label, labels)
		}
		ds.Y[i] = uint8(c)
		putSequence(ds.X[i*seq:(i+1)*seq], r.ids[:min(len(r.ids), seq-2)])
	}
	return ds, labels, nil
}

// ReplacedDataset is replaced-word detection, a classification task built
// from the corpus: a row is [CLS] a passage of the text [SEP], label 1 when
// it is as written and 0 when a few of its words were replaced by words
// drawn from elsewhere in its document (so by frequency alone the two look
// the same), half and half. Spotting the words that do not fit their
// context is what a masked-language model learns.
func ReplacedDataset(name string, tok *text.Tokenizer, docs []string, seq int, seed uint64) (*Dataset, error) {
	if seq < 8 || seq > maxBERTSeq {
		return nil, fmt.Errorf("replaced data: seq %d, want 8..%d", seq, maxBERTSeq)
	}
	// Passages never cross a document boundary, and replacements come
	// from the passage's own document (another book's words would stand
	// out by their style, not by not fitting).
	per := max(4, (seq-2)*3/4) // words per passage: most fit in seq-2 pieces
	var perDoc [][]string
	n := 0
	for _, d := range docs {
		if words := text.Words(d); len(words) >= per {
			perDoc = append(perDoc, words)
			n += len(words) / per
		}
	}
	if n < 2 {
		return nil, fmt.Errorf("replaced data %q: %d passages of %d words, want at least 2", name, n, per)
	}
	r := rand.New(rand.NewPCG(seed, streamReplaced))
	ds := &Dataset{Name: name, N: n, Dim: seq, Classes: 2, Vocab: tok.Size()}
	ds.X = make([]float32, n*seq)
	ds.Y = make([]uint8, n)
	passage := make([]string, per)
	i := 0
	for _, words := range perDoc {
		for k := range len(words) / per {
			copy(passage, words[k*per:(k+1)*per])
			ds.Y[i] = 1
			if r.IntN(2) == 0 {
				ds.Y[i] = 0
				// Replacements stay in the first two thirds, which
				// survive truncation to seq tokens.
				for range max(1, per/replacedWordDivisor) {
					j := r.IntN(max(1, per*2/3))
					for tries := 0; tries < 100 && passage[j] == words[k*per+j]; tries++ { // a different word
						passage[j] = words[r.IntN(len(words))]
					}
				}
			}
			ids := tok.Encode(strings.Join(passage, " "))
			putSequence(ds.X[i*seq:(i+1)*seq], ids[:min(len(ids), seq-2)])
			i++
		}
	}
	return ds, nil
}

// MaxSourceTexts is how many texts SourceDataset tells apart at most (its
// labels are bytes).
const MaxSourceTexts = 256

// SourceDataset asks which text a passage comes from, a classification
// task built from the corpus: a row is [CLS] seq-2 consecutive tokens
// [SEP], labelled with the index of its document. Every row is full, so
// length tells nothing (sentences would: Newton's are long, Twain's
// short), and every document gives as many rows as the shortest, picked
// evenly along it, so the classes are balanced.
func SourceDataset(name string, tok *text.Tokenizer, docs []string, seq int, seed uint64) (*Dataset, error) {
	if seq < 8 || seq > maxBERTSeq {
		return nil, fmt.Errorf("source data: seq %d, want 8..%d", seq, maxBERTSeq)
	}
	if len(docs) < 2 || len(docs) > MaxSourceTexts {
		return nil, fmt.Errorf("source data %q: %d texts, want 2..%d (the label is the text)", name, len(docs), MaxSourceTexts)
	}
	size := seq - 2
	streams := make([][]int, len(docs))
	least := -1
	for i, d := range docs {
		streams[i] = tok.Encode(d)
		if len(streams[i]) < size {
			return nil, fmt.Errorf("source data %q: text %d has %d tokens, fewer than a passage (%d)", name, i+1, len(streams[i]), size)
		}
		if n := len(streams[i]) / size; least < 0 || n < least {
			least = n
		}
	}
	ds := &Dataset{Name: name, N: least * len(docs), Dim: seq, Classes: len(docs), Vocab: tok.Size()}
	ds.X = make([]float32, ds.N*seq)
	ds.Y = make([]uint8, ds.N)
	// Rows in a seeded order, so a shard or a prefix holds every class.
	order := perm(ds.N, seed, streamSource)
	for i, stream := range streams {
		n := len(stream) / size
		for j := range least {
			k := j * n / least
			row := order[i*least+j]
			ds.Y[row] = uint8(i)
			putSequence(ds.X[row*seq:(row+1)*seq], stream[k*size:(k+1)*size])
		}
	}
	return ds, nil
}
