// Package text turns raw text into model input: cleaning and
// pre-tokenisation the way BERT does it (lower case, accents stripped,
// punctuation split off), and a WordPiece tokenizer that learns its
// vocabulary from a corpus, encodes and decodes, and saves as a BERT
// vocab.txt (one token per line, line number = id), so the Python
// ecosystem reads it as is.
package text

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Special tokens. Every vocabulary holds them, at the ids below.
const (
	PAD  = "[PAD]"
	UNK  = "[UNK]"
	CLS  = "[CLS]"
	SEP  = "[SEP]"
	MASK = "[MASK]"
)

// Specials lists the special tokens in id order: [PAD] is 0, [UNK] 1, …
var Specials = []string{PAD, UNK, CLS, SEP, MASK}

// Fixed ids of the special tokens.
const (
	PadID = iota
	UnkID
	ClsID
	SepID
	MaskID
)

// Limits on what a vocabulary or a word may be.
const (
	MaxVocab     = 1 << 16 // ids fit a uint16, and float32 holds them exactly
	MaxTokenLen  = 100     // bytes; a vocab line longer than this is refused
	maxWordRunes = 100     // longer words encode as [UNK], as BERT does
	continuation = "##"    // prefix of a piece that continues a word
)

// Clean normalises text the way BERT's uncased tokenizer does before
// splitting: Unicode NFD with combining marks dropped (é → e), lower
// case, control characters removed and every run of white space one
// space.
func Clean(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range norm.NFD.String(s) {
		switch {
		case r == utf8.RuneError || unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsSpace(r):
			space = true
			continue
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// Words cleans s and splits it into words: runs of letters and digits,
// and every punctuation or symbol character on its own ("don't." →
// don ' t .).
func Words(s string) []string {
	var words []string
	start := -1
	s = Clean(s)
	for i, r := range s {
		boundary := unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r)
		if boundary && start >= 0 {
			words = append(words, s[start:i])
			start = -1
		}
		switch {
		case unicode.IsSpace(r):
		case boundary:
			words = append(words, string(r))
		case start < 0:
			start = i
		}
	}
	if start >= 0 {
		words = append(words, s[start:])
	}
	return words
}

// Tokenizer is a WordPiece vocabulary: whole words and word-initial
// pieces, plus "##"-prefixed pieces that continue a word.
type Tokenizer struct {
	tokens []string
	ids    map[string]int
}

// New builds a tokenizer from a token list in id order. The specials must
// come first, in the order of Specials; tokens must be unique, non-empty,
// without white space and at most MaxTokenLen bytes.
func New(tokens []string) (*Tokenizer, error) {
	if len(tokens) < len(Specials)+1 || len(tokens) > MaxVocab {
		return nil, fmt.Errorf("wordpiece: %d tokens, want %d..%d", len(tokens), len(Specials)+1, MaxVocab)
	}
	t := &Tokenizer{tokens: slices.Clone(tokens), ids: make(map[string]int, len(tokens))}
	for i, tok := range tokens {
		if i < len(Specials) && tok != Specials[i] {
			return nil, fmt.Errorf("wordpiece: token %d is %q, want %q (the specials come first, in order %v)", i, tok, Specials[i], Specials)
		}
		switch {
		case tok == "" || tok == continuation:
			return nil, fmt.Errorf("wordpiece: token %d is empty", i)
		case len(tok) > MaxTokenLen:
			return nil, fmt.Errorf("wordpiece: token %d is %d bytes, want at most %d", i, len(tok), MaxTokenLen)
		case !utf8.ValidString(tok) || strings.IndexFunc(tok, unicode.IsSpace) >= 0:
			return nil, fmt.Errorf("wordpiece: token %d (%q) is not valid UTF-8 without spaces", i, tok)
		}
		if j, dup := t.ids[tok]; dup {
			return nil, fmt.Errorf("wordpiece: token %q at %d repeats token %d", tok, i, j)
		}
		t.ids[tok] = i
	}
	return t, nil
}

// Size is the number of tokens; ids run from 0 to Size-1.
func (t *Tokenizer) Size() int { return len(t.tokens) }

// Token returns the token with the given id ("" when out of range).
func (t *Tokenizer) Token(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// ID returns a token's id.
func (t *Tokenizer) ID(token string) (int, bool) {
	id, ok := t.ids[token]
	return id, ok
}

// Encode cleans and splits s and returns the ids of its pieces, without
// [CLS] or [SEP]. Each word is cut greedily into the longest pieces the
// vocabulary has; a word that cannot be cut (or is over 100 characters)
// becomes one [UNK].
func (t *Tokenizer) Encode(s string) []int {
	var ids []int
	for _, w := range Words(s) {
		ids = t.appendWord(ids, w)
	}
	return ids
}

func (t *Tokenizer) appendWord(ids []int, w string) []int {
	if utf8.RuneCountInString(w) > maxWordRunes {
		return append(ids, UnkID)
	}
	n := len(ids)
	for start := 0; start < len(w); {
		end, id := len(w), -1
		for ; end > start; end-- {
			if end < len(w) && !utf8.RuneStart(w[end]) {
				continue // not a rune boundary
			}
			piece := w[start:end]
			if start > 0 {
				piece = continuation + piece
			}
			if v, ok := t.ids[piece]; ok {
				id = v
				break
			}
		}
		if id < 0 {
			return append(ids[:n], UnkID)
		}
		ids = append(ids, id)
		start = end
	}
	return ids
}

// Decode turns ids back into text: pieces of one word are joined, words
// separated by spaces, specials kept as written ([PAD] dropped). Cleaning
// is not undone (the text comes back lower case, punctuation spaced).
func (t *Tokenizer) Decode(ids []int) string {
	var b strings.Builder
	for _, id := range ids {
		if id == PadID {
			continue
		}
		tok := t.Token(id)
		if tok == "" {
			tok = UNK
		}
		if rest, ok := strings.CutPrefix(tok, continuation); ok && b.Len() > 0 {
			b.WriteString(rest)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// Save writes the vocabulary as vocab.txt: one token per line, in id order.
func (t *Tokenizer) Save(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, tok := range t.tokens {
		bw.WriteString(tok)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// Load reads a vocab.txt written by Save (or by BERT tooling whose
// specials come first in our order), checking it as New does; errors name
// the line.
func Load(r io.Reader) (*Tokenizer, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64), MaxTokenLen+2) // max(cap, limit) bounds a line
	var tokens []string
	for sc.Scan() {
		if len(tokens) == MaxVocab {
			return nil, fmt.Errorf("wordpiece: vocabulary has more than %d lines", MaxVocab)
		}
		tok := strings.TrimSuffix(sc.Text(), "\r")
		if tok == "" {
			return nil, fmt.Errorf("wordpiece: line %d is empty", len(tokens)+1)
		}
		tokens = append(tokens, tok)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("wordpiece: line %d is longer than %d bytes", len(tokens)+1, MaxTokenLen)
		}
		return nil, fmt.Errorf("wordpiece: reading vocabulary: %w", err)
	}
	return New(tokens)
}

// Learn builds a vocabulary of at most size tokens from the words of
// corpus, as Hugging Face's WordPiece trainer does: start from every
// character (word-initial, and "##" continuing), then repeatedly merge the
// most frequent adjacent pair into a new token, until size is reached or
// no pair occurs minCount times. Ties go to the lexically smallest pair, so
// equal corpora give equal vocabularies.
func Learn(corpus []string, size, minCount int) (*Tokenizer, error) {
	if size < len(Specials)+1 || size > MaxVocab {
		return nil, fmt.Errorf("wordpiece: vocabulary size %d, want %d..%d", size, len(Specials)+1, MaxVocab)
	}
	minCount = max(minCount, 1)
	counts := map[string]int{}
	for _, doc := range corpus {
		for _, w := range Words(doc) {
			if utf8.RuneCountInString(w) <= maxWordRunes {
				counts[w]++
			}
		}
	}
	if len(counts) == 0 {
		return nil, errors.New("wordpiece: the corpus has no words")
	}
	type word struct {
		syms  []string
		count int
	}
	words := make([]word, 0, len(counts))
	charCount := map[string]int{}
	for _, w := range slices.Sorted(maps.Keys(counts)) {
		var syms []string
		for i, r := range w {
			s := string(r)
			if i > 0 {
				s = continuation + s
			}
			syms = append(syms, s)
			charCount[s] += counts[w]
		}
		words = append(words, word{syms, counts[w]})
	}
	// The alphabet first, most frequent first, so that even a small
	// vocabulary covers the common characters.
	vocab := slices.Clone(Specials)
	chars := slices.Collect(maps.Keys(charCount))
	slices.SortFunc(chars, func(a, b string) int {
		return cmp.Or(cmp.Compare(charCount[b], charCount[a]), cmp.Compare(a, b))
	})
	vocab = append(vocab, chars[:min(len(chars), size-len(vocab))]...)
	seen := map[string]bool{}
	for _, tok := range vocab {
		seen[tok] = true
	}

	// Pair counts are kept up to date incrementally: a merge touches only
	// the words that hold the pair.
	type pair struct{ a, b string }
	pairCount := map[pair]int{}
	holders := map[pair]map[int]bool{}
	account := func(wi, sign int) {
		w := words[wi]
		for i := 1; i < len(w.syms); i++ {
			p := pair{w.syms[i-1], w.syms[i]}
			pairCount[p] += sign * w.count
			if pairCount[p] == 0 {
				delete(pairCount, p)
			}
			if sign > 0 {
				if holders[p] == nil {
					holders[p] = map[int]bool{}
				}
				holders[p][wi] = true
			}
		}
	}
	for wi := range words {
		account(wi, +1)
	}
	for len(vocab) < size {
		var best pair
		bestCount := 0
		for p, c := range pairCount {
			if c > bestCount || c == bestCount && (p.a < best.a || p.a == best.a && p.b < best.b) {
				best, bestCount = p, c
			}
		}
		if bestCount < minCount {
			break
		}
		merged := best.a + strings.TrimPrefix(best.b, continuation)
		if len(merged) > MaxTokenLen {
			delete(pairCount, best) // never mergeable; look at the next one
			continue
		}
		if !seen[merged] {
			seen[merged] = true
			vocab = append(vocab, merged)
		}
		for _, wi := range slices.Sorted(maps.Keys(holders[best])) {
			account(wi, -1)
			syms := words[wi].syms
			out := make([]string, 0, len(syms))
			for i := 0; i < len(syms); i++ {
				if i+1 < len(syms) && syms[i] == best.a && syms[i+1] == best.b {
					out = append(out, merged)
					i++
					continue
				}
				out = append(out, syms[i])
			}
			words[wi].syms = out
			account(wi, +1)
		}
		delete(holders, best)
	}
	return New(vocab)
}
