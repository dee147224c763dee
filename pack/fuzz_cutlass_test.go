package pack

import (
	"bytes"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/mask"
)

var fuzzDTypes = []format.DType{format.F16, format.BF16, format.I8, format.F32}

// FuzzUnpackCutlass feeds untrusted meta (and values) bytes to UnpackCutlass:
// it must never panic, must agree with CheckCutlass, and when it succeeds,
// packing the result must reproduce the values and meta (the layout is
// canonical for exact 2:4 content) — except where the kept values hold zeros,
// which PyTorch's encoder places by its own table.
func FuzzUnpackCutlass(f *testing.F) {
	vs := loadVectors(f)
	for _, name := range []string{"V1", "V3", "V4"} {
		v := vs[name]
		dt := vecDType(f, v.DType)
		g, _ := cutlassGeomOf(dt)
		f.Add(uint8(indexOf(dt)), uint8(v.M/g.minRows), uint8(v.K/g.minCols), hexLE(f, v.Values, g.elem), hexLE(f, v.MetaReorder, g.metaBytes))
	}
	f.Add(uint8(0), uint8(1), uint8(1), make([]byte, 32*32*2), bytes.Repeat([]byte{0x4E}, 32*4*2))
	f.Fuzz(func(t *testing.T, dti, rm, cm uint8, values, meta []byte) {
		dt := fuzzDTypes[int(dti)%len(fuzzDTypes)]
		g, _ := cutlassGeomOf(dt)
		rows, cols := g.minRows*int(rm%4), g.minCols*int(cm%4)
		info, err := CutlassLayoutOf(dt, rows, cols)
		if err == nil {
			// Stretch the inputs to the right sizes most of the time so the
			// nibble checks are reached.
			if len(values) > 0 && int64(len(values)) < info.ValuesSize && rm&0x80 == 0 {
				values = bytes.Repeat(values, int(info.ValuesSize)/len(values)+1)[:info.ValuesSize]
			}
			if len(meta) > 0 && int64(len(meta)) != info.MetaSize && cm&0x80 == 0 {
				meta = bytes.Repeat(meta, int(info.MetaSize)/len(meta)+1)[:info.MetaSize]
			}
		}
		dense, uerr := UnpackCutlass(dt, rows, cols, values, meta)
		cerr := CheckCutlass(dt, rows, cols, values, meta)
		if (uerr == nil) != (cerr == nil) {
			t.Fatalf("UnpackCutlass err=%v but CheckCutlass err=%v", uerr, cerr)
		}
		if uerr != nil {
			return
		}
		if len(dense) != rows*cols*g.elem {
			t.Fatalf("dense %d bytes", len(dense))
		}
		// unpack∘pack∘unpack = unpack: the dense meaning is stable.
		v2, m2, err := PackCutlass(dt, rows, cols, dense)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := UnpackCutlass(dt, rows, cols, v2, m2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(canonZero(dt, d2), canonZero(dt, dense)) {
			t.Fatal("unpack(pack(unpack(x))) != unpack(x)")
		}
		// Where no kept value is zero, the encoding is unique: pack(unpack(x)) == x.
		if !anyZeroElem(dt, values) && !bytes.Equal(v2, values) || !anyZeroElem(dt, values) && !bytes.Equal(m2, meta) {
			t.Fatal("pack(unpack(x)) != x for values without zeros")
		}
	})
}

// canonZero returns b with every -0.0 rewritten to +0.0 (the packers write
// zeros as +0; unpack restores whatever bits the file holds).
func canonZero(dt format.DType, b []byte) []byte {
	k, _ := elemKindOf(dt)
	out := bytes.Clone(b)
	for i := 0; i+k.size <= len(out); i += k.size {
		if k.load(out[i:])&k.nzMask == 0 {
			clear(out[i : i+k.size])
		}
	}
	return out
}

func anyZeroElem(dt format.DType, b []byte) bool {
	k, _ := elemKindOf(dt)
	for i := 0; i+k.size <= len(b); i += k.size {
		if k.load(b[i:])&k.nzMask == 0 {
			return true
		}
	}
	return false
}

func indexOf(dt format.DType) int {
	for i, d := range fuzzDTypes {
		if d == dt {
			return i
		}
	}
	return 0
}

var fuzzBitmaskDTypes = []format.DType{format.BF16, format.F16, format.F32, format.I8, format.F8E4M3}

// FuzzUnpackBitmask feeds untrusted bitmask/compressed bytes to UnpackBitmask:
// no panic, agreement with CheckBitmask, and pack∘unpack consistency.
func FuzzUnpackBitmask(f *testing.F) {
	f.Add(uint8(0), uint8(2), uint8(2),
		[]byte{0x00, 0x3f, 0x80, 0xbf, 0x00, 0x40, 0x80, 0x3e, 0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x00, 0x00},
		[]byte{0x69, 0x35})
	f.Add(uint8(3), uint8(3), uint8(3), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, []byte{0x35, 0x0C, 0xAA, 0x05, 0x99, 0x06})
	f.Fuzz(func(t *testing.T, dti, rows8, cols4 uint8, comp, bm []byte) {
		dt := fuzzBitmaskDTypes[int(dti)%len(fuzzBitmaskDTypes)]
		rows, cols := int(rows8%16), 4*int(cols4%16)
		if info, err := BitmaskLayoutOf(dt, rows, cols); err == nil && rows8&0x80 == 0 {
			// Stretch the inputs to the right sizes most of the time so the
			// popcount and scatter paths are reached.
			if len(comp) > 0 {
				comp = bytes.Repeat(comp, int(info.CompressedSize)/len(comp)+1)[:info.CompressedSize]
			}
			if len(bm) > 0 && cols4&0x80 == 0 {
				// valid nibbles most of the time: map each to a popcount-2 code
				codes := [6]byte{0x3, 0x5, 0x6, 0x9, 0xA, 0xC}
				b := bytes.Repeat(bm, int(info.BitmaskSize)/len(bm)+1)[:info.BitmaskSize]
				bm = make([]byte, len(b))
				for i, x := range b {
					bm[i] = codes[(x&0xF)%6] | codes[(x>>4)%6]<<4
				}
				if cols%8 == 4 { // zero the padding nibble of every row
					bw := (cols + 7) / 8
					for r := 0; r < rows; r++ {
						bm[r*bw+bw-1] &= 0x0F
					}
				}
			}
		}
		dense, uerr := UnpackBitmask(dt, rows, cols, comp, bm)
		cerr := CheckBitmask(dt, rows, cols, comp, bm)
		if (uerr == nil) != (cerr == nil) {
			t.Fatalf("UnpackBitmask err=%v but CheckBitmask err=%v", uerr, cerr)
		}
		if uerr != nil {
			return
		}
		c2, b2, err := PackBitmask(dt, rows, cols, dense)
		if err != nil {
			t.Fatalf("re-pack: %v", err)
		}
		d2, err := UnpackBitmask(dt, rows, cols, c2, b2)
		if err != nil || !bytes.Equal(d2, canonZero(dt, dense)) {
			t.Fatalf("unpack(pack(unpack(x))) != unpack(x): %v", err)
		}
		if !anyZeroElem(dt, comp) && (!bytes.Equal(c2, comp) || !bytes.Equal(b2, bm)) {
			t.Fatal("pack(unpack(x)) != x for values without zeros")
		}
	})
}

// FuzzPackUnpack: for any weight bytes and any N:M mask the layout holds,
// unpack(pack(W ⊙ M)) == W ⊙ M bit for bit, for both packed layouts.
func FuzzPackUnpack(f *testing.F) {
	f.Add(uint8(0), uint8(1), uint8(1), []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{0x35, 0xC9})
	f.Add(uint8(3), uint8(1), uint8(1), []byte{0, 0x80, 0, 0, 0xff, 0x7f}, []byte{0x21})
	f.Fuzz(func(t *testing.T, dti, rm, cm uint8, w, keep []byte) {
		if len(w) == 0 || len(keep) == 0 {
			return
		}
		dt := fuzzDTypes[int(dti)%len(fuzzDTypes)]
		g, _ := cutlassGeomOf(dt)
		rows, cols := g.minRows*(1+int(rm%2)), g.minCols*(1+int(cm%2))
		p := mask.Pattern24
		if dt == format.F32 {
			p = mask.Pattern{N: 1, M: 2}
		}
		dense := bytes.Repeat(w, rows*cols*g.elem/len(w)+1)[:rows*cols*g.elem]
		m := mask.New(rows, cols)
		pairs := [6][2]int{{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}}
		for q := 0; q < rows*cols/p.M; q++ {
			k := keep[q%len(keep)] >> (q % 3)
			if p.M == 2 {
				m.Keep[2*q+int(k&1)] = true
				continue
			}
			pr := pairs[int(k)%6]
			m.Keep[4*q+pr[0]], m.Keep[4*q+pr[1]] = true, true
		}
		if err := ApplyMask(dt, dense, m); err != nil {
			t.Fatal(err)
		}
		vals, meta, err := PackCutlass(dt, rows, cols, dense)
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnpackCutlass(dt, rows, cols, vals, meta)
		if err != nil || !bytes.Equal(back, dense) {
			t.Fatalf("cutlass %v: unpack(pack(W⊙M)) != W⊙M (%v)", dt, err)
		}
		if p.M != 4 {
			return
		}
		comp, bm, err := PackBitmask(dt, rows, cols, dense)
		if err != nil {
			t.Fatal(err)
		}
		back, err = UnpackBitmask(dt, rows, cols, comp, bm)
		if err != nil || !bytes.Equal(back, dense) {
			t.Fatalf("bitmask %v: unpack(pack(W⊙M)) != W⊙M (%v)", dt, err)
		}
	})
}
