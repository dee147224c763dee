package cuda

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/sparsify/sparsify/format"
)

// This file is a CPU emulation of kernels/mmasp.cu: emuWarp follows the CUDA
// source statement by statement (same index formulas, same buffers read as
// little-endian 32-bit words), and mmaSp models what the PTX instruction
// mma.sp.sync.aligned.m16n8k32.row.col.f32.{bf16,f16}.{bf16,f16}.f32 computes
// from the 32 lanes' registers (PTX ISA "Matrix fragments for mma.sp
// .m16n8k32", spec nvidia-24-layout §7.1–7.3). Tested against a dense GEMM on
// matrices packed by pack.PackCutlass, it checks the fragment/metadata mapping
// without a GPU. What it cannot check is that the hardware agrees with the
// PTX text (and the spec's [M] B-fragment formula): that is gpu-check.sh's job.

// Warp-tile constants, equal to the #defines of mmasp.cu.
const (
	emuWarpsPerBlock = 4
	emuNTiles        = 4
	// TileRows and TileTokens are the W rows and tokens one warp computes.
	TileRows   = 32
	TileTokens = 8 * emuNTiles
)

// Fragments are the per-lane registers of one mma.sp m16n8k32 call.
type Fragments struct {
	A [32][4]uint32  // packed A (two halves per register)
	B [32][4]uint32  // B (two halves per register)
	C [32][4]float32 // accumulator in / D out
	E [32]uint32     // metadata register
}

// half decodes one 16-bit value of the GEMM input type.
func half(bf16 bool, h uint32) float64 {
	if bf16 {
		return float64(math.Float32frombits(h << 16))
	}
	return float64(format.F16ToF32(uint16(h)))
}

// MmaSp computes D = A_dense·B + C for one m16n8k32 sparse MMA as PTX
// defines it, with sparsity selector f (0 or 1), in place in fr.C. Products
// are summed exactly (float64) and rounded to float32 once: the hardware's
// internal order and rounding are not modelled (GEMM checks use a tolerance).
//
// A_dense row i (0..15), 4-wide chunk c (0..7, dense k [4c, 4c+4)):
//   - values: lane 4*(i%8) + c%4, register (i/8) + 2*(c/4); low half = the
//     kept element at idx0, high half = at idx1 (§7.3);
//   - metadata: lane 4*(i%8) + 2f + c/4 (the thread pair of §7.2), bits
//     [15:0] for rows 0..7 and [31:16] for rows 8..15, nibble c%4:
//     idx0 = nib&3, idx1 = nib>>2 (§1.1).
//
// B[k][n] (k 0..31, n 0..7): lane 4n + (k%8)/2, register k/8, half k%2.
// D[i][n]: lane 4*(i%8) + n/2, register 2*(i/8) + n%2.
func MmaSp(fr *Fragments, f int, bf16 bool) error {
	if f != 0 && f != 1 {
		return fmt.Errorf("mma.sp m16n8k32: sparsity selector %d not in {0, 1}", f)
	}
	var a [16][32]float64 // A_dense
	for i := 0; i < 16; i++ {
		for c := 0; c < 8; c++ {
			vl := 4*(i%8) + c%4
			reg := fr.A[vl][i/8+2*(c/4)]
			ml := 4*(i%8) + 2*f + c/4
			m16 := fr.E[ml] >> (16 * (i / 8)) & 0xFFFF
			nib := m16 >> (4 * (c % 4)) & 0xF
			i0, i1 := int(nib&3), int(nib>>2)
			if i0 == i1 {
				return fmt.Errorf("mma.sp m16n8k32: lane %d row %d chunk %d: invalid metadata nibble 0x%X (equal indices)", ml, i, c, nib)
			}
			a[i][4*c+i0] += half(bf16, reg&0xFFFF)
			a[i][4*c+i1] += half(bf16, reg>>16)
		}
	}
	var b [32][8]float64
	for k := 0; k < 32; k++ {
		for n := 0; n < 8; n++ {
			reg := fr.B[4*n+(k%8)/2][k/8]
			b[k][n] = half(bf16, reg>>(16*(k%2))&0xFFFF)
		}
	}
	for i := 0; i < 16; i++ {
		for n := 0; n < 8; n++ {
			lane, r := 4*(i%8)+n/2, 2*(i/8)+n%2
			s := float64(fr.C[lane][r])
			for k := 0; k < 32; k++ {
				s += a[i][k] * b[k][n]
			}
			fr.C[lane][r] = float32(s)
		}
	}
	return nil
}

// u32 reads little-endian word i of buf (0 past the end, as a guard).
func u32(buf []byte, i int) uint32 {
	if 4*i+4 > len(buf) {
		return 0
	}
	return binary.LittleEndian.Uint32(buf[4*i:])
}

