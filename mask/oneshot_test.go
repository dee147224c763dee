package mask

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func keepString(m *Mask) string {
	b := make([]byte, len(m.Keep))
	for i, k := range m.Keep {
		b[i] = '0'
		if k {
			b[i] = '1'
		}
	}
	return string(b)
}

func TestMagnitudeByHand(t *testing.T) {
	w := []float32{
		0.1, -3, 2, 0.5 /**/, 1, 1, 1, 1,
		-7, 0, 0, 7 /**/, 0, -0.2, 0.3, -0.1,
	}
	m, err := Magnitude(w, 2, 8, Pattern24)
	if err != nil {
		t.Fatal(err)
	}
	// ties keep the lower index: 1 1 1 1 → 1100.
	if got, want := keepString(m), "01101100"+"10010110"; got != want {
		t.Fatalf("mask %s, want %s", got, want)
	}
	if err := m.Check(Pattern24); err != nil {
		t.Fatal(err)
	}
}

func TestMagnitudePatterns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range []Pattern{{2, 4}, {4, 8}, {1, 2}, {1, 4}, {3, 4}} {
		rows, cols := 7, 16
		w := make([]float32, rows*cols)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		m, err := Magnitude(w, rows, cols, p)
		if err != nil {
			t.Fatal(p, err)
		}
		if err := m.Check(p); err != nil {
			t.Fatal(p, err)
		}
		// every kept |w| ≥ every pruned |w| of the same group.
		for r := 0; r < rows; r++ {
			for g := 0; g < cols; g += p.M {
				minKept, maxPruned := math.Inf(1), math.Inf(-1)
				for j := g; j < g+p.M; j++ {
					a := math.Abs(float64(w[r*cols+j]))
					if m.Keep[r*cols+j] {
						minKept = min(minKept, a)
					} else {
						maxPruned = max(maxPruned, a)
					}
				}
				if minKept < maxPruned {
					t.Fatalf("%v row %d group %d: kept %v < pruned %v", p, r, g, minKept, maxPruned)
				}
			}
		}
	}
}

func TestMethodErrors(t *testing.T) {
	w := make([]float32, 8)
	cases := []struct {
		name       string
		w          []float32
		rows, cols int
		p          Pattern
	}{
		{"short", w[:7], 2, 4, Pattern24},
		{"cols not multiple", w[:6], 2, 3, Pattern24},
		{"bad pattern", w, 2, 4, Pattern{4, 4}},
		{"zero rows", w[:0], 0, 4, Pattern24},
		{"nan", []float32{0, 0, float32(math.NaN()), 0}, 1, 4, Pattern24},
		{"inf", []float32{0, float32(math.Inf(1)), 0, 0}, 1, 4, Pattern24},
	}
	for _, c := range cases {
		if _, err := Magnitude(c.w, c.rows, c.cols, c.p); !errors.Is(err, ErrInput) {
			t.Errorf("Magnitude %s: err %v, want ErrInput", c.name, err)
		}
		if _, err := Wanda(c.w, c.rows, c.cols, make([]float32, max(c.cols, 0)), c.p); !errors.Is(err, ErrInput) {
			t.Errorf("Wanda %s: err %v, want ErrInput", c.name, err)
		}
		if _, _, err := SparseGPT(c.w, c.rows, c.cols, make([]float64, c.cols*c.cols), c.p, SparseGPTOptions{}); !errors.Is(err, ErrInput) {
			t.Errorf("SparseGPT %s: err %v, want ErrInput", c.name, err)
		}
	}
	if _, err := Wanda(w, 2, 4, []float32{1, 2, 3}, Pattern24); !errors.Is(err, ErrInput) {
		t.Errorf("Wanda short norms: %v", err)
	}
	if _, err := Wanda(w, 2, 4, []float32{1, -2, 3, 4}, Pattern24); !errors.Is(err, ErrInput) {
		t.Errorf("Wanda negative norm: %v", err)
	}
}

func TestWandaByHand(t *testing.T) {
	// Column 0 has a tiny activation norm: its big weight loses to smaller
	// weights with large activations, unlike magnitude.
	w := []float32{10, 1, 2, 3}
	norms := []float32{1e-4, 4, 1, 1} // sqrt: 0.01, 2, 1, 1 → scores 0.1, 2, 2, 3
	m, err := Wanda(w, 1, 4, norms, Pattern24)
	if err != nil {
		t.Fatal(err)
	}
	if got := keepString(m); got != "0101" { // tie 2 vs 2: lower index (col 1) kept
		t.Fatalf("wanda %s, want 0101", got)
	}
	// Equal norms reduce Wanda to magnitude.
	rng := rand.New(rand.NewPCG(3, 4))
	w = make([]float32, 5*16)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	ones := make([]float32, 16)
	for i := range ones {
		ones[i] = 2.5
	}
	a, _ := Wanda(w, 5, 16, ones, Pattern{4, 8})
	b, _ := Magnitude(w, 5, 16, Pattern{4, 8})
	if a == nil || b == nil || !slices.Equal(a.Keep, b.Keep) {
		t.Fatal("Wanda with equal norms differs from magnitude")
	}
}

func TestNormAccumulatorMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cols, seqLen := 6, 5
	c := NewColumnNorms(cols)
	var want []float64 = make([]float64, cols)
	nseq := 0
	for _, b := range []int{1, 3, 2} {
		x := make([]float32, b*seqLen*cols)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		if err := c.Add(x, b*seqLen, b); err != nil {
			t.Fatal(err)
		}
		// reference: s = s*n/(n+b); n += b; s += ||X||²/n
		for j := range want {
			want[j] *= float64(nseq) / float64(nseq+b)
		}
		nseq += b
		for tk := 0; tk < b*seqLen; tk++ {
			for j := 0; j < cols; j++ {
				v := float64(x[tk*cols+j])
				want[j] += v * v / float64(nseq)
			}
		}
	}
	for j := range want {
		if math.Abs(c.S[j]-want[j]) > 1e-9*want[j] {
			t.Fatalf("norm %d: %v want %v", j, c.S[j], want[j])
		}
	}
	if err := c.Add(make([]float32, 5), 2, 1); !errors.Is(err, ErrInput) {
		t.Fatalf("bad batch: %v", err)
	}
}
