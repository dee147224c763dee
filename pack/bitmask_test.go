package pack

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/mask"
)

// TestBitmaskGolden is the worked example of sparse-checkpoint-formats §4.2.7.
func TestBitmaskGolden(t *testing.T) {
	bf := func(vs ...uint16) []byte {
		b := make([]byte, 2*len(vs))
		for i, v := range vs {
			le.PutUint16(b[2*i:], v)
		}
		return b
	}
	// row0 = [0.5, 0, 0, -1.0, 0, 2.0, 0.25, 0]; row1 = [0, 0, 3.0, 0, 0, 0, 0, 0] (BF16),
	// with a -0.0 in row1 that is a "kept" fill position: it must come out +0.
	dense := bf(0x3F00, 0, 0, 0xBF80, 0, 0x4000, 0x3E80, 0,
		0x8000, 0, 0x4040, 0, 0, 0, 0, 0)
	comp, bm, err := PackBitmask(format.BF16, 2, 8, dense)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bm, []byte{0x69, 0x35}) {
		t.Errorf("bitmask % x, want 69 35", bm)
	}
	want := []byte{0x00, 0x3f, 0x80, 0xbf, 0x00, 0x40, 0x80, 0x3e, 0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x00, 0x00}
	if !bytes.Equal(comp, want) {
		t.Errorf("compressed % x\nwant       % x", comp, want)
	}
	back, err := UnpackBitmask(format.BF16, 2, 8, comp, bm)
	if err != nil {
		t.Fatal(err)
	}
	wantDense := bytes.Clone(dense)
	wantDense[17] = 0 // the -0.0 comes back as +0
	if !bytes.Equal(back, wantDense) {
		t.Errorf("unpack % x", back)
	}
	info, _ := BitmaskLayoutOf(format.BF16, 2, 8)
	if info.CompressedShape[1] != 4 || info.BitmaskShape[1] != 1 {
		t.Errorf("layout %+v", info)
	}
}

func TestBitmaskRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, dt := range []format.DType{format.F16, format.BF16, format.F32, format.I8, format.F8E4M3} {
		for it := 0; it < 20; it++ {
			rows, cols := 1+rng.IntN(40), 4*(1+rng.IntN(40)) // includes cols%8 == 4 (padded bitmask rows)
			dense, _ := randMasked(rng, dt, rows, cols, mask.Pattern24)
			comp, bm, err := PackBitmask(dt, rows, cols, dense)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckBitmask(dt, rows, cols, comp, bm); err != nil {
				t.Fatal(err)
			}
			back, err := UnpackBitmask(dt, rows, cols, comp, bm)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, dense) {
				t.Fatalf("%v [%d,%d]: unpack(pack(W⊙M)) != W⊙M", dt, rows, cols)
			}
			c2, b2, _ := PackBitmask(dt, rows, cols, back)
			if !bytes.Equal(c2, comp) || !bytes.Equal(b2, bm) {
				t.Fatalf("%v: pack(unpack(x)) != x", dt)
			}
		}
	}
}

func TestBitmaskErrors(t *testing.T) {
	dense := make([]byte, 4*16*2)
	le.PutUint16(dense[2*(16+4):], 0x3C00) // row 1, group 1 gets 3 nonzeros
	le.PutUint16(dense[2*(16+5):], 0x3C00)
	le.PutUint16(dense[2*(16+6):], 0x3C00)
	if _, _, err := PackBitmask(format.F16, 4, 16, dense); !errors.Is(err, mask.ErrPattern) {
		t.Errorf("3 nonzeros: %v", err)
	}
	if _, _, err := PackBitmask(format.F16, 4, 14, dense[:4*14*2]); !errors.Is(err, ErrShape) {
		t.Errorf("cols 14: %v", err)
	}
	comp, bm, err := PackBitmask(format.F16, 2, 12, make([]byte, 2*12*2))
	if err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(b []byte){
		"three bits":   func(b []byte) { b[2] |= 0x04 },  // row 1 group 0: 0x3 → 0x7
		"padding bits": func(b []byte) { b[1] |= 0x30 },  // row 0 padding nibble
		"zero bits":    func(b []byte) { b[0] &^= 0x03 }, // row 0 group 0 keeps none
	} {
		b := bytes.Clone(bm)
		mut(b)
		_, err := UnpackBitmask(format.F16, 2, 12, comp, b)
		var fe *format.FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%s: %v, want FormatError", name, err)
		}
	}
	if _, err := UnpackBitmask(format.F16, 2, 12, comp[1:], bm); !errors.Is(err, format.ErrFormat) {
		t.Errorf("short compressed: %v", err)
	}
}

func TestApplyMaskAndIs24(t *testing.T) {
	dense := make([]byte, 8*2)
	for i := 0; i < 8; i++ {
		le.PutUint16(dense[2*i:], 0x3C00|uint16(i))
	}
	le.PutUint16(dense[2*1:], 0x8000) // a kept -0.0
	m := mask.New(1, 8)
	m.Keep[0], m.Keep[1], m.Keep[5], m.Keep[6] = true, true, true, true
	if ok, _, _ := Is24(format.F16, 1, 8, dense); ok {
		t.Fatal("dense row reported 2:4")
	}
	if err := ApplyMask(format.F16, dense, m); err != nil {
		t.Fatal(err)
	}
	want := []uint16{0x3C00, 0, 0, 0, 0, 0x3C05, 0x3C06, 0}
	for i, w := range want {
		if g := le.Uint16(dense[2*i:]); g != w {
			t.Errorf("slot %d = %#04x, want %#04x", i, g, w)
		}
	}
	if ok, _, _ := Is24(format.F16, 1, 8, dense); !ok {
		t.Fatal("masked row not 2:4")
	}
	le.PutUint16(dense[2*4:], 0x3C04)
	if ok, r, g := Is24(format.F16, 1, 8, dense); ok || r != 0 || g != 1 {
		t.Errorf("Is24 = %v, %d, %d; want false, 0, 1", ok, r, g)
	}
	// Generic path (I8, F32) and a wrong size.
	i8 := []byte{1, 2, 0, 0, 0, 1, 2, 3}
	if ok, r, g := Is24(format.I8, 2, 4, i8); ok || r != 1 || g != 0 {
		t.Errorf("I8 Is24 = %v, %d, %d", ok, r, g)
	}
	if ok, r, _ := Is24(format.I8, 2, 4, i8[:7]); ok || r != -1 {
		t.Errorf("short input: ok=%v row=%d", ok, r)
	}
	if err := ApplyMask(format.F16, dense[:6], m); err == nil {
		t.Error("size mismatch accepted")
	}
}
