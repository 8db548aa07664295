package trainer

import (
	"slices"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/trainer/text"
)

func TestMLMDataset(t *testing.T) {
	tok, docs := corpusTokenizer(t, 500)
	const seq = 32
	ds, err := MLMDataset("mlm", tok, docs[:1], seq, 2, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Validate(); err != nil {
		t.Fatal(err)
	}
	chunks := ds.N / 2
	masked, asMask := 0, 0
	for i := range ds.N {
		row := ds.X[i*ds.Dim : (i+1)*ds.Dim]
		in, tgt := row[:seq], row[seq:]
		if in[0] != text.ClsID || in[seq-1] != text.SepID {
			t.Fatalf("row %d does not start with [CLS] and end with [SEP]", i)
		}
		k := 0
		for j, v := range tgt {
			if v < 0 {
				continue
			}
			k++
			masked++
			if in[j] == text.MaskID {
				asMask++
			}
			// The other copy of the same chunk holds the original token
			// wherever neither copy masked it.
			other := ds.X[((i+chunks)%ds.N)*ds.Dim:][:ds.Dim]
			if other[seq+j] < 0 && other[j] != v {
				t.Fatalf("row %d position %d: target %v, the unmasked copy has %v", i, j, v, other[j])
			}
		}
		if k > MaskedPerSequence(seq) {
			t.Fatalf("row %d masks %d tokens, cap %d", i, k, MaskedPerSequence(seq))
		}
	}
	rate := float64(masked) / float64(ds.N*(seq-2))
	if rate < 0.12 || rate > 0.16 {
		t.Errorf("%.3f of tokens picked, want about 0.15", rate)
	}
	if f := float64(asMask) / float64(masked); f < 0.75 || f > 0.85 {
		t.Errorf("%.3f of picked tokens became [MASK], want about 0.8", f)
	}
	again, _ := MLMDataset("mlm", tok, docs[:1], seq, 2, 7)
	if !slices.Equal(again.X, ds.X) {
		t.Error("the same seed gave other masks")
	}
}

func TestReplacedAndNSPDatasets(t *testing.T) {
	tok, docs := corpusTokenizer(t, 500)
	for _, build := range []func(string, *text.Tokenizer, []string, int, uint64) (*Dataset, error){ReplacedDataset, NSPDataset} {
		ds, err := build("task", tok, docs, 48, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := ds.Validate(); err != nil {
			t.Fatal(err)
		}
		ones, seps := 0, 0
		for i := range ds.N {
			row := ds.X[i*ds.Dim : (i+1)*ds.Dim]
			if row[0] != text.ClsID {
				t.Fatalf("row %d does not start with [CLS]", i)
			}
			for _, v := range row {
				if v == text.SepID {
					seps++
				}
			}
			ones += int(ds.Y[i])
		}
		if f := float64(ones) / float64(ds.N); f < 0.45 || f > 0.55 {
			t.Errorf("%s: %.3f of labels are 1, want about half", ds.Name, f)
		}
		t.Logf("%d rows, %.2f [SEP] per row", ds.N, float64(seps)/float64(ds.N))
	}
	// A next-sentence row labelled 1 holds the sentence after A as B; one
	// labelled 0 holds another. Rows follow the first text's sentences.
	nsp, _ := NSPDataset("nsp", tok, docs, 48, 3)
	sents := sentences(tok, tok.Encode(docs[0]))
	for i := range 50 {
		row := nsp.X[i*48 : (i+1)*48]
		first := slices.Index(row, float32(text.SepID))
		second := first + 1 + slices.Index(row[first+1:], float32(text.SepID))
		b := row[first+1 : second]
		next := sents[i+1][:len(b)]
		follows := len(b) > 0
		for j, id := range next {
			follows = follows && b[j] == float32(id)
		}
		if follows != (nsp.Y[i] == 1) {
			t.Errorf("nsp row %d: label %d, but B is the next sentence: %v", i, nsp.Y[i], follows)
		}
	}
	// A row labelled 1 is the text as written; one labelled 0 is not.
	ds, _ := ReplacedDataset("replaced", tok, docs, 48, 3)
	words := text.Words(docs[0])
	per := (48 - 2) * 3 / 4
	for i := range 20 {
		ids := tok.Encode(strings.Join(words[i*per:(i+1)*per], " "))
		ids = ids[:min(len(ids), 46)]
		row := ds.X[i*48+1 : i*48+1+len(ids)]
		same := true
		for j, id := range ids {
			same = same && row[j] == float32(id)
		}
		if same != (ds.Y[i] == 1) {
			t.Errorf("row %d: label %d, but the passage is as written: %v", i, ds.Y[i], same)
		}
	}
}

func TestReadTextCSV(t *testing.T) {
	tok, _ := corpusTokenizer(t, 300)
	ds, labels, err := ReadTextCSV("train.csv", strings.NewReader("text,label\n\"Light, refracted\",pos\nthe prism,neg\ncolours of the rays,pos\n"), tok, 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != 3 || !slices.Equal(labels, []string{"neg", "pos"}) || !slices.Equal(ds.Y, []uint8{1, 0, 1}) {
		t.Errorf("N=%d labels %v y %v", ds.N, labels, ds.Y)
	}
	if ds.X[0] != text.ClsID || ds.X[1] != float32(must(tok.ID("light"))) {
		t.Errorf("row 0 starts %v", ds.X[:3])
	}
	for in, want := range map[string]string{
		"a,b\nx,y,z\n":     "line 2",
		"text,label\nx,\n": "line 2: empty label",
		"the,a\n,b\n":      "line 2: the text has no words",
		"the,a\n":          "distinct labels",
		"":                 "no rows",
	} {
		if _, _, err := ReadTextCSV("f.csv", strings.NewReader(in), tok, 16, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	// A spreadsheet's byte-order mark does not turn the header into a row.
	if bom, _, err := ReadTextCSV("bom.csv", strings.NewReader("\ufefftext,label\nthe prism,a\nthe light,b\n"), tok, 16, nil); err != nil || bom.N != 2 {
		t.Errorf("CSV with a BOM: %v, %v rows", err, bom)
	}
	if _, _, err := ReadTextCSV("test.csv", strings.NewReader("the,maybe\n"), tok, 16, labels); err == nil || !strings.Contains(err.Error(), "not one of the training labels") {
		t.Errorf("unknown test label: %v", err)
	}
}

func must(id int, ok bool) int {
	if !ok {
		panic("no such token")
	}
	return id
}

func TestSourceDataset(t *testing.T) {
	tok, err := text.Learn([]string{"the light is refracted. the rays of light bend. tom ran home. the boys ran off."}, 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{
		"The light is refracted by the prism. The rays of light bend. The rays are coloured here.",
		"Tom ran home fast. The boys ran off to the river.",
	}
	const seq = 8 // passages of 6 tokens
	ds, err := SourceDataset("source", tok, docs, seq, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Validate(); err != nil {
		t.Fatal(err)
	}
	// The first text holds 4 passages of 6 tokens, the second 2: so 2 rows
	// from each, every row full, and from the first text the passages
	// spread along it (the first and the third), not its opening.
	ids0, ids1 := tok.Encode(docs[0]), tok.Encode(docs[1])
	if len(ids0)/6 != 4 || len(ids1)/6 != 2 {
		t.Fatalf("texts of %d and %d tokens, want 4 and 2 passages", len(ids0), len(ids1))
	}
	if ds.N != 4 || ds.Classes != 2 {
		t.Fatalf("N=%d classes %d, want 4 rows of 2 classes", ds.N, ds.Classes)
	}
	want := map[string]uint8{}
	for _, k := range []int{0, 2} {
		want[tok.Decode(ids0[k*6:(k+1)*6])] = 0
	}
	for _, k := range []int{0, 1} {
		want[tok.Decode(ids1[k*6:(k+1)*6])] = 1
	}
	perClass := [2]int{}
	for i := range ds.N {
		row := ds.X[i*seq : (i+1)*seq]
		if row[0] != text.ClsID || row[seq-1] != text.SepID {
			t.Fatalf("row %d is not [CLS] 6 tokens [SEP]: %v", i, row)
		}
		ids := make([]int, 0, 6)
		for _, v := range row[1 : seq-1] {
			ids = append(ids, int(v))
		}
		s := tok.Decode(ids)
		label, ok := want[s]
		if !ok || label != ds.Y[i] {
			t.Errorf("row %d %q labelled %d; its text is %d (found %v)", i, s, ds.Y[i], label, ok)
		}
		perClass[ds.Y[i]]++
	}
	if perClass != [2]int{2, 2} {
		t.Errorf("rows per class %v, want 2 and 2", perClass)
	}
	again, _ := SourceDataset("source", tok, docs, seq, 7)
	if !slices.Equal(again.X, ds.X) || !slices.Equal(again.Y, ds.Y) {
		t.Error("same seed, different rows")
	}
	if _, err := SourceDataset("source", tok, docs[:1], seq, 7); err == nil || !strings.Contains(err.Error(), "2..256") {
		t.Errorf("one text: %v", err)
	}
	if _, err := SourceDataset("source", tok, []string{docs[0], "Tom ran."}, seq, 7); err == nil || !strings.Contains(err.Error(), "text 2 has 3 tokens") {
		t.Errorf("a text shorter than a passage: %v", err)
	}
}

// The default corpus is both books, found without the network.
func TestDefaultCorpus(t *testing.T) {
	paths, err := DefaultCorpus()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := readCorpus(paths...)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || !strings.Contains(docs[0], "OPTICKS") || !strings.Contains(docs[1], "TOM SAWYER") {
		t.Fatalf("default corpus %v does not hold Opticks and Tom Sawyer", paths)
	}
	// With an empty module cache and no go command, the error says what to do.
	t.Setenv("GOMODCACHE", t.TempDir())
	t.Setenv("PATH", "")
	if _, err := DefaultCorpus(); err == nil || !strings.Contains(err.Error(), "--text") {
		t.Errorf("without a module cache: %v", err)
	}
}

// NSP pairs and replaced-word passages stay inside one document: with two
// books, the other book's sentences or words would give a row away by
// their style. Two texts with disjoint words show it.
func TestTasksStayInTheirDocument(t *testing.T) {
	a := strings.Repeat("light rays bend here. prisms split light. rays of light pass. ", 8)
	b := strings.Repeat("tom ran home now. boys swim often. tom said no thanks. ", 8)
	tok, err := text.Learn([]string{a, b}, 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	docOf := map[float32]int{}
	for d, doc := range []string{a, b} {
		for _, id := range tok.Encode(doc) {
			if tok.Decode([]int{id}) != "." {
				docOf[float32(id)] = d
			}
		}
	}
	for _, build := range []func(string, *text.Tokenizer, []string, int, uint64) (*Dataset, error){NSPDataset, ReplacedDataset} {
		ds, err := build("two", tok, []string{a, b}, 16, 5)
		if err != nil {
			t.Fatal(err)
		}
		zeros := 0
		for i := range ds.N {
			seen := map[int]bool{}
			for _, v := range ds.X[i*16 : (i+1)*16] {
				if d, ok := docOf[v]; ok {
					seen[d] = true
				}
			}
			if len(seen) != 1 {
				t.Fatalf("%s row %d (label %d) mixes the two texts: %v", ds.Name, i, ds.Y[i], ds.X[i*16:(i+1)*16])
			}
			zeros += 1 - int(ds.Y[i])
		}
		if zeros == 0 || zeros == ds.N {
			t.Errorf("%d of %d rows are negatives, want some of each", zeros, ds.N)
		}
	}
}

// Named columns in CSV and JSON Lines give the same rows as text,label.
func TestReadTextTable(t *testing.T) {
	tok, _ := corpusTokenizer(t, 300)
	want, _, err := ReadTextCSV("a.csv", strings.NewReader("the prism,neg\nlight of the sun,pos\nthe rays,3\n"), tok, 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	cols := TextColumns{Text: "review", Label: "stars"}
	csvIn := "id,stars,review\n1,neg,the prism\n2,pos,light of the sun\n3,3,the rays\n"
	jsonIn := `{"review": "the prism", "stars": "neg", "id": 1}` + "\n\n" + `{"stars":"pos","review":"light of the sun"}` + "\n" + `{"review":"the rays","stars":3}` + "\n"
	for name, in := range map[string]string{"csv": csvIn, "jsonl": jsonIn} {
		got, labels, err := ReadTextTable(name, strings.NewReader(in), tok, 16, nil, cols, name == "jsonl")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got.X, want.X) || !slices.Equal(got.Y, want.Y) || !slices.Equal(labels, []string{"3", "neg", "pos"}) {
			t.Errorf("%s: rows %v labels %v, want %v", name, got.Y, labels, want.Y)
		}
	}
	for in, msg := range map[string]string{
		`{"review": 5, "stars": "a"}`:              `"review" is not a string`,
		`{"review": "the prism"}`:                  `"stars" is not a string or a number`,
		`{"review": "the prism", "stars": ` + "\n": "line 1",
		`[1,2]`: "line 1",
	} {
		if _, _, err := ReadTextTable("f.jsonl", strings.NewReader(in), tok, 16, nil, cols, true); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", in, err, msg)
		}
	}
	if _, _, err := ReadTextTable("f.csv", strings.NewReader("a,b,c\nx,y,z\n"), tok, 16, nil, cols, false); err == nil || !strings.Contains(err.Error(), "no header naming") {
		t.Errorf("three columns without the named header: %v", err)
	}
}
