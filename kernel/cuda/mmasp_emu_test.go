package cuda

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/pack"
)

// random24 returns a dense [n][k] matrix of 16-bit values (as float64 and as
// raw little-endian bytes) with exactly two nonzeros in every group of four,
// in random positions; small integers when ints (exact in any order).
func random24(rng *rand.Rand, n, k int, bf16, ints bool) ([]float64, []byte) {
	w := make([]float64, n*k)
	raw := make([]byte, 2*n*k)
	for r := 0; r < n; r++ {
		for q := 0; q < k/4; q++ {
			i0 := rng.IntN(4)
			i1 := (i0 + 1 + rng.IntN(3)) % 4
			for _, i := range [2]int{i0, i1} {
				v := float32(rng.NormFloat64())
				if ints {
					v = float32(rng.IntN(15) - 7)
					if v == 0 {
						v = 1
					}
				}
				w[r*k+4*q+i] = setHalf(raw, r*k+4*q+i, v, bf16)
			}
		}
	}
	return w, raw
}

// randomX returns [t][k] activations as float64 and raw 16-bit bytes.
func randomX(rng *rand.Rand, t, k int, bf16, ints bool) ([]float64, []byte) {
	x := make([]float64, t*k)
	raw := make([]byte, 2*t*k)
	for i := range x {
		v := float32(rng.Float64()*2 - 1)
		if ints {
			v = float32(rng.IntN(9) - 4)
		}
		x[i] = setHalf(raw, i, v, bf16)
	}
	return x, raw
}

// setHalf stores v rounded to bf16/f16 at element i and returns the rounded value.
func setHalf(raw []byte, i int, v float32, bf16 bool) float64 {
	var h uint16
	if bf16 {
		h = format.F32ToBF16(v)
	} else {
		h = format.F32ToF16(v)
	}
	binary.LittleEndian.PutUint16(raw[2*i:], h)
	return half(bf16, uint32(h))
}

func denseRef(w, x []float64, n, k, t int) []float64 {
	y := make([]float64, t*n)
	for i := 0; i < t; i++ {
		for r := 0; r < n; r++ {
			var s float64
			for c := 0; c < k; c++ {
				s += x[i*k+c] * w[r*k+c]
			}
			y[i*n+r] = s
		}
	}
	return y
}

func TestEmuSpMMMatchesDense(t *testing.T) {
	cases := []struct {
		n, k, t int
		bf16    bool
		ints    bool
	}{
		{32, 64, 8, true, true},
		{64, 128, 40, true, true}, // T not a multiple of 32: guarded tail
		{160, 64, 7, false, true}, // 5 row blocks: a partly idle block
		{32, 192, 33, false, false},
		{96, 256, 64, true, false},
	}
	for _, c := range cases {
		rng := rand.New(rand.NewPCG(uint64(c.n), uint64(c.k*1000+c.t)))
		w, wraw := random24(rng, c.n, c.k, c.bf16, c.ints)
		x, xraw := randomX(rng, c.t, c.k, c.bf16, c.ints)
		dt := format.F16
		if c.bf16 {
			dt = format.BF16
		}
		vals, meta, err := pack.PackCutlass(dt, c.n, c.k, wraw)
		if err != nil {
			t.Fatal(err)
		}
		y := make([]float32, c.t*c.n)
		for i := range y {
			y[i] = float32(math.NaN()) // every output must be written
		}
		if err := EmuSpMM(y, vals, meta, xraw, c.n, c.k, c.t, c.bf16); err != nil {
			t.Fatal(err)
		}
		ref := denseRef(w, x, c.n, c.k, c.t)
		for i := range ref {
			var abs float64
			for q := 0; q < c.k; q++ {
				abs += math.Abs(x[(i/c.n)*c.k+q] * w[(i%c.n)*c.k+q])
			}
			tol := float64(c.k/32+1) * 0x1p-24 * abs
			if c.ints {
				tol = 0 // small integers: exact
			}
			if d := math.Abs(float64(y[i]) - ref[i]); !(d <= tol) {
				t.Fatalf("%+v: y[token %d][row %d] = %g, dense %g (tol %g)", c, i/c.n, i%c.n, y[i], ref[i], tol)
			}
		}
	}
}

