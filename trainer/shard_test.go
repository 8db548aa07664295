package trainer

import (
	"math"
	"slices"
	"testing"
)

// indexed returns a dataset whose single feature is the row index, so
// shards and batches reveal which rows they hold.
func indexed(n int) *Dataset {
	d := &Dataset{Name: "idx", X: make([]float32, n), Y: make([]uint8, n), N: n, Dim: 1, Classes: 2}
	for i := range n {
		d.X[i] = float32(i)
		d.Y[i] = uint8(i % 2)
	}
	return d
}

func TestShard(t *testing.T) {
	const n, count = 103, 4
	d := indexed(n)
	seen := make([]int, n)
	for i := range count {
		s, err := d.Shard(7, i, count)
		if err != nil {
			t.Fatal(err)
		}
		if s.N != 25 && s.N != 26 {
			t.Fatalf("shard %d has %d rows, want 25 or 26", i, s.N)
		}
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		again, _ := d.Shard(7, i, count)
		if !slices.Equal(s.X, again.X) {
			t.Fatalf("shard %d not deterministic", i)
		}
		for r, v := range s.X {
			seen[int(v)]++
			if s.Y[r] != uint8(int(v)%2) {
				t.Fatalf("shard %d row %d: label does not follow its row", i, r)
			}
		}
	}
	for r, c := range seen {
		if c != 1 {
			t.Fatalf("row %d appears in %d shards, want exactly 1", r, c)
		}
	}
	a, _ := d.Shard(7, 0, count)
	b, _ := d.Shard(8, 0, count)
	if slices.Equal(a.X, b.X) {
		t.Fatal("seeds 7 and 8 give the same shard")
	}
	// Copies, not views.
	a.X[0] = -1
	if slices.Contains(d.X, -1) {
		t.Fatal("shard aliases the dataset")
	}
	for _, bad := range [][2]int{{0, 0}, {-1, 2}, {2, 2}, {0, n + 1}} {
		if _, err := d.Shard(1, bad[0], bad[1]); err == nil {
			t.Errorf("Shard(index %d, count %d) accepted", bad[0], bad[1])
		}
	}
}

func TestSample(t *testing.T) {
	d := indexed(50)
	s, err := d.Sample(3, 10)
	if err != nil {
		t.Fatal(err)
	}
	if s.N != 10 || len(s.X) != 10 {
		t.Fatalf("%d rows, want 10", s.N)
	}
	distinct := map[float32]bool{}
	for r, v := range s.X {
		distinct[v] = true
		if s.Y[r] != uint8(int(v)%2) {
			t.Fatalf("row %d: label does not follow its row", r)
		}
	}
	if len(distinct) != 10 {
		t.Errorf("rows drawn twice: %v", s.X)
	}
	again, _ := d.Sample(3, 10)
	other, _ := d.Sample(4, 10)
	if !slices.Equal(s.X, again.X) || slices.Equal(s.X, other.X) {
		t.Errorf("seed 3 twice: %v, %v; seed 4: %v", s.X, again.X, other.X)
	}
	for _, bad := range []int{0, -1, 51} {
		if _, err := d.Sample(3, bad); err == nil {
			t.Errorf("Sample(%d) of 50 rows accepted", bad)
		}
	}
}

func TestPermUniformish(t *testing.T) {
	// Position 0 of perm(4) over many seeds: each value about 1/4 of the time.
	var hist [4]int
	const trials = 4000
	for s := range uint64(trials) {
		hist[perm(4, s, 1)[0]]++
	}
	for v, c := range hist {
		if math.Abs(float64(c)-trials/4) > 150 {
			t.Fatalf("value %d first %d/%d times", v, c, trials)
		}
	}
	// Pinned output: a change here means every existing run's shards move.
	if got := perm(8, 42, streamShard); !slices.Equal(got, []int{1, 6, 2, 3, 7, 4, 0, 5}) {
		t.Logf("perm(8, 42) = %v", got)
		t.Fatal("shard permutation changed; update the pin only on purpose")
	}
}

func TestBatcher(t *testing.T) {
	const n, batch = 10, 4
	d := indexed(n)
	x, y := make([]float32, batch), make([]uint8, batch)
	a, b := NewBatcher(d, batch, 3), NewBatcher(d, batch, 3)
	var epochRows [3][]int
	for range 7 { // 28 rows: epochs 0 and 1 fully, epoch 2 partly
		before, _ := a.Position()
		e := a.Next(x, y)
		if e != before {
			t.Fatalf("Next returned epoch %d, position said %d", e, before)
		}
		xb, yb := make([]float32, batch), make([]uint8, batch)
		b.Next(xb, yb)
		if !slices.Equal(x, xb) || !slices.Equal(y, yb) {
			t.Fatal("same seed, different batches")
		}
		// Attribute rows to epochs by counting.
		for _, v := range x {
			k := 0
			for k < 2 && len(epochRows[k]) == n {
				k++
			}
			epochRows[k] = append(epochRows[k], int(v))
		}
	}
	for e := range 2 {
		got := slices.Sorted(slices.Values(epochRows[e]))
		for i, v := range got {
			if v != i {
				t.Fatalf("epoch %d rows %v: not each row once", e, got)
			}
		}
	}
	if slices.Equal(epochRows[0], epochRows[1]) {
		t.Fatal("epochs 0 and 1 in the same order")
	}
	// Seek reproduces the sequence from a saved position.
	e, off := a.Position()
	a.Next(x, y)
	c := NewBatcher(d, batch, 3)
	if err := c.Seek(e, off); err != nil {
		t.Fatal(err)
	}
	xc := make([]float32, batch)
	c.Next(xc, y)
	if !slices.Equal(x, xc) {
		t.Fatal("Seek did not resume the sequence")
	}
	if err := c.Seek(0, n+1); err == nil {
		t.Fatal("Seek past the end accepted")
	}
}
