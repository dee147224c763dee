package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The test side packs with the §3.1 *definition* of the CUTLASS reorder (row
// interleave, 2×2 swizzle, ColumnMajorInterleaved<2>); the kernel decodes with
// the §3.2 closed form, so each checks the other.

// reorderOffset is spec §3.1 for 16-bit metadata: logical (r, c) → offset.
func reorderOffset(r, c, rows int) int {
	const G, W = 32, 4
	dr := (r/G)*G + (r%8)*W + (r%G)/8
	dc := c
	if dr%2 == 0 && dc%2 == 1 {
		dr, dc = dr+1, dc-1
	} else if dr%2 == 1 && dc%2 == 0 {
		dr, dc = dr-1, dc+1
	}
	return (dc/2)*(2*rows) + dr*2 + dc%2
}

// reorder scatters logical meta [rows, nc] into the reordered buffer and
// checks that the offsets form a permutation.
func reorder(t testing.TB, logical []uint16, rows, nc int) []uint16 {
	t.Helper()
	out := make([]uint16, len(logical))
	seen := make([]bool, len(logical))
	for r := 0; r < rows; r++ {
		for c := 0; c < nc; c++ {
			o := reorderOffset(r, c, rows)
			if o < 0 || o >= len(out) || seen[o] {
				t.Fatalf("reorder definition: offset %d of (%d,%d) out of range or repeated", o, r, c)
			}
			seen[o] = true
			out[o] = logical[r*nc+c]
		}
	}
	return out
}

var pairs24 = [6][2]int{{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}}

// random24 returns a dense rows×cols matrix with exactly two nonzeros (random
// positions, values of random sign away from zero) in every group of four.
func random24(r *rand.Rand, rows, cols int) []float32 {
	d := make([]float32, rows*cols)
	for i := 0; i < rows*cols; i += 4 {
		p := pairs24[r.IntN(6)]
		for _, x := range p {
			v := r.Float32() + 0.05
			if r.IntN(2) == 0 {
				v = -v
			}
			d[i+x] = v
		}
	}
	return d
}

// pack24 compresses an exact 2:4 dense matrix (spec §1.3, §1.4) and reorders
// its metadata with the §3.1 definition.
func pack24(t testing.TB, dense []float32, rows, cols int) (values []float32, meta, logical []uint16) {
	t.Helper()
	nc := cols / 16
	logical = make([]uint16, rows*nc)
	values = make([]float32, 0, rows*cols/2)
	for r := 0; r < rows; r++ {
		for q := 0; q < cols/4; q++ {
			g := dense[r*cols+4*q : r*cols+4*q+4]
			var idx []int
			for x, v := range g {
				if v != 0 {
					idx = append(idx, x)
				}
			}
			if len(idx) != 2 {
				t.Fatalf("pack24: row %d group %d has %d nonzeros", r, q, len(idx))
			}
			nib := uint16(idx[0] | idx[1]<<2)
			logical[r*nc+q/4] |= nib << (4 * (q % 4))
			values = append(values, g[idx[0]], g[idx[1]])
		}
	}
	return values, reorder(t, logical, rows, nc), logical
}

// decodeDense expands a Sparse24 through its index form (test helper only).
func decodeDense(w *Sparse24) []float32 {
	d := make([]float32, w.Rows*w.Cols)
	half := w.Cols / 2
	for r := 0; r < w.Rows; r++ {
		for kb := 0; kb < w.Cols; kb += sparseBlock {
			nb := min(sparseBlock, w.Cols-kb) / 2
			for x := 0; x < nb; x++ {
				col := kb + int(w.idx[w.Rows*sparseBlock/2*(kb/sparseBlock)+r*nb+x])
				d[r*w.Cols+col] = w.Values[r*half+kb/2+x]
			}
		}
	}
	return d
}

func TestSparse24DecodeMatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range [][2]int{{32, 32}, {32, 64}, {64, 96}, {96, 64}, {32, 160}, {128, 256}} {
		rows, cols := s[0], s[1]
		dense := random24(r, rows, cols)
		values, meta, _ := pack24(t, dense, rows, cols)
		w, err := NewSparse24(rows, cols, values, meta)
		if err != nil {
			t.Fatalf("%d×%d: %v", rows, cols, err)
		}
		got := decodeDense(w)
		for i := range dense {
			if got[i] != dense[i] {
				t.Fatalf("%d×%d: decoded [%d,%d] = %g, want %g", rows, cols, i/cols, i%cols, got[i], dense[i])
			}
		}
		if &w.Values[0] != &values[0] {
			t.Errorf("%d×%d: Values copied, want used in place", rows, cols)
		}
	}
}

