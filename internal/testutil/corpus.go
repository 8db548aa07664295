package testutil

import "strings"

// TinyWords are the words of TinyText: a vocabulary small enough for a
// BERT run of a few steps.
var TinyWords = []string{"the", "of", "light", "and", "rays", "prism", "colours", "glass"}

// TinyText is the f-th of a few deterministic little corpora (3000 words
// of TinyWords in sentences ending in " ."), different for each f.
func TinyText(f int) string {
	var b strings.Builder
	for i := range 3000 {
		b.WriteString(TinyWords[(i*(f+3)+i/7)%len(TinyWords)])
		if i%11 == 10 {
			b.WriteString(" .\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}
