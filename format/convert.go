package format

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
)

// ToFloat32 decodes n = len(dst) elements of dtype dt from raw (little-endian
// stored bytes) into dst. raw must hold at least dt.ByteSize(n) bytes; extra
// bytes are ignored. Quantized GGML types are dequantized with Dequantize.
//
// Floats are widened exactly (F16, BF16, F8 values are all representable in
// float32, NaN payloads included); F64 and 64-bit integers round to nearest;
// BOOL is 0 or 1. F8_E4M3 is the "fn" variant (torch.float8_e4m3fn): no
// infinities, 0x7F/0xFF are NaN, largest finite value 448. F8_E5M2 follows
// IEEE rules (infinities and NaNs).
//
// ToFloat32 is safe for concurrent use.
func ToFloat32(dt DType, raw []byte, dst []float32) error {
	t, ok := dt.Trait()
	if !ok {
		return fmt.Errorf("%w: decoding %v", ErrUnsupported, dt)
	}
	need, err := dt.ByteSize(int64(len(dst)))
	if err != nil {
		return err
	}
	if int64(len(raw)) < need {
		return fmt.Errorf("%w: decoding %d %v elements needs %d bytes, have %d", ErrFormat, len(dst), dt, need, len(raw))
	}
	if t.Quantized {
		return Dequantize(dt, raw[:need], dst)
	}
	raw = raw[:need]
	le := binary.LittleEndian
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case F16:
		tab := f16Table()
		for i := range dst {
			dst[i] = math.Float32frombits(tab[le.Uint16(raw[2*i:])])
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(raw[2*i:])) << 16)
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	case I64:
		for i := range dst {
			dst[i] = float32(int64(le.Uint64(raw[8*i:])))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(le.Uint32(raw[4*i:])))
		}
	case I16:
		for i := range dst {
			dst[i] = float32(int16(le.Uint16(raw[2*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = float32(int8(raw[i]))
		}
	case U64:
		for i := range dst {
			dst[i] = float32(le.Uint64(raw[8*i:]))
		}
	case U32:
		for i := range dst {
			dst[i] = float32(le.Uint32(raw[4*i:]))
		}
	case U16:
		for i := range dst {
			dst[i] = float32(le.Uint16(raw[2*i:]))
		}
	case U8:
		for i := range dst {
			dst[i] = float32(raw[i])
		}
	case Bool:
		for i := range dst {
			if raw[i] != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	case F8E4M3:
		tab := &f8Tables().e4m3
		for i := range dst {
			dst[i] = math.Float32frombits(tab[raw[i]])
		}
	case F8E5M2:
		tab := &f8Tables().e5m2
		for i := range dst {
			dst[i] = math.Float32frombits(tab[raw[i]])
		}
	default:
		return fmt.Errorf("%w: decoding %v", ErrUnsupported, dt)
	}
	return nil
}

// FromFloat32 encodes src as dtype dt into dst (len(dst) ≥ dt.ByteSize(len(src))),
// rounding to nearest even for narrower float types.
//
// F16 and BF16 round to nearest even, overflow to ±Inf, keep subnormals exact
// and keep NaNs NaN (payload truncated, never turned into Inf); F16 and BF16
// values survive ToFloat32 → FromFloat32 bit for bit. F8_E4M3 (fn) rounds to
// nearest even and saturates nothing: values beyond ±448 (after rounding),
// ±Inf and NaN become NaN (0x7F/0xFF), as torch's cast does. F8_E5M2 rounds to
// nearest even with IEEE overflow to ±Inf. Integers round to nearest even,
// saturate at the type's range, and map NaN to 0; BOOL stores x != 0.
// Quantized GGML types are not encoded (ErrUnsupported).
//
// FromFloat32 is safe for concurrent use.
func FromFloat32(dt DType, src []float32, dst []byte) error {
	t, ok := dt.Trait()
	if !ok || t.Quantized {
		return fmt.Errorf("%w: encoding %v", ErrUnsupported, dt)
	}
	need, err := dt.ByteSize(int64(len(src)))
	if err != nil {
		return err
	}
	if int64(len(dst)) < need {
		return fmt.Errorf("%w: encoding %d %v elements needs %d bytes, have %d", ErrFormat, len(src), dt, need, len(dst))
	}
	dst = dst[:need]
	le := binary.LittleEndian
	switch dt {
	case F32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], F32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], F32ToBF16(v))
		}
	case F64:
		for i, v := range src {
			le.PutUint64(dst[8*i:], math.Float64bits(float64(v)))
		}
	case I64:
		for i, v := range src {
			le.PutUint64(dst[8*i:], uint64(int64(clampRound(v, math.MinInt64, math.MaxInt64))))
		}
	case I32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], uint32(int32(clampRound(v, math.MinInt32, math.MaxInt32))))
		}
	case I16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], uint16(int16(clampRound(v, math.MinInt16, math.MaxInt16))))
		}
	case I8:
		for i, v := range src {
			dst[i] = byte(int8(clampRound(v, math.MinInt8, math.MaxInt8)))
		}
	case U64:
		for i, v := range src {
			le.PutUint64(dst[8*i:], clampRoundU64(v))
		}
	case U32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], uint32(clampRound(v, 0, math.MaxUint32)))
		}
	case U16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], uint16(clampRound(v, 0, math.MaxUint16)))
		}
	case U8:
		for i, v := range src {
			dst[i] = byte(clampRound(v, 0, math.MaxUint8))
		}
	case Bool:
		for i, v := range src {
			if v != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	case F8E4M3:
		for i, v := range src {
			dst[i] = F32ToF8E4M3(v)
		}
	case F8E5M2:
		for i, v := range src {
			dst[i] = F32ToF8E5M2(v)
		}
	default:
		return fmt.Errorf("%w: encoding %v", ErrUnsupported, dt)
	}
	return nil
}