// EmuSpMM runs the mma.sp kernel of kernels/mmasp.cu on the CPU: y[T][N] =
// x[T][K] · Wᵀ with W given as pack.PackCutlass output (values: [N][K/2]
// halves; meta: reordered I16) and x as [T][K] halves, both raw little-endian
// bytes. It launches the same grid the GPU path launches and runs every warp
// through emuWarp.
func EmuSpMM(y []float32, values, meta, x []byte, n, k, t int, bf16 bool) error {
	if err := spmmShapeOK(n, k, t); err != nil {
		return err
	}
	if len(values) != n*k || len(meta) != n*k/8 || len(x) != 2*t*k || len(y) != t*n {
		return fmt.Errorf("cuda: EmuSpMM: sizes: values %d (want %d), meta %d (want %d), x %d (want %d), y %d (want %d)",
			len(values), n*k, len(meta), n*k/8, len(x), 2*t*k, len(y), t*n)
	}
	grid := spmmGrid(n, t)
	for bx := 0; bx < grid.X; bx++ {
		for by := 0; by < grid.Y; by++ {
			for w := 0; w < emuWarpsPerBlock; w++ {
				if err := emuWarp(values, meta, x, y, n, k, t, bx, by, w, bf16); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// spmmShapeOK states the kernel's shape rules: N a multiple of 32 and K of
// 64 (what pack.CutlassShapeOK admits for F16/BF16), T >= 1.
func spmmShapeOK(n, k, t int) error {
	if n <= 0 || n%32 != 0 || k <= 0 || k%64 != 0 || t <= 0 {
		return fmt.Errorf("cuda: sparse GEMM needs N (rows of W) a multiple of 32, K a multiple of 64, T >= 1; got N=%d K=%d T=%d", n, k, t)
	}
	return nil
}

// spmmGrid is the launch grid of spmm_*: x over groups of 4 32-row blocks,
// y over 32-token blocks; 128 threads per block.
func spmmGrid(n, t int) Dim3 {
	rbs := n / 32
	return Dim3{X: (rbs + emuWarpsPerBlock - 1) / emuWarpsPerBlock, Y: (t + TileTokens - 1) / TileTokens, Z: 1}
}

// emuWarp is spmm_tile of mmasp.cu for warp w of block (bx, by), all 32
// lanes in lock step. Variable names follow the CUDA source.
func emuWarp(P, E, X []byte, Y []float32, N, K, T, bx, by, w int, bf16 bool) error {
	rb := bx*emuWarpsPerBlock + w // 32-row block of W
	tb := by                      // 32-token block
	if rb*32 >= N {
		return nil // whole warp leaves together
	}
	pw := K / 4 // P words per row
	xw := K / 2 // X words per token
	var acc [2][emuNTiles]Fragments

	for j := 0; j < K/32; j++ {
		var e [32]uint32
		var b [emuNTiles][32][4]uint32
		for lane := 0; lane < 32; lane++ {
			g, t := lane>>2, lane&3
			// e register of this lane: reordered meta word j*N + 32*rb + lane (§7.4).
			e[lane] = u32(E, j*N+32*rb+lane)
			// B fragments: b[r] = X[tok][32j + 8r + 2t .. +1].
			for nt := 0; nt < emuNTiles; nt++ {
				tok := tb*32 + nt*8 + g
				for r := 0; r < 4; r++ {
					if tok < T {
						b[nt][lane][r] = u32(X, tok*xw+16*j+4*r+t)
					}
				}
			}
		}
		for s := 0; s < 2; s++ {
			var a [32][4]uint32
			for lane := 0; lane < 32; lane++ {
				g, t := lane>>2, lane&3
				// A fragment of rows r0 = 32rb + 16s + g and r0 + 8.
				r0 := 32*rb + 16*s + g
				a[lane][0] = u32(P, r0*pw+8*j+t)
				a[lane][1] = u32(P, (r0+8)*pw+8*j+t)
				a[lane][2] = u32(P, r0*pw+8*j+4+t)
				a[lane][3] = u32(P, (r0+8)*pw+8*j+4+t)
			}
			for nt := 0; nt < emuNTiles; nt++ {
				fr := &acc[s][nt]
				fr.A, fr.B, fr.E = a, b[nt], e
				if err := MmaSp(fr, s, bf16); err != nil { // selector f = s
					return fmt.Errorf("cuda: emulated warp (rows %d.., k-step %d): %w", 32*rb+16*s, j, err)
				}
			}
		}
	}
	// D fragment: c0,c1 = row g, tokens 2t, 2t+1; c2,c3 = row g+8.
	for lane := 0; lane < 32; lane++ {
		g, t := lane>>2, lane&3
		for s := 0; s < 2; s++ {
			row := 32*rb + 16*s + g
			for nt := 0; nt < emuNTiles; nt++ {
				c := acc[s][nt].C[lane]
				tok := tb*32 + nt*8 + 2*t
				if tok < T {
					Y[tok*N+row] = c[0]
					Y[tok*N+row+8] = c[2]
				}
				if tok+1 < T {
					Y[(tok+1)*N+row] = c[1]
					Y[(tok+1)*N+row+8] = c[3]
				}
			}
		}
	}
	return nil
}