func refSparse(x, dense []float32, m, rows, cols int) (want, abs []float64) {
	return ref(m, rows, cols,
		func(i, p int) float32 { return x[i*cols+p] },
		func(p, j int) float32 { return dense[j*cols+p] })
}

func checkSparse(t *testing.T, w *Sparse24, dense, x []float32, m int, want, abs []float64, acc bool) {
	t.Helper()
	rows, cols := w.Rows, w.Cols
	c0 := make([]float32, m*rows)
	for i := range c0 {
		c0[i] = float32(i%7) - 3
	}
	c := append([]float32(nil), c0...)
	SparseMatMulT(c, x, w, m, acc)
	bad := 0
	for i, v := range want {
		a := abs[i]
		if acc {
			v += float64(c0[i])
			a += math.Abs(float64(c0[i]))
		}
		if d := math.Abs(float64(c[i]) - v); !(d <= tolerance(cols, a)) {
			if bad < 3 {
				t.Errorf("%s %d×%d m=%d acc=%v procs=%d: C[%d,%d] = %g, want %g",
					Kernel(), rows, cols, m, acc, runtime.GOMAXPROCS(0), i/rows, i%rows, c[i], v)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s %d×%d m=%d: %d of %d wrong", Kernel(), rows, cols, m, bad, len(want))
	}
}

type sparseCase struct {
	w         *Sparse24
	dense, x  []float32
	m         int
	want, abs []float64
}

func TestSparseMatMulT(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var cases []sparseCase
	for _, s := range [][2]int{{32, 32}, {64, 96}, {96, 160}, {32, 544}} {
		rows, cols := s[0], s[1]
		dense := random24(r, rows, cols)
		values, meta, _ := pack24(t, dense, rows, cols)
		w, err := NewSparse24(rows, cols, values, meta)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []int{1, 3, 17, 64, 127, 128, 129, 200} {
			x := randSlice(r, m*cols)
			want, abs := refSparse(x, dense, m, rows, cols)
			cases = append(cases, sparseCase{w, dense, x, m, want, abs})
		}
	}
	// Big enough for the parallel paths (row split, then tile split).
	for _, m := range []int{130, 520} {
		rows, cols := 256, 512
		dense := random24(r, rows, cols)
		values, meta, _ := pack24(t, dense, rows, cols)
		w, err := NewSparse24(rows, cols, values, meta)
		if err != nil {
			t.Fatal(err)
		}
		x := randSlice(r, m*cols)
		want, abs := refSparse(x, dense, m, rows, cols)
		cases = append(cases, sparseCase{w, dense, x, m, want, abs})
	}
	forEachKernel(t, func(t *testing.T) {
		for _, procs := range []int{1, 2, 3} {
			prev := runtime.GOMAXPROCS(procs)
			for i, sc := range cases {
				checkSparse(t, sc.w, sc.dense, sc.x, sc.m, sc.want, sc.abs, (i+procs)%2 == 0)
			}
			runtime.GOMAXPROCS(prev)
		}
	})
}

func TestNewSparse24Shape(t *testing.T) {
	for _, s := range []struct {
		rows, cols, nv, nm int
	}{
		{16, 32, 256, 32}, {32, 48, 768, 96}, {0, 32, 0, 0}, {32, 0, 0, 0}, {-32, 32, 0, 0},
		{32, 32, 511, 64}, {32, 32, 512, 63}, {32, 32, 513, 64},
	} {
		_, err := NewSparse24(s.rows, s.cols, make([]float32, s.nv), make([]uint16, s.nm))
		if !errors.Is(err, ErrShape) {
			t.Errorf("NewSparse24(%d, %d, [%d], [%d]) error %v, want ErrShape", s.rows, s.cols, s.nv, s.nm, err)
		}
	}
}

func TestNewSparse24InvalidNibble(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	rows, cols := 64, 96
	dense := random24(r, rows, cols)
	values, _, logical := pack24(t, dense, rows, cols)
	nc := cols / 16
	for _, bad := range []uint16{0x0, 0x1, 0x2, 0x3, 0x5, 0x6, 0x7, 0xA, 0xB, 0xF} {
		rr, c, i := r.IntN(rows), r.IntN(nc), r.IntN(4)
		l := append([]uint16(nil), logical...)
		l[rr*nc+c] = l[rr*nc+c]&^(0xF<<(4*i)) | bad<<(4*i)
		meta := reorder(t, l, rows, nc)
		_, err := NewSparse24(rows, cols, values, meta)
		if !errors.Is(err, ErrMeta) {
			t.Fatalf("nibble %#x at row %d group %d: error %v, want ErrMeta", bad, rr, 4*c+i, err)
		}
		want := fmt.Sprintf("row %d, group %d ", rr, 4*c+i)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("nibble %#x: error %q does not name %q", bad, err, want)
		}
	}
}

type specVector struct {
	M, K          int
	Dense, Values []string
	MetaLogical   []string `json:"meta_logical"`
	MetaReordered []string `json:"meta_reordered"`
	GemmC         []int    `json:"gemm_C"`
}

func hex16(t *testing.T, s []string) []uint16 {
	t.Helper()
	out := make([]uint16, len(s))
	for i, h := range s {
		v, err := strconv.ParseUint(h, 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = uint16(v)
	}
	return out
}

// halfToFloat converts IEEE fp16 bits to float32.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := int(h>>10) & 0x1F
	mant := uint32(h & 0x3FF)
	switch {
	case exp == 0:
		f := float32(mant) / (1 << 24)
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 31:
		return math.Float32frombits(sign | 0xFF<<23 | mant<<13)
	}
	return math.Float32frombits(sign | uint32(exp-15+127)<<23 | mant<<13)
}

// TestSpecVectorV1 decodes the spec's V1 vector (fp16 32×64, exact 2:4) and
// reproduces its GEMM exactly.
func TestSpecVectorV1(t *testing.T) {
	raw, err := os.ReadFile("testdata/v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v specVector
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	rows, cols := v.M, v.K
	dense := make([]float32, rows*cols)
	for i, h := range hex16(t, v.Dense) {
		dense[i] = halfToFloat(h)
	}
	values := make([]float32, rows*cols/2)
	for i, h := range hex16(t, v.Values) {
		values[i] = halfToFloat(h)
	}
	meta := hex16(t, v.MetaReordered)
	// The test's §3.1 reorder reproduces the vector's buffer.
	if got := reorder(t, hex16(t, v.MetaLogical), rows, cols/16); fmt.Sprint(got) != fmt.Sprint(meta) {
		t.Fatalf("§3.1 reorder of meta_logical differs from meta_reordered")
	}
	w, err := NewSparse24(rows, cols, values, meta)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeDense(w)
	for i := range dense {
		if got[i] != dense[i] {
			t.Fatalf("V1 decoded [%d,%d] = %g, want %g", i/cols, i%cols, got[i], dense[i])
		}
	}
	// gemm_C = A·Bm with Bm[kk][x] = ((kk*8+x)%7)-3, n = 8. Our kernel computes
	// X·Wᵀ, so X = Bmᵀ [8, cols] and C[x][r] = gemm_C[r*8+x].
	const n = 8
	x := make([]float32, n*cols)
	for kk := 0; kk < cols; kk++ {
		for j := 0; j < n; j++ {
			x[j*cols+kk] = float32((kk*8+j)%7 - 3)
		}
	}
	forEachKernel(t, func(t *testing.T) {
		c := make([]float32, n*rows)
		SparseMatMulT(c, x, w, n, false)
		for r := 0; r < rows; r++ {
			for j := 0; j < n; j++ {
				if want := float32(v.GemmC[r*n+j]); c[j*rows+r] != want {
					t.Fatalf("V1 C[%d][%d] = %g, want %g", r, j, c[j*rows+r], want)
				}
			}
		}
	})
}