// clampRound rounds v to nearest even and clamps it to [lo, hi]; NaN gives 0.
// The result is exact for every integer type up to 32 bits; for 64-bit types
// the clamp bounds are the nearest float64 values, handled by the callers'
// conversions.
func clampRound(v float32, lo, hi float64) int64 {
	if v != v {
		return 0
	}
	r := math.RoundToEven(float64(v))
	if r <= lo {
		return int64(lo)
	}
	if r >= hi {
		if hi >= math.MaxInt64 {
			return math.MaxInt64
		}
		return int64(hi)
	}
	return int64(r)
}

func clampRoundU64(v float32) uint64 {
	if v != v || v <= 0 {
		return 0
	}
	r := math.RoundToEven(float64(v))
	if r >= 18446744073709551615.0 {
		return math.MaxUint64
	}
	return uint64(r)
}

// F16ToF32 widens one IEEE half-precision value (exact).
func F16ToF32(h uint16) float32 { return math.Float32frombits(f16Table()[h]) }

// BF16ToF32 widens one bfloat16 value (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// f16Bits converts half bits to float32 bits by formula (the table's source).
func f16Bits(h uint16) uint32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN, payload kept
		return sign | 0x7f800000 | mant<<13
	case exp != 0:
		return sign | (exp+112)<<23 | mant<<13
	case mant == 0:
		return sign
	default: // subnormal: normalise
		e := uint32(113)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return sign | e<<23 | (mant&0x3ff)<<13
	}
}

var f16TableOnce = sync.OnceValue(func() *[1 << 16]uint32 {
	var t [1 << 16]uint32
	for i := range t {
		t[i] = f16Bits(uint16(i))
	}
	return &t
})

func f16Table() *[1 << 16]uint32 { return f16TableOnce() }

// F32ToF16 narrows to IEEE half precision, rounding to nearest even.
func F32ToF16(v float32) uint16 {
	f := math.Float32bits(v)
	sign := uint16(f>>16) & 0x8000
	if x := f & 0x7fffffff; x-0x38800000 < 0x477ff000-0x38800000 {
		// normal result (the common case): rebias and round to nearest even;
		// a carry out of the mantissa correctly bumps the exponent.
		return sign | uint16((x-0x38000000+0xfff+(x>>13)&1)>>13)
	}
	exp := int32(f>>23) & 0xff
	mant := f & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		m := uint16(mant >> 13)
		if m == 0 {
			m = 0x200 // keep it a NaN
		}
		return sign | 0x7c00 | m
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign // below half the smallest subnormal
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is the correct result, up to Inf
	}
	return sign | uint16(h)
}

// F32ToBF16 narrows to bfloat16, rounding to nearest even.
func F32ToBF16(v float32) uint16 {
	f := math.Float32bits(v)
	if f&0x7fffffff > 0x7f800000 { // NaN
		h := uint16(f >> 16)
		if h&0x7f == 0 {
			h |= 0x40
		}
		return h
	}
	f += 0x7fff + (f>>16)&1
	return uint16(f >> 16)
}

