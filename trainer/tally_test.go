package trainer

import (
	"math"
	"strings"
	"testing"
)

// A tally scores only the positions with a wanted class, and refuses to
// average nothing.
func TestTally(t *testing.T) {
	var tl tally
	if _, _, err := tl.result("d"); err == nil || !strings.Contains(err.Error(), "nothing to score") {
		t.Errorf("an empty tally: %v, want an error", err)
	}
	z := []float32{2, 0, 0, 2, 9, 9} // three rows of two logits
	tl.addWanted(z, 2, []int{0, 0, -1})
	acc, loss, err := tl.result("d")
	want := (math.Log(1+math.Exp(-2)) + math.Log(1+math.Exp(2))) / 2
	if err != nil || acc != 0.5 || math.Abs(loss-want) > 1e-6 {
		t.Errorf("result = %v, %v, %v; want 0.5, %v (the padded row unscored)", acc, loss, err, want)
	}
}
