package format

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// refHalf is the value of an IEEE binary16 code by the textbook formula.
func refHalf(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch {
	case e == 0x1f && m == 0:
		return s * math.Inf(1)
	case e == 0x1f:
		return math.NaN()
	case e == 0:
		return s * m * math.Ldexp(1, -24)
	}
	return s * (1 + m/1024) * math.Ldexp(1, e-15)
}

func TestF16AllPatterns(t *testing.T) {
	raw := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(i))
	}
	f := make([]float32, 1<<16)
	if err := ToFloat32(F16, raw, f); err != nil {
		t.Fatal(err)
	}
	for i, v := range f {
		want := refHalf(uint16(i))
		if math.IsNaN(want) {
			if v == v {
				t.Fatalf("%#04x: got %v, want NaN", i, v)
			}
		} else if float64(v) != want || math.Signbit(float64(v)) != math.Signbit(want) {
			t.Fatalf("%#04x: got %v, want %v", i, v, want)
		}
	}
	back := make([]byte, len(raw))
	if err := FromFloat32(F16, f, back); err != nil {
		t.Fatal(err)
	}
	for i := range 1 << 16 {
		if got := binary.LittleEndian.Uint16(back[2*i:]); got != uint16(i) {
			t.Fatalf("%#04x round-tripped to %#04x", i, got)
		}
	}
}

func TestBF16AllPatterns(t *testing.T) {
	raw := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(i))
	}
	f := make([]float32, 1<<16)
	if err := ToFloat32(BF16, raw, f); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(raw))
	if err := FromFloat32(BF16, f, back); err != nil {
		t.Fatal(err)
	}
	for i := range 1 << 16 {
		// formula: bf16 is the top half of a float32
		s := 1.0
		if i&0x8000 != 0 {
			s = -1
		}
		e, m := (i>>7)&0xff, float64(i&0x7f)
		var want float64
		switch {
		case e == 0xff && m == 0:
			want = s * math.Inf(1)
		case e == 0xff:
			want = math.NaN()
		case e == 0:
			want = s * m * math.Ldexp(1, -133)
		default:
			want = s * (1 + m/128) * math.Ldexp(1, e-127)
		}
		v := f[i]
		if math.IsNaN(want) != (v != v) || (!math.IsNaN(want) && float64(v) != want) {
			t.Fatalf("%#04x: got %v, want %v", i, v, want)
		}
		if got := binary.LittleEndian.Uint16(back[2*i:]); got != uint16(i) {
			t.Fatalf("%#04x round-tripped to %#04x", i, got)
		}
	}
}

// nearestEven returns the code of the value in vals (sorted ascending, codes
// parallel) nearest to a ≥ 0, ties to the even code; ok false past the last
// value's rounding boundary given by limit.
func nearestEven(a float64, vals []float64, codes []uint16) uint16 {
	i := sort.SearchFloat64s(vals, a)
	if i == 0 {
		return codes[0]
	}
	if i == len(vals) {
		return codes[len(vals)-1]
	}
	lo, hi := vals[i-1], vals[i]
	switch {
	case a-lo < hi-a:
		return codes[i-1]
	case a-lo > hi-a:
		return codes[i]
	case codes[i-1]&1 == 0:
		return codes[i-1]
	}
	return codes[i]
}