// minifloat describes a small binary float format for table building and
// rounding: ebits exponent bits, mbits mantissa bits, and whether the top
// exponent encodes Inf/NaN (IEEE) or only the all-ones pattern is NaN (fn).
type minifloat struct {
	ebits, mbits int
	ieee         bool
}

func (m minifloat) bias() int { return 1<<(m.ebits-1) - 1 }

// decode returns the float32 bits of the 1+ebits+mbits wide code c.
func (m minifloat) decode(c uint32) uint32 {
	sign := c >> (m.ebits + m.mbits) & 1
	exp := int(c>>m.mbits) & (1<<m.ebits - 1)
	mant := c & (1<<m.mbits - 1)
	maxExp := 1<<m.ebits - 1
	var v float64
	switch {
	case m.ieee && exp == maxExp && mant == 0:
		v = math.Inf(1)
	case m.ieee && exp == maxExp:
		v = math.NaN()
	case !m.ieee && exp == maxExp && mant == 1<<m.mbits-1:
		v = math.NaN()
	case exp == 0:
		v = math.Ldexp(float64(mant), 1-m.bias()-m.mbits)
	default:
		v = math.Ldexp(float64(mant|1<<m.mbits), exp-m.bias()-m.mbits)
	}
	if math.IsNaN(v) {
		return sign<<31 | 0x7fc00000
	}
	b := math.Float32bits(float32(v))
	return sign<<31 | b
}

// encode rounds v to nearest even. Overflow: ±Inf for IEEE formats, NaN for fn.
func (m minifloat) encode(v float32) uint8 {
	signBit := uint8(0)
	if math.Signbit(float64(v)) {
		signBit = 1 << (m.ebits + m.mbits)
	}
	nan := uint8(1<<(m.ebits+m.mbits) - 1) // all ones below the sign
	maxExp := 1<<m.ebits - 1
	if v != v {
		if m.ieee {
			return signBit | uint8(maxExp)<<m.mbits | 1<<(m.mbits-1)
		}
		return signBit | nan
	}
	a := math.Abs(float64(v))
	// largest finite magnitude and its code
	var maxCode uint8
	if m.ieee {
		maxCode = uint8(maxExp-1)<<m.mbits | uint8(1<<m.mbits-1)
	} else {
		maxCode = nan - 1
	}
	if math.IsInf(a, 0) {
		if m.ieee {
			return signBit | uint8(maxExp)<<m.mbits
		}
		return signBit | nan
	}
	// Quantum at a's binade (subnormal quantum below the normal range).
	minNormExp := 1 - m.bias()
	_, e := math.Frexp(a) // a = f·2^e, f in [0.5,1)
	e--                   // a in [2^e, 2^(e+1))
	if e < minNormExp {
		e = minNormExp
	}
	q := math.Ldexp(1, e-m.mbits)
	r := math.RoundToEven(a/q) * q // exact: a/q and the product are exact in float64
	maxVal := math.Float32frombits(m.decode(uint32(maxCode)))
	if r > float64(maxVal) {
		if m.ieee {
			return signBit | uint8(maxExp)<<m.mbits
		}
		return signBit | nan
	}
	if r == 0 {
		return signBit
	}
	// encode r exactly
	_, re := math.Frexp(r)
	re--
	if re < minNormExp {
		return signBit | uint8(r/math.Ldexp(1, minNormExp-m.mbits))
	}
	mant := uint8(r/math.Ldexp(1, re-m.mbits)) & (1<<m.mbits - 1)
	return signBit | uint8(re+m.bias())<<m.mbits | mant
}

var (
	e4m3 = minifloat{ebits: 4, mbits: 3}
	e5m2 = minifloat{ebits: 5, mbits: 2, ieee: true}
)

type f8Tab struct{ e4m3, e5m2 [256]uint32 }

var f8Tables = sync.OnceValue(func() *f8Tab {
	var t f8Tab
	for i := range 256 {
		t.e4m3[i] = e4m3.decode(uint32(i))
		t.e5m2[i] = e5m2.decode(uint32(i))
	}
	return &t
})

// F32ToF8E4M3 narrows to float8_e4m3fn (round to nearest even; out of range, Inf and NaN → NaN).
func F32ToF8E4M3(v float32) uint8 { return e4m3.encode(v) }

// F32ToF8E5M2 narrows to float8_e5m2 (round to nearest even; overflow → ±Inf).
func F32ToF8E5M2(v float32) uint8 { return e5m2.encode(v) }
