package trainer

import "testing"

// Pruning zeroes exactly the requested share of the weights, the
// smallest ones, and never a bias.
func TestPruneMagnitude(t *testing.T) {
	tensors := []Tensor{{Name: "w", Shape: []int{4, 5}}, {Name: "b", Shape: []int{5}}}
	p := make([]float32, 25)
	for i := range p {
		p[i] = float32(i+1) * float32(1-2*(i%2)) // magnitudes 1..25, signs alternating
	}
	n, err := PruneMagnitude(p, tensors, 0.5)
	if err != nil || n != 10 {
		t.Fatalf("zeroed %d (%v), want 10 of 20 weights", n, err)
	}
	for i, x := range p[:20] {
		if (i < 10) != (x == 0) {
			t.Fatalf("weight %d (magnitude %d) is %v after pruning half", i, i+1, x)
		}
	}
	for i, x := range p[20:] {
		if x == 0 {
			t.Fatalf("bias %d was pruned", i)
		}
	}
	if _, err := PruneMagnitude(p, tensors, 1); err == nil {
		t.Fatal("sparsity 1 accepted")
	}
}
