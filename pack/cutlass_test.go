package pack

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/mask"
)

// vector is one test vector of nvidia-24-layout-vectors.json (spec §9).
type vector struct {
	DType        string   `json:"dtype"`
	M            int      `json:"m"`
	K            int      `json:"k"`
	Dense        []string `json:"dense"`
	Values       []string `json:"values"`
	MetaLogical  []string `json:"meta_logical"`
	MetaReorder  []string `json:"meta_reordered"`
	Decompressed []string `json:"decompressed"`
	GemmC        []int64  `json:"gemm_C"`
}

func loadVectors(t testing.TB) map[string]vector {
	t.Helper()
	b, err := os.ReadFile("testdata/nvidia-24-layout-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string]vector{}
	for _, name := range []string{"V1", "V2", "V3", "V4"} {
		var v vector
		if err := json.Unmarshal(raw[name], &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = v
	}
	return out
}

func vecDType(t testing.TB, s string) format.DType {
	switch s {
	case "float16":
		return format.F16
	case "int8":
		return format.I8
	case "float32":
		return format.F32
	}
	t.Fatalf("dtype %q", s)
	return 0
}

// hexLE turns hex element strings into little-endian bytes of width bytes each.
func hexLE(t testing.TB, hs []string, width int) []byte {
	t.Helper()
	out := make([]byte, 0, len(hs)*width)
	for _, h := range hs {
		v, err := strconv.ParseUint(h, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < width; i++ {
			out = append(out, byte(v>>(8*i)))
		}
	}
	return out
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestCutlassVectors(t *testing.T) {
	vs := loadVectors(t)
	// SHA-256 values quoted in nvidia-24-layout.md §9.5–9.8, tying the JSON to the spec text.
	wantSHA := map[string][2]string{
		"V1": {"ab64378a073d2a35cd79b9ec577438d44a6610e5981797264f6e129399349d52", "ae4d51cbfe21c8afb8b62cd7ee728a68e1db3636dcc7769876b3164e3d91e19b"},
		"V2": {"b842489e4cf7afe80362dcfd668d73627923c1512095e7f45926786f538b9d27", "42832956c335b690fdf856e8f7cf8de974ae81f78b77fe1391783c34a6bf0fb5"},
		"V3": {"114fcdc7c9efa2eddf9bde02f1b38f64cba94440358f6168383ec3aeef76d5b7", "6d03bfca626a214d9aaa5502aebd94f3d1793af6ab9c2e67bf563ec0dfff1469"},
		"V4": {"56380853e7d7db8d3698ff48b5bc0237ddfa9c0bdcea8d63a26265fe9907f013", "30541291e68623d54968b7cc04b9bf3f506dbb508af69f14554247f7af32f188"},
	}
	for name, v := range vs {
		t.Run(name, func(t *testing.T) {
			dt := vecDType(t, v.DType)
			g, _ := cutlassGeomOf(dt)
			dense := hexLE(t, v.Dense, g.elem)
			wantVals := hexLE(t, v.Values, g.elem)
			wantMeta := hexLE(t, v.MetaReorder, g.metaBytes)
			vals, meta, err := PackCutlass(dt, v.M, v.K, dense)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(vals, wantVals) {
				t.Errorf("values differ from the vector")
			}
			if !bytes.Equal(meta, wantMeta) {
				t.Errorf("reordered meta differs from the vector")
			}
			if got := sha(vals); got != wantSHA[name][0] {
				t.Errorf("values sha256 %s, spec says %s", got, wantSHA[name][0])
			}
			if got := sha(meta); got != wantSHA[name][1] {
				t.Errorf("meta sha256 %s, spec says %s", got, wantSHA[name][1])
			}
			// The logical words, found through the reorder map, match meta_logical.
			logical := hexLE(t, v.MetaLogical, g.metaBytes)
			nc := v.K / g.colsPerWord
			for r := 0; r < v.M; r++ {
				for c := 0; c < nc; c++ {
					o := MetaOffset(g.metaBytes, v.M, r, c) * g.metaBytes
					l := (r*nc + c) * g.metaBytes
					if !bytes.Equal(meta[o:o+g.metaBytes], logical[l:l+g.metaBytes]) {
						t.Fatalf("logical word (%d,%d) differs", r, c)
					}
					if rr, cc := metaInverse(g.metaBytes, v.M, o/g.metaBytes); rr != r || cc != c {
						t.Fatalf("inverse(%d) = (%d,%d), want (%d,%d)", o/g.metaBytes, rr, cc, r, c)
					}
				}
			}
			back, err := UnpackCutlass(dt, v.M, v.K, vals, meta)
			if err != nil {
				t.Fatal(err)
			}
			want := dense
			if v.Decompressed != nil {
				want = hexLE(t, v.Decompressed, g.elem)
			}
			if !bytes.Equal(back, want) {
				t.Errorf("unpack does not restore the dense bytes")
			}
			if err := CheckCutlass(dt, v.M, v.K, vals, meta); err != nil {
				t.Errorf("CheckCutlass: %v", err)
			}
			if v.GemmC != nil {
				checkVectorGEMM(t, dt, v, back)
			}
		})
	}
}

// checkVectorGEMM recomputes the vector's C = A·Bd (spec §9.3) from the
// unpacked dense matrix.
func checkVectorGEMM(t *testing.T, dt format.DType, v vector, dense []byte) {
	t.Helper()
	for r := 0; r < v.M; r++ {
		for x := 0; x < 8; x++ {
			var s int64
			for kk := 0; kk < v.K; kk++ {
				var a int64
				switch dt {
				case format.I8:
					a = int64(int8(dense[r*v.K+kk]))
				case format.F16:
					a = int64(f16ToF32(le.Uint16(dense[2*(r*v.K+kk):])))
				case format.F32:
					a = int64(f32frombits(le.Uint32(dense[4*(r*v.K+kk):])))
				}
				s += a * int64((kk*8+x)%7-3)
			}
			if s != v.GemmC[r*8+x] {
				t.Fatalf("C[%d][%d] = %d, vector says %d", r, x, s, v.GemmC[r*8+x])
			}
		}
	}
}

func TestCutlassV0(t *testing.T) {
	// PyTorch docstring golden: [0,0,1,1] tiled to 128x128 fp16 → values all 1.0, meta all 0xEEEE.
	dense := make([]byte, 128*128*2)
	for i := 0; i < 128*128; i++ {
		if i%4 >= 2 {
			le.PutUint16(dense[2*i:], 0x3C00)
		}
	}
	vals, meta, err := PackCutlass(format.F16, 128, 128, dense)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(vals); i += 2 {
		if le.Uint16(vals[i:]) != 0x3C00 {
			t.Fatalf("value %d = %#x", i/2, le.Uint16(vals[i:]))
		}
	}
	for i := 0; i < len(meta); i += 2 {
		if int16(le.Uint16(meta[i:])) != -4370 {
			t.Fatalf("meta %d = %d, want -4370", i/2, int16(le.Uint16(meta[i:])))
		}
	}
	// All zeros (32x64, the smallest F16 shape PyTorch's API takes): meta 0xEEEE, values 0.
	vals, meta, err = PackCutlass(format.BF16, 32, 64, make([]byte, 32*64*2))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(vals, []byte{0}) != len(vals) || bytes.Count(meta, []byte{0xEE}) != len(meta) {
		t.Fatal("all-zero matrix: want zero values and 0xEEEE meta")
	}
}

func TestCutlassShapeRules(t *testing.T) {
	for _, c := range []struct {
		dt         format.DType
		rows, cols int
		ok         bool
	}{
		{format.F16, 32, 64, true}, {format.BF16, 64, 128, true}, {format.F16, 32, 32, false},
		{format.F16, 16, 64, false}, {format.F16, 48, 64, false}, {format.BF16, 32, 96, false},
		{format.I8, 16, 128, true}, {format.I8, 16, 64, false}, {format.I8, 8, 128, false},
		{format.F32, 32, 32, true}, {format.F32, 32, 16, false}, {format.F32, 172, 64, false},
		{format.F16, 0, 0, false}, {format.F16, -32, 64, false},
	} {
		err := CutlassShapeOK(c.dt, c.rows, c.cols)
		if (err == nil) != c.ok {
			t.Errorf("%v [%d,%d]: err=%v, want ok=%v", c.dt, c.rows, c.cols, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrShape) {
			t.Errorf("%v [%d,%d]: %v does not wrap ErrShape", c.dt, c.rows, c.cols, err)
		}
		if _, _, perr := PackCutlass(c.dt, c.rows, c.cols, nil); (perr == nil) != false {
			t.Errorf("PackCutlass with nil input accepted")
		}
	}
	if err := CutlassShapeOK(format.Q4_0, 32, 64); !errors.Is(err, format.ErrUnsupported) {
		t.Errorf("Q4_0: %v", err)
	}
}

// randMasked returns a random [rows, cols] matrix of dt (random bit patterns,
// with some -0.0 and NaN), masked by a random N:M mask with ApplyMask.
func randMasked(rng *rand.Rand, dt format.DType, rows, cols int, p mask.Pattern) ([]byte, *mask.Mask) {
	k, _ := elemKindOf(dt)
	dense := make([]byte, rows*cols*k.size)
	for i := range dense {
		dense[i] = byte(rng.Uint32())
	}
	for i := 0; i < rows*cols; i++ {
		switch rng.IntN(10) {
		case 0: // -0.0 or 0
			clear(dense[i*k.size : (i+1)*k.size])
			if k.isFloat && rng.IntN(2) == 0 {
				dense[(i+1)*k.size-1] = 0x80
			}
		}
	}
	m := mask.New(rows, cols)
	for r := 0; r < rows; r++ {
		for q := 0; q < cols/p.M; q++ {
			for _, j := range rng.Perm(p.M)[:p.N] {
				m.Keep[r*cols+q*p.M+j] = true
			}
		}
	}
	if err := ApplyMask(dt, dense, m); err != nil {
		panic(err)
	}
	return dense, m
}

func TestCutlassRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dt := range []format.DType{format.F16, format.BF16, format.I8, format.F32} {
		g, _ := cutlassGeomOf(dt)
		p := mask.Pattern24
		if dt == format.F32 {
			p = mask.Pattern{N: 1, M: 2}
		}
		for it := 0; it < 12; it++ {
			rows := g.minRows * (1 + rng.IntN(4))
			cols := g.minCols * (1 + rng.IntN(4))
			if it == 0 { // one large enough for the parallel path
				rows, cols = 256, 2048
			}
			dense, _ := randMasked(rng, dt, rows, cols, p)
			if ok, r, q := IsPattern(dt, rows, cols, dense, p); !ok {
				t.Fatalf("%v: masked matrix not %v at row %d group %d", dt, p, r, q)
			}
			vals, meta, err := PackCutlass(dt, rows, cols, dense)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckCutlass(dt, rows, cols, vals, meta); err != nil {
				t.Fatal(err)
			}
			back, err := UnpackCutlass(dt, rows, cols, vals, meta)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, dense) {
				t.Fatalf("%v [%d,%d]: unpack(pack(W⊙M)) != W⊙M", dt, rows, cols)
			}
			// Re-packing the unpacked matrix gives the same bytes.
			v2, m2, _ := PackCutlass(dt, rows, cols, back)
			if !bytes.Equal(v2, vals) || !bytes.Equal(m2, meta) {
				t.Fatalf("%v: pack(unpack(x)) != x", dt)
			}
		}
	}
}

// TestCutlassPackReference checks the word-at-a-time packer against a
// straightforward per-element transcription of spec §4.1, on arbitrary
// (non-2:4) content.
func TestCutlassPackReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, dt := range []format.DType{format.F16, format.BF16, format.I8, format.F32} {
		g, _ := cutlassGeomOf(dt)
		k, _ := elemKindOf(dt)
		rows, cols := 2*g.minRows, 2*g.minCols
		dense := make([]byte, rows*cols*g.elem)
		for i := 0; i < rows*cols; i++ {
			if rng.IntN(2) == 0 {
				dense[i*g.elem+rng.IntN(g.elem)] = byte(rng.Uint32())
			}
		}
		vals, meta, err := PackCutlass(dt, rows, cols, dense)
		if err != nil {
			t.Fatal(err)
		}
		wantV := make([]byte, len(vals))
		wantM := make([]byte, len(meta))
		j := 0
		for r := 0; r < rows; r++ {
			for c := 0; c < cols/g.colsPerWord; c++ {
				var w uint32
				for i := 0; i < g.nibbles; i++ {
					q := c*g.nibbles + i
					grp := dense[(r*cols+q*g.group)*g.elem:]
					var nib uint32
					var pos []int
					if g.group == 2 {
						f0 := k.load(grp)&k.nzMask != 0
						nib, pos = 0xE, []int{1}
						if f0 {
							nib, pos = 0x4, []int{0}
						}
					} else {
						f := k.groupFlags(grp, 4)
						p := pickTab[f]
						nib, pos = uint32(p.nib), []int{int(p.p0), int(p.p1)}
					}
					for _, ps := range pos {
						copy(wantV[j*g.elem:], grp[ps*g.elem:(ps+1)*g.elem])
						j++
					}
					w |= nib << (4 * i)
				}
				o := MetaOffset(g.metaBytes, rows, r, c) * g.metaBytes
				if g.metaBytes == 2 {
					le.PutUint16(wantM[o:], uint16(w))
				} else {
					le.PutUint32(wantM[o:], w)
				}
			}
		}
		if !bytes.Equal(vals, wantV) || !bytes.Equal(meta, wantM) {
			t.Errorf("%v: fast packer differs from the reference", dt)
		}
	}
}

func TestCutlassPickTable(t *testing.T) {
	// spec §2.1 truth table, flags written m0 m1 m2 m3.
	want := map[string]uint8{
		"0000": 0xE, "0001": 0xE, "0010": 0xE, "0011": 0xE, "0100": 0x9, "0101": 0xD, "0110": 0x9, "0111": 0xD,
		"1000": 0x8, "1001": 0xC, "1010": 0x8, "1011": 0xC, "1100": 0x4, "1101": 0x4, "1110": 0x4, "1111": 0x4,
	}
	for s, nib := range want {
		f := 0
		for i, ch := range s {
			if ch == '1' {
				f |= 1 << i
			}
		}
		if pickTab[f].nib != nib {
			t.Errorf("flags %s: nibble %#x, want %#x", s, pickTab[f].nib, nib)
		}
	}
}

func TestUnpackCutlassErrors(t *testing.T) {
	dense := make([]byte, 64*128*2)
	vals, meta, err := PackCutlass(format.BF16, 64, 128, dense)
	if err != nil {
		t.Fatal(err)
	}
	// An invalid nibble at logical row 9, group 5 (word c=1, nibble 1).
	o := MetaOffset(2, 64, 9, 1) * 2
	bad := bytes.Clone(meta)
	bad[o] = (bad[o] & 0x0F) | 0x50 // nibble 1 := 0x5 (idx0 == idx1)
	for name, f := range map[string]func() error{
		"unpack": func() error { _, err := UnpackCutlass(format.BF16, 64, 128, vals, bad); return err },
		"check":  func() error { return CheckCutlass(format.BF16, 64, 128, vals, bad) },
	} {
		err := f()
		var fe *format.FormatError
		if !errors.As(err, &fe) || !errors.Is(err, format.ErrFormat) {
			t.Fatalf("%s: %v, want a FormatError", name, err)
		}
		if fe.Offset != int64(o) || !bytes.Contains([]byte(fe.Msg), []byte("row 9 group 5")) {
			t.Errorf("%s: %v: want offset %d and row 9 group 5", name, err, o)
		}
	}
	if _, err := UnpackCutlass(format.BF16, 64, 128, vals[1:], meta); !errors.Is(err, format.ErrFormat) {
		t.Errorf("short values: %v", err)
	}
	if _, err := UnpackCutlass(format.BF16, 64, 128, vals, meta[2:]); !errors.Is(err, format.ErrFormat) {
		t.Errorf("short meta: %v", err)
	}
	if _, err := UnpackCutlass(format.BF16, 1<<30, 1<<30, vals, meta); !errors.Is(err, ErrShape) {
		t.Errorf("huge shape: %v", err)
	}
	// F32: 0x8 is a valid 2:4 code but not a 1:2 one.
	v32, m32, _ := PackCutlass(format.F32, 32, 32, make([]byte, 32*32*4))
	m32[0] = 0x48
	if err := CheckCutlass(format.F32, 32, 32, v32, m32); !errors.Is(err, format.ErrFormat) {
		t.Errorf("F32 nibble 0x8: %v", err)
	}
}

func f32frombits(b uint32) float32 { return math.Float32frombits(b) }

// f16ToF32 converts IEEE half bits to float32 (test helper; normal numbers,
// subnormals and zero).
func f16ToF32(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 0x1F
	m := float32(h & 0x3FF)
	if e == 0 {
		return sign * m / 1024 * float32(math.Pow(2, -14))
	}
	return sign * (1 + m/1024) * float32(math.Pow(2, float64(e-15)))
}