// TestEmuDetectsWrongMapping checks that the test above would notice a
// mapping error: swapping the sparsity selector, or reading logical instead
// of reordered meta, must change the result.
func TestEmuDetectsWrongMapping(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n, k, tk := 64, 128, 32
	w, wraw := random24(rng, n, k, true, true)
	x, xraw := randomX(rng, tk, k, true, true)
	vals, meta, err := pack.PackCutlass(format.BF16, n, k, wraw)
	if err != nil {
		t.Fatal(err)
	}
	ref := denseRef(w, x, n, k, tk)
	// Logical (un-reordered) meta in the reordered buffer's place.
	logical := make([]byte, len(meta))
	nc := k / 16
	for r := 0; r < n; r++ {
		for c := 0; c < nc; c++ {
			o := pack.MetaOffset(2, n, r, c)
			copy(logical[2*(r*nc+c):], meta[2*o:2*o+2])
		}
	}
	y := make([]float32, tk*n)
	err = EmuSpMM(y, vals, logical, xraw, n, k, tk, true)
	if err == nil && equalF(y, ref) {
		t.Fatal("logical meta gave the right answer: the test cannot see meta mistakes")
	}
	// Packed values of rows r and r+8 swapped.
	bad := append([]byte(nil), vals...)
	rowB := k // bytes per packed row (k/2 halves)
	tmp := append([]byte(nil), bad[:rowB]...)
	copy(bad[:rowB], bad[8*rowB:9*rowB])
	copy(bad[8*rowB:9*rowB], tmp)
	if err := EmuSpMM(y, bad, meta, xraw, n, k, tk, true); err == nil && equalF(y, ref) {
		t.Fatal("swapped rows gave the right answer")
	}
}

func equalF(y []float32, ref []float64) bool {
	for i := range ref {
		if float64(y[i]) != ref[i] {
			return false
		}
	}
	return true
}

func TestMmaSpSemantics(t *testing.T) {
	// One MMA by hand: A_dense row i has its kept values at chunk positions
	// from the nibble; B = identity-like one-hot picks column k.
	var fr Fragments
	// Every lane: nibble 0xD (kept positions 1 and 3) for every chunk, both rows.
	for l := range fr.E {
		fr.E[l] = 0xDDDDDDDD
	}
	// Row 0, chunk 0 lives in lane 0 register 0: values 2 (pos 1) and 3 (pos 3).
	fr.A[0][0] = uint32(format.F32ToBF16(2)) | uint32(format.F32ToBF16(3))<<16
	// B[k=3][n=0] = 1: lane 4*0 + (3%8)/2 = 1, register 0, high half.
	fr.B[1][0] = uint32(format.F32ToBF16(1)) << 16
	if err := MmaSp(&fr, 0, true); err != nil {
		t.Fatal(err)
	}
	// D[0][0] is lane 0 register 0: A_dense[0][3] * 1 = 3.
	if fr.C[0][0] != 3 {
		t.Fatalf("D[0][0] = %g, want 3", fr.C[0][0])
	}
	for l := range fr.C {
		for r := range fr.C[l] {
			if (l != 0 || r != 0) && fr.C[l][r] != 0 {
				t.Fatalf("lane %d reg %d = %g, want 0", l, r, fr.C[l][r])
			}
		}
	}
	fr.E[2] = 0 // invalid nibble read with f=1 (lanes 4g+2, 4g+3)
	if err := MmaSp(&fr, 1, true); err == nil || !strings.Contains(err.Error(), "invalid metadata") {
		t.Fatalf("invalid nibble: err = %v", err)
	}
	if err := MmaSp(&fr, 2, true); err == nil {
		t.Fatal("selector 2 accepted for m16n8k32")
	}
}

func TestEmuSpMMRejectsShapes(t *testing.T) {
	y := make([]float32, 8*48)
	if err := EmuSpMM(y, nil, nil, nil, 48, 64, 8, true); err == nil {
		t.Fatal("N=48 accepted")
	}
	if err := EmuSpMM(y, make([]byte, 10), nil, nil, 32, 64, 8, true); err == nil {
		t.Fatal("short buffers accepted")
	}
}
