package kernel

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// FuzzNewSparse24 feeds arbitrary metadata (and a shape) to NewSparse24. It
// must never panic; when it accepts the layout, the decoded index form must
// put exactly two values in every group of four, and SparseMatMulT must agree
// with a dense product of the decoded weight.
func FuzzNewSparse24(f *testing.F) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, s := range [][2]int{{32, 32}, {32, 64}, {64, 96}} {
		dense := random24(r, s[0], s[1])
		_, meta, _ := pack24(f, dense, s[0], s[1])
		buf := make([]byte, 2*len(meta))
		for i, w := range meta {
			binary.LittleEndian.PutUint16(buf[2*i:], w)
		}
		f.Add(uint8(s[0]/32), uint8(s[1]/32), buf)
	}
	f.Add(uint8(1), uint8(1), make([]byte, 128))        // all-zero nibbles: invalid
	f.Add(uint8(1), uint8(2), []byte{0xEE, 0xEE, 0x44}) // wrong length
	f.Add(uint8(0), uint8(1), []byte{})                 // zero rows
	f.Fuzz(func(t *testing.T, rb, cb uint8, raw []byte) {
		rows, cols := int(rb%4)*32, int(cb%6)*32
		meta := make([]uint16, len(raw)/2)
		for i := range meta {
			meta[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
		nv := rows * cols / 2
		values := make([]float32, nv)
		for i := range values {
			values[i] = float32(i%13) - 6
		}
		w, err := NewSparse24(rows, cols, values, meta)
		if err != nil {
			if !errors.Is(err, ErrShape) && !errors.Is(err, ErrMeta) {
				t.Fatalf("error %v wraps neither ErrShape nor ErrMeta", err)
			}
			return
		}
		dense := decodeDense(w)
		// Every group keeps exactly two positions: decode all-ones values.
		ones := make([]float32, nv)
		for i := range ones {
			ones[i] = 1
		}
		w1, err := NewSparse24(rows, cols, ones, meta)
		if err != nil {
			t.Fatalf("same meta accepted once, rejected with other values: %v", err)
		}
		d1 := decodeDense(w1)
		for g := 0; g < rows*cols; g += 4 {
			if s := d1[g] + d1[g+1] + d1[g+2] + d1[g+3]; s != 2 {
				t.Fatalf("group at %d decodes %v values, want 2", g, s)
			}
		}
		const m = 3
		x := make([]float32, m*cols)
		for i := range x {
			x[i] = float32(i%7) - 3
		}
		c := make([]float32, m*rows)
		SparseMatMulT(c, x, w, m, false)
		for i := 0; i < m; i++ {
			for j := 0; j < rows; j++ {
				var want float64
				for p := 0; p < cols; p++ {
					want += float64(x[i*cols+p]) * float64(dense[j*cols+p])
				}
				if math.Abs(float64(c[i*rows+j])-want) > 1e-3 {
					t.Fatalf("C[%d,%d] = %g, want %g", i, j, c[i*rows+j], want)
				}
			}
		}
	})
}