func TestF32ToNarrowRounding(t *testing.T) {
	type table struct {
		name  string
		conv  func(float32) uint16
		val   func(uint16) float64
		inf   uint16
		limit float64 // smallest magnitude that rounds to Inf
	}
	tabs := []table{
		{"F16", F32ToF16, refHalf, 0x7c00, 65520},
		{"BF16", F32ToBF16, func(h uint16) float64 { return float64(math.Float32frombits(uint32(h) << 16)) }, 0x7f80,
			float64(math.Float32frombits(0x7f7f8000))},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tb := range tabs {
		var vals []float64
		var codes []uint16
		for c := uint16(0); c < tb.inf; c++ { // positive finite codes in value order
			vals = append(vals, tb.val(c))
			codes = append(codes, c)
		}
		check := func(v float32) {
			got := tb.conv(v)
			a := math.Abs(float64(v))
			var want uint16
			switch {
			case v != v:
				if g := tb.val(got &^ 0x8000); !math.IsNaN(g) {
					t.Fatalf("%s(%v) = %#04x, not NaN", tb.name, v, got)
				}
				return
			case a >= tb.limit:
				want = tb.inf
			default:
				want = nearestEven(a, vals, codes)
			}
			if math.Signbit(float64(v)) {
				want |= 0x8000
			}
			if got != want {
				t.Fatalf("%s(%v [%#08x]) = %#04x, want %#04x", tb.name, v, math.Float32bits(v), got, want)
			}
		}
		for range 300000 {
			check(math.Float32frombits(rng.Uint32()))
		}
		// every midpoint and its neighbours between consecutive codes
		for i := 0; i+1 < len(vals); i++ {
			mid := float32((vals[i] + vals[i+1]) / 2)
			check(mid)
			check(math.Nextafter32(mid, 0))
			check(math.Nextafter32(mid, float32(math.Inf(1))))
			check(-mid)
		}
		check(float32(math.Inf(1)))
		check(float32(math.Inf(-1)))
		check(float32(math.NaN()))
		check(math.Float32frombits(0x7f800001)) // NaN with payload only in low bits
	}
}

func TestF8Tables(t *testing.T) {
	type c struct {
		code uint8
		want float64
	}
	known := map[DType][]c{
		F8E4M3: {{0x00, 0}, {0x01, math.Ldexp(1, -9)}, {0x07, 7 * math.Ldexp(1, -9)}, {0x08, math.Ldexp(1, -6)},
			{0x38, 1}, {0x3c, 1.5}, {0x7e, 448}, {0xfe, -448}, {0x7f, math.NaN()}, {0xff, math.NaN()}, {0x78, 256}, {0x80, 0}},
		F8E5M2: {{0x00, 0}, {0x01, math.Ldexp(1, -16)}, {0x04, math.Ldexp(1, -14)}, {0x3c, 1}, {0x7b, 57344},
			{0x7c, math.Inf(1)}, {0xfc, math.Inf(-1)}, {0x7d, math.NaN()}, {0x7f, math.NaN()}, {0xc0, -2}},
	}
	formula := func(dt DType, code uint8) float64 {
		eb, mb, bias := 4, 3, 7
		if dt == F8E5M2 {
			eb, mb, bias = 5, 2, 15
		}
		s := 1.0
		if code&0x80 != 0 {
			s = -1
		}
		e := int(code>>mb) & (1<<eb - 1)
		m := float64(code & (1<<mb - 1))
		if dt == F8E4M3 && code&0x7f == 0x7f {
			return math.NaN()
		}
		if dt == F8E5M2 && e == 31 {
			if m == 0 {
				return s * math.Inf(1)
			}
			return math.NaN()
		}
		if e == 0 {
			return s * m * math.Ldexp(1, 1-bias-mb)
		}
		return s * (1 + m/float64(int(1)<<mb)) * math.Ldexp(1, e-bias)
	}
	for _, dt := range []DType{F8E4M3, F8E5M2} {
		raw := make([]byte, 256)
		for i := range raw {
			raw[i] = byte(i)
		}
		f := make([]float32, 256)
		if err := ToFloat32(dt, raw, f); err != nil {
			t.Fatal(err)
		}
		for _, k := range known[dt] {
			got := float64(f[k.code])
			if math.IsNaN(k.want) != math.IsNaN(got) || (!math.IsNaN(got) && got != k.want) {
				t.Errorf("%v %#02x = %v, want %v", dt, k.code, got, k.want)
			}
		}
		back := make([]byte, 256)
		if err := FromFloat32(dt, f, back); err != nil {
			t.Fatal(err)
		}
		for i := range 256 {
			want := formula(dt, uint8(i))
			got := float64(f[i])
			if math.IsNaN(want) {
				if !math.IsNaN(got) {
					t.Fatalf("%v %#02x = %v, want NaN", dt, i, got)
				}
				if dt == F8E4M3 && back[i]&0x7f != 0x7f {
					t.Fatalf("%v NaN %#02x encoded as %#02x", dt, i, back[i])
				}
				continue
			}
			if got != want || math.Signbit(got) != math.Signbit(want) {
				t.Fatalf("%v %#02x = %v, formula %v", dt, i, got, want)
			}
			if back[i] != byte(i) {
				t.Fatalf("%v %#02x round-tripped to %#02x", dt, i, back[i])
			}
		}
		// midpoints round to the even code; just past them to the far one
		for i := range 0x7e {
			lo, hi := float64(f[i]), float64(f[i+1])
			if dt == F8E5M2 && i+1 >= 0x7c {
				break
			}
			mid := float32((lo + hi) / 2)
			wantMid := byte(i)
			if i&1 == 1 {
				wantMid = byte(i + 1)
			}
			if got := f32ToF8(dt, mid); got != wantMid {
				t.Fatalf("%v midpoint %v between %#02x and %#02x -> %#02x", dt, mid, i, i+1, got)
			}
			if got := f32ToF8(dt, math.Nextafter32(mid, float32(hi))); got != byte(i+1) {
				t.Fatalf("%v just above %v -> %#02x", dt, mid, got)
			}
		}
	}
	// overflow behaviour
	if got := F32ToF8E4M3(464); got != 0x7e { // tie to even → 448
		t.Errorf("e4m3(464) = %#02x", got)
	}
	for _, v := range []float32{465, 1e6, float32(math.Inf(1)), float32(math.NaN())} {
		if got := F32ToF8E4M3(v); got&0x7f != 0x7f {
			t.Errorf("e4m3(%v) = %#02x, want NaN", v, got)
		}
	}
	if got := F32ToF8E5M2(61440); got != 0x7c { // tie between 57344 and 65536 → even (Inf)
		t.Errorf("e5m2(61440) = %#02x", got)
	}
	if got := F32ToF8E5M2(-1e9); got != 0xfc {
		t.Errorf("e5m2(-1e9) = %#02x", got)
	}
}

// f32ToF8 dispatches for the test.
func f32ToF8(dt DType, v float32) byte {
	if dt == F8E4M3 {
		return F32ToF8E4M3(v)
	}
	return F32ToF8E5M2(v)
}

func TestIntegerAndBool(t *testing.T) {
	src := []float32{0, 1, -1, 2.5, 3.5, -2.5, 127.4, 1e10, -1e10, float32(math.NaN())}
	cases := []struct {
		dt   DType
		want []float32
	}{
		{I8, []float32{0, 1, -1, 2, 4, -2, 127, 127, -128, 0}},
		{U8, []float32{0, 1, 0, 2, 4, 0, 127, 255, 0, 0}},
		{I16, []float32{0, 1, -1, 2, 4, -2, 127, 32767, -32768, 0}},
		{U16, []float32{0, 1, 0, 2, 4, 0, 127, 65535, 0, 0}},
		{I32, []float32{0, 1, -1, 2, 4, -2, 127, 2147483647, -2147483648, 0}},
		{U32, []float32{0, 1, 0, 2, 4, 0, 127, 4294967295, 0, 0}},
		{I64, []float32{0, 1, -1, 2, 4, -2, 127, 1e10, -1e10, 0}},
		{U64, []float32{0, 1, 0, 2, 4, 0, 127, 1e10, 0, 0}},
		{Bool, []float32{0, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{F64, []float32{0, 1, -1, 2.5, 3.5, -2.5, 127.4, 1e10, -1e10, float32(math.NaN())}},
	}
	for _, c := range cases {
		n, _ := c.dt.ByteSize(int64(len(src)))
		raw := make([]byte, n)
		if err := FromFloat32(c.dt, src, raw); err != nil {
			t.Fatal(c.dt, err)
		}
		got := make([]float32, len(src))
		if err := ToFloat32(c.dt, raw, got); err != nil {
			t.Fatal(c.dt, err)
		}
		for i := range got {
			w := c.want[i]
			if w != w && got[i] != got[i] {
				continue
			}
			if float32(float32(w)) != got[i] {
				t.Errorf("%v: %v -> %v, want %v", c.dt, src[i], got[i], w)
			}
		}
	}
	// negative stored integers decode with their sign
	raw := []byte{0xff, 0xfe, 0xff}
	got := make([]float32, 1)
	if err := ToFloat32(I16, raw[1:], got); err != nil || got[0] != -2 {
		t.Errorf("I16 fe ff = %v (%v)", got[0], err)
	}
}

func TestConvertErrors(t *testing.T) {
	dst := make([]float32, 4)
	if err := ToFloat32(F32, make([]byte, 15), dst); !errors.Is(err, ErrFormat) {
		t.Errorf("short F32 input: %v", err)
	}
	if err := ToFloat32(Invalid, nil, dst); !errors.Is(err, ErrUnsupported) {
		t.Errorf("invalid dtype: %v", err)
	}
	if err := ToFloat32(Q8_0, make([]byte, 34), make([]float32, 31)); !errors.Is(err, ErrFormat) {
		t.Errorf("partial Q8_0 block: %v", err)
	}
	if err := FromFloat32(F16, dst, make([]byte, 7)); !errors.Is(err, ErrFormat) {
		t.Errorf("short F16 output: %v", err)
	}
	if err := FromFloat32(Q4_K, make([]float32, 256), make([]byte, 144)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("quantized encode: %v", err)
	}
}

func benchConvert(b *testing.B, dt DType, decode bool) {
	const n = 1 << 20
	f := make([]float32, n)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range f {
		f[i] = float32(rng.NormFloat64())
	}
	size, _ := dt.ByteSize(n)
	raw := make([]byte, size)
	if err := FromFloat32(dt, f, raw); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(n * 4)) // float32 bytes produced or consumed
	b.ResetTimer()
	for b.Loop() {
		var err error
		if decode {
			err = ToFloat32(dt, raw, f)
		} else {
			err = FromFloat32(dt, f, raw)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// go test -run=^$ -bench=Float32 -benchtime=20x ./format/
func BenchmarkToFloat32F32(b *testing.B)    { benchConvert(b, F32, true) }
func BenchmarkToFloat32F16(b *testing.B)    { benchConvert(b, F16, true) }
func BenchmarkToFloat32BF16(b *testing.B)   { benchConvert(b, BF16, true) }
func BenchmarkFromFloat32F32(b *testing.B)  { benchConvert(b, F32, false) }
func BenchmarkFromFloat32F16(b *testing.B)  { benchConvert(b, F16, false) }
func BenchmarkFromFloat32BF16(b *testing.B) { benchConvert(b, BF16, false) }
