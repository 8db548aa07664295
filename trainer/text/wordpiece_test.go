package text

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestCleanAndWords(t *testing.T) {
	if got, want := Clean("  Héllo,\tWORLD\u200b!\n\x00 "), "hello, world!"; got != want {
		t.Errorf("Clean = %q, want %q", got, want)
	}
	got := Words("Newton's prism: 2 colours—red & violet.")
	want := []string{"newton", "'", "s", "prism", ":", "2", "colours", "—", "red", "&", "violet", "."}
	if !slices.Equal(got, want) {
		t.Errorf("Words = %q, want %q", got, want)
	}
}

func tiny(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := New(append(slices.Clone(Specials), "un", "##able", "##aff", "aff", "##a", "a", "b", "##b", ".", "ü"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Greedy longest match first, word by word; an uncuttable word is one
// [UNK]; decoding joins the pieces again.
func TestEncodeDecode(t *testing.T) {
	tok := tiny(t)
	id := func(s string) int {
		i, ok := tok.ID(s)
		if !ok {
			t.Fatalf("no %q", s)
		}
		return i
	}
	got := tok.Encode("Unaffable affa. xyz ab")
	want := []int{id("un"), id("##aff"), id("##able"), id("aff"), id("##a"), id("."), UnkID, id("a"), id("##b")}
	if !slices.Equal(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
	if s := tok.Decode(append([]int{ClsID}, append(got, SepID, PadID, PadID)...)); s != "[CLS] unaffable affa . [UNK] ab [SEP]" {
		t.Errorf("Decode = %q", s)
	}
	if got := tok.Encode(strings.Repeat("a", 101)); !slices.Equal(got, []int{UnkID}) {
		t.Errorf("a 101-letter word encodes as %v, want [UNK]", got)
	}
	// Multi-byte characters are cut only at rune boundaries ("ü" after
	// cleaning is "u" + a dropped mark, so it is not in the vocabulary).
	if got := tok.Encode("ü"); !slices.Equal(got, []int{UnkID}) {
		t.Errorf("ü encodes as %v", got)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	tok := tiny(t)
	var buf bytes.Buffer
	if err := tok.Save(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := Load(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.tokens, tok.tokens) {
		t.Errorf("loaded %v, want %v", back.tokens, tok.tokens)
	}
	var again bytes.Buffer
	back.Save(&again)
	if !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Error("save → load → save changed the bytes")
	}
}

// A vocabulary file is input from a user or a peer: every defect is an
// error naming it, never a panic.
func TestLoadRejects(t *testing.T) {
	specials := strings.Join(Specials, "\n") + "\n"
	cases := map[string]string{
		`want "[PAD]"`:          "a\nb\nc\nd\ne\nf\n",
		"repeats":               specials + "a\nb\na\n",
		"line 7":                specials + "a\n\nb\n",
		"at most 100":           specials + strings.Repeat("x", MaxTokenLen+1) + "\n",
		"longer than":           specials + strings.Repeat("x", 200) + "\n",
		"UTF-8":                 specials + "a b\n",
		"want 6..":              specials,
		"empty":                 specials + "##\n",
		"token 1 is \"[MASK]\"": "[PAD]\n[MASK]\n[CLS]\n[SEP]\n[UNK]\na\n",
	}
	for want, in := range cases {
		if _, err := Load(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%q): %v, want an error containing %q", in, err, want)
		}
	}
}

func opticks(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", "testdata", "Isaac.Newton-Opticks.txt"))
	if err != nil {
		t.Skipf("Go's Opticks text is not here: %v", err)
	}
	return string(b)
}

// Learning from the real corpus: deterministic, the requested size,
// frequent words whole, and almost nothing unknown on text it saw.
func TestLearnOpticks(t *testing.T) {
	corpus := opticks(t)
	tok, err := Learn([]string{corpus}, 2000, 2)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Size() != 2000 {
		t.Errorf("vocabulary has %d tokens, want 2000", tok.Size())
	}
	for _, w := range []string{"the", "light", "rays", "colours"} {
		if _, ok := tok.ID(w); !ok {
			t.Errorf("frequent word %q is not a whole token", w)
		}
	}
	ids := tok.Encode(corpus)
	unk := 0
	for _, id := range ids {
		if id == UnkID {
			unk++
		}
	}
	words := len(Words(corpus))
	t.Logf("%d words → %d pieces (%.2f per word), %d [UNK]", words, len(ids), float64(len(ids))/float64(words), unk)
	if unk > words/1000 {
		t.Errorf("%d of %d words unknown", unk, words)
	}
	if float64(len(ids)) > 1.6*float64(words) {
		t.Errorf("%d pieces for %d words: the merges do not compress", len(ids), words)
	}
	again, err := Learn([]string{corpus}, 2000, 2)
	if err != nil || !slices.Equal(again.tokens, tok.tokens) {
		t.Error("learning twice from the same corpus gave different vocabularies")
	}
	sentence := "The Rays of Light are refracted."
	if got := tok.Decode(tok.Encode(sentence)); got != "the rays of light are refracted ." {
		t.Errorf("round trip of %q gave %q", sentence, got)
	}
}

func TestLearnRejects(t *testing.T) {
	if tok, err := Learn([]string{"  ... "}, 100, 1); err != nil {
		t.Errorf("punctuation only: %v", err)
	} else if _, ok := tok.ID("."); !ok || tok.Size() != len(Specials)+1 {
		t.Errorf("punctuation only: %d tokens, want the specials and \".\"", tok.Size())
	}
	if _, err := Learn(nil, 100, 1); err == nil || !strings.Contains(err.Error(), "no words") {
		t.Errorf("empty corpus: %v", err)
	}
	if _, err := Learn([]string{"a"}, 3, 1); err == nil || !strings.Contains(err.Error(), "size") {
		t.Errorf("size 3: %v", err)
	}
}
