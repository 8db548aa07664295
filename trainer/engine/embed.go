package engine

// embedForward sets out[i] = tok[ids[i]] + pos[i mod seq] + seg[segs[i]]
// for the n tokens of whole sequences of seq tokens, each row d wide.
// The ids and segments are checked by the caller.
func embedForward(tok, pos, seg []float32, ids, segs []int, out []float32, n, seq, d int) {
	for i := range n {
		o := out[i*d : (i+1)*d]
		t, p, s := tok[ids[i]*d:][:d], pos[(i%seq)*d:][:d], seg[segs[i]*d:][:d]
		for j := range o {
			o[j] = t[j] + p[j] + s[j]
		}
	}
}

// embedBackward adds the gradient at the embedding's output back into the
// rows of the three tables that made it: a token used twice gets both.
func embedBackward(dout []float32, ids, segs []int, dtok, dpos, dseg []float32, n, seq, d int) {
	for i := range n {
		g := dout[i*d : (i+1)*d]
		t, p, s := dtok[ids[i]*d:][:d], dpos[(i%seq)*d:][:d], dseg[segs[i]*d:][:d]
		for j, v := range g {
			t[j] += v
			p[j] += v
			s[j] += v
		}
	}
}

// gatherRows copies row idx[i] of src into row i of dst (rows d wide).
func gatherRows(src []float32, idx []int, dst []float32, d int) {
	for i, r := range idx {
		copy(dst[i*d:(i+1)*d], src[r*d:(r+1)*d])
	}
}

// scatterAddRows adds row i of src into row idx[i] of dst: gatherRows's
// backward, summing where an index repeats.
func scatterAddRows(src []float32, idx []int, dst []float32, d int) {
	for i, r := range idx {
		o := dst[r*d : (r+1)*d]
		for j, v := range src[i*d : (i+1)*d] {
			o[j] += v
		}
	}
}
