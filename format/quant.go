package format

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Dequantize expands GGML blocks of type dt from raw into dst (len(dst) elements,
// a multiple of the block size), exactly as llama.cpp's dequantize_row_* do
// (ggml/src/ggml-quants.c; block layouts from ggml-common.h).
//
// Supported: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K.
// Q8_1 (which llama.cpp only produces as a dot-product operand) expands as
// d·q, ignoring its stored sum. Every product and sum is rounded to float32
// separately, in the order the C code evaluates it (no fused multiply-add), so
// results are bit-identical to the reference built without FP contraction.
// len(raw) must be exactly the stored size of len(dst) elements.
// Dequantize is safe for concurrent use.
func Dequantize(dt DType, raw []byte, dst []float32) error {
	t, ok := dt.Trait()
	if !ok || !t.Quantized {
		return fmt.Errorf("%w: dequantizing %v (not a GGML block type)", ErrUnsupported, dt)
	}
	n := int64(len(dst))
	if n%t.BlockSize != 0 {
		return fmt.Errorf("%w: %d elements of %v is not a whole number of %d-element blocks", ErrFormat, n, dt, t.BlockSize)
	}
	nb := int(n / t.BlockSize)
	if int64(len(raw)) != int64(nb)*t.TypeSize {
		return fmt.Errorf("%w: %d elements of %v take %d bytes, got %d", ErrFormat, n, dt, int64(nb)*t.TypeSize, len(raw))
	}
	ts, bs := int(t.TypeSize), int(t.BlockSize)
	for i := range nb {
		b := raw[i*ts : (i+1)*ts]
		y := dst[i*bs : (i+1)*bs]
		switch dt {
		case Q4_0:
			dqQ4_0((*[18]byte)(b), (*[32]float32)(y))
		case Q4_1:
			dqQ4_1((*[20]byte)(b), (*[32]float32)(y))
		case Q5_0:
			dqQ5_0((*[22]byte)(b), (*[32]float32)(y))
		case Q5_1:
			dqQ5_1((*[24]byte)(b), (*[32]float32)(y))
		case Q8_0:
			dqQ8_0((*[34]byte)(b), (*[32]float32)(y))
		case Q8_1:
			dqQ8_1((*[36]byte)(b), (*[32]float32)(y))
		case Q2_K:
			dqQ2K((*[84]byte)(b), (*[256]float32)(y))
		case Q3_K:
			dqQ3K((*[110]byte)(b), (*[256]float32)(y))
		case Q4_K:
			dqQ4K((*[144]byte)(b), (*[256]float32)(y))
		case Q5_K:
			dqQ5K((*[176]byte)(b), (*[256]float32)(y))
		case Q6_K:
			dqQ6K((*[210]byte)(b), (*[256]float32)(y))
		case Q8_K:
			dqQ8K((*[292]byte)(b), (*[256]float32)(y))
		default:
			return fmt.Errorf("%w: dequantizing %v", ErrUnsupported, dt)
		}
	}
	return nil
}

// dqHalf reads a little-endian IEEE half at b[0:2] as float32 (GGML_FP16_TO_FP32).
func dqHalf(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }

// block_q4_0: d f16 | qs[16]; x = (nibble - 8)·d, low nibbles first.
func dqQ4_0(b *[18]byte, y *[32]float32) {
	d := dqHalf(b[0:])
	qs := b[2:18]
	for j, q := range qs {
		y[j] = float32(int32(q&0xF)-8) * d
		y[j+16] = float32(int32(q>>4)-8) * d
	}
}

// block_q4_1: d f16 | m f16 | qs[16]; x = nibble·d + m.
func dqQ4_1(b *[20]byte, y *[32]float32) {
	d, m := dqHalf(b[0:]), dqHalf(b[2:])
	qs := b[4:20]
	for j, q := range qs {
		y[j] = float32(float32(q&0xF)*d) + m
		y[j+16] = float32(float32(q>>4)*d) + m
	}
}

// block_q5_0: d f16 | qh[4] (u32 LE: bit j = 5th bit of element j) | qs[16];
// x = (5-bit value - 16)·d.
func dqQ5_0(b *[22]byte, y *[32]float32) {
	d := dqHalf(b[0:])
	qh := binary.LittleEndian.Uint32(b[2:])
	qs := b[6:22]
	for j, q := range qs {
		h0 := byte(qh>>j<<4) & 0x10
		h1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(int32(q&0xF|h0)-16) * d
		y[j+16] = float32(int32(q>>4|h1)-16) * d
	}
}

// block_q5_1: d f16 | m f16 | qh[4] | qs[16]; x = 5-bit value·d + m.
func dqQ5_1(b *[24]byte, y *[32]float32) {
	d, m := dqHalf(b[0:]), dqHalf(b[2:])
	qh := binary.LittleEndian.Uint32(b[4:])
	qs := b[8:24]
	for j, q := range qs {
		h0 := byte(qh>>j<<4) & 0x10
		h1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(float32(q&0xF|h0)*d) + m
		y[j+16] = float32(float32(q>>4|h1)*d) + m
	}
}

// block_q8_0: d f16 | qs[32] int8; x = q·d.
func dqQ8_0(b *[34]byte, y *[32]float32) {
	d := dqHalf(b[0:])
	for j, q := range b[2:34] {
		y[j] = float32(int8(q)) * d
	}
}

// block_q8_1: d f16 | s f16 | qs[32] int8; x = q·d.
func dqQ8_1(b *[36]byte, y *[32]float32) {
	d := dqHalf(b[0:])
	for j, q := range b[4:36] {
		y[j] = float32(int8(q)) * d
	}
}

// block_q2_K: scales[16] (low nibble scale, high nibble min) | qs[64] | d f16 | dmin f16.
// Each 128-element half uses 32 bytes of qs, four 2-bit planes (shift 0,2,4,6),
// each plane two 16-element groups with their own scale byte.
func dqQ2K(b *[84]byte, y *[256]float32) {
	sc := b[0:16]
	d, dmin := dqHalf(b[80:]), dqHalf(b[82:])
	k, is := 0, 0
	for n := 0; n < 2; n++ {
		q := b[16+32*n : 16+32*n+32]
		for shift := uint(0); shift < 8; shift += 2 {
			for h := 0; h < 2; h++ {
				s := sc[is]
				is++
				dl := d * float32(s&0xF)
				ml := dmin * float32(s>>4)
				for l := 0; l < 16; l++ {
					y[k] = float32(dl*float32((q[16*h+l]>>shift)&3)) - ml
					k++
				}
			}
		}
	}
}

// block_q3_K: hmask[32] | qs[64] | scales[12] (sixteen 6-bit scales) | d f16.
// x = d·(scale-32)·(2-bit value - (high bit clear ? 4 : 0)).
func dqQ3K(b *[110]byte, y *[256]float32) {
	const kmask1, kmask2 = 0x03030303, 0x0f0f0f0f
	hm := b[0:32]
	d := dqHalf(b[108:])
	var aux [4]uint32
	aux[0] = binary.LittleEndian.Uint32(b[96:])
	aux[1] = binary.LittleEndian.Uint32(b[100:])
	tmp := binary.LittleEndian.Uint32(b[104:])
	aux[2] = (aux[0]>>4)&kmask2 | ((tmp>>4)&kmask1)<<4
	aux[3] = (aux[1]>>4)&kmask2 | ((tmp>>6)&kmask1)<<4
	aux[0] = aux[0]&kmask2 | ((tmp>>0)&kmask1)<<4
	aux[1] = aux[1]&kmask2 | ((tmp>>2)&kmask1)<<4
	var scales [16]int8
	for i, a := range aux {
		scales[4*i] = int8(a)
		scales[4*i+1] = int8(a >> 8)
		scales[4*i+2] = int8(a >> 16)
		scales[4*i+3] = int8(a >> 24)
	}
	k, is := 0, 0
	m := byte(1)
	for n := 0; n < 2; n++ {
		q := b[32+32*n : 32+32*n+32]
		for shift := uint(0); shift < 8; shift += 2 {
			for h := 0; h < 2; h++ {
				dl := d * float32(int32(scales[is])-32)
				is++
				for l := 0; l < 16; l++ {
					v := int32((q[16*h+l] >> shift) & 3)
					if hm[16*h+l]&m == 0 {
						v -= 4
					}
					y[k] = dl * float32(v)
					k++
				}
			}
			m <<= 1
		}
	}
}

// dqScaleMinK4 is get_scale_min_k4: eight 6-bit scales and mins packed in 12 bytes.
func dqScaleMinK4(j int, q []byte) (sc, m byte) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xF | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// block_q4_K: d f16 | dmin f16 | scales[12] | qs[128]; 8 sub-blocks of 32,
// x = d·sc·nibble - dmin·m; each 32 bytes of qs hold two sub-blocks (low, high nibbles).
func dqQ4K(b *[144]byte, y *[256]float32) {
	d, dmin := dqHalf(b[0:]), dqHalf(b[2:])
	scales := b[4:16]
	for j := 0; j < 4; j++ {
		q := b[16+32*j : 16+32*j+32]
		sc, m := dqScaleMinK4(2*j, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = dqScaleMinK4(2*j+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		out := y[64*j : 64*j+64]
		for l := 0; l < 32; l++ {
			out[l] = float32(d1*float32(q[l]&0xF)) - m1
			out[l+32] = float32(d2*float32(q[l]>>4)) - m2
		}
	}
}

// block_q5_K: d f16 | dmin f16 | scales[12] | qh[32] | qs[128]; like Q4_K with a
// fifth bit from qh (bit 2j for the low nibbles of group j, 2j+1 for the high).
func dqQ5K(b *[176]byte, y *[256]float32) {
	d, dmin := dqHalf(b[0:]), dqHalf(b[2:])
	scales := b[4:16]
	qh := b[16:48]
	for j := 0; j < 4; j++ {
		ql := b[48+32*j : 48+32*j+32]
		sc, m := dqScaleMinK4(2*j, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = dqScaleMinK4(2*j+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		// Bit 2j of qh[l] is the fifth bit of the low nibble, bit 2j+1 of the high.
		s1, s2 := uint(2*j), uint(2*j+1)
		out := y[64*j : 64*j+64]
		for l := 0; l < 32; l++ {
			h := qh[l]
			v1 := ql[l]&0xF | (h>>s1&1)<<4
			v2 := ql[l]>>4 | (h>>s2&1)<<4
			out[l] = float32(d1*float32(v1)) - m1
			out[l+32] = float32(d2*float32(v2)) - m2
		}
	}
}

// block_q6_K: ql[128] | qh[64] | scales[16] int8 | d f16; x = d·scale·(6-bit value - 32).
func dqQ6K(b *[210]byte, y *[256]float32) {
	d := dqHalf(b[208:])
	sc := b[192:208]
	for n := 0; n < 2; n++ {
		ql := b[64*n : 64*n+64]
		qh := b[128+32*n : 128+32*n+32]
		s := sc[8*n : 8*n+8]
		out := y[128*n : 128*n+128]
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int32(ql[l]&0xF|((qh[l]>>0)&3)<<4) - 32
			q2 := int32(ql[l+32]&0xF|((qh[l]>>2)&3)<<4) - 32
			q3 := int32(ql[l]>>4|((qh[l]>>4)&3)<<4) - 32
			q4 := int32(ql[l+32]>>4|((qh[l]>>6)&3)<<4) - 32
			out[l] = float32(d*float32(int8(s[is]))) * float32(q1)
			out[l+32] = float32(d*float32(int8(s[is+2]))) * float32(q2)
			out[l+64] = float32(d*float32(int8(s[is+4]))) * float32(q3)
			out[l+96] = float32(d*float32(int8(s[is+6]))) * float32(q4)
		}
	}
}

// block_q8_K: d f32 | qs[256] int8 | bsums[16] int16; x = d·q.
func dqQ8K(b *[292]byte, y *[256]float32) {
	d := math.Float32frombits(binary.LittleEndian.Uint32(b[0:]))
	for j, q := range b[4:260] {
		y[j] = d * float32(int8(q))
	}
}
