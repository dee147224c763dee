// sparsify: 2:4 sparse GEMM on NVIDIA sparse tensor cores, reading the CUTLASS
// layout written by pack.PackCutlass directly (spec nvidia-24-layout §7.3, §7.4).
//
//   Y[T, N] = X[T, K] · W[N, K]^T, computed as Y^T = W · X^T with W the sparse
//   A operand of mma.sp.m16n8k32 (row.col), FP32 accumulation.
//
// Buffers (all little-endian, read as 32-bit words):
//   P  packed kept values [N][K/2] halves  = [N][K/4] words (word q of a row =
//      the kept pair of group q, low half = lower position: one A register)
//   E  reordered meta, N*K/16 int16        = N*K/32 words; word j*N + 32*B + lane
//      is lane's e register for rows [32B, 32B+32), dense k [32j, 32j+32)
//   X  activations [T][K] halves          = [T][K/2] words
//   Y  output [T][N] float32
//
// THIS FILE MIRRORS kernel/cuda/mmasp_emu.go LINE BY LINE (emuWarp): any change
// here must be made there too, and the Go test of the emulation rerun.
//
// One warp computes a 32-row (of W) x 32-token tile: two 16-row halves s = 0, 1
// (sparsity selector f = s: one e register serves both, spec §7.4) times four
// 8-token n-tiles. A block is 4 warps on 4 consecutive 32-row blocks.

#ifndef SPARSIFY_SP_OP
#define SPARSIFY_SP_OP "mma.sp"
#endif

#define WARPS_PER_BLOCK 4
#define NTILES 4

#define MMA_SP(TY, SEL, d, a, b, e)                                                         \
  asm volatile(SPARSIFY_SP_OP ".sync.aligned.m16n8k32.row.col.f32." TY "." TY ".f32 "     \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, " SEL ";\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                              \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]),                                \
                 "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e))

template <int IS_BF16>
__device__ __forceinline__ void spmm_tile(const unsigned int* __restrict__ P,
                                          const unsigned int* __restrict__ E,
                                          const unsigned int* __restrict__ X,
                                          float* __restrict__ Y, int N, int K, int T) {
  const int lane = threadIdx.x & 31;
  const int rb = blockIdx.x * WARPS_PER_BLOCK + (threadIdx.x >> 5);  // 32-row block of W
  const int tb = blockIdx.y;                                          // 32-token block
  if (rb * 32 >= N) return;  // whole warp leaves together
  const int g = lane >> 2, t = lane & 3;
  const int pw = K / 4;  // P words per row
  const int xw = K / 2;  // X words per token
  float acc[2][NTILES][4];
#pragma unroll
  for (int s = 0; s < 2; s++)
#pragma unroll
    for (int nt = 0; nt < NTILES; nt++)
      for (int i = 0; i < 4; i++) acc[s][nt][i] = 0.0f;

  for (int j = 0; j < K / 32; j++) {
    // e register of this lane: reordered meta word j*N + 32*rb + lane (§7.4).
    const unsigned int e = E[(long long)j * N + 32 * rb + lane];
    // B fragments: b[r] = X[tok][32j + 8r + 2t .. +1] (k = 2t + (i&1) + 8(i>>1), n = g).
    unsigned int b[NTILES][4];
#pragma unroll
    for (int nt = 0; nt < NTILES; nt++) {
      const int tok = tb * 32 + nt * 8 + g;
#pragma unroll
      for (int r = 0; r < 4; r++)
        b[nt][r] = tok < T ? X[(long long)tok * xw + 16 * j + 4 * r + t] : 0u;
    }
#pragma unroll
    for (int s = 0; s < 2; s++) {
      // A fragment of rows r0 = 32rb + 16s + g and r0 + 8: P32[r][8j + t], P32[r][8j + 4 + t].
      const int r0 = 32 * rb + 16 * s + g;
      unsigned int a[4];
      a[0] = P[(long long)r0 * pw + 8 * j + t];
      a[1] = P[(long long)(r0 + 8) * pw + 8 * j + t];
      a[2] = P[(long long)r0 * pw + 8 * j + 4 + t];
      a[3] = P[(long long)(r0 + 8) * pw + 8 * j + 4 + t];
#pragma unroll
      for (int nt = 0; nt < NTILES; nt++) {
        if (IS_BF16) {
          if (s == 0) MMA_SP("bf16", "0x0", acc[0][nt], a, b[nt], e);
          else        MMA_SP("bf16", "0x1", acc[1][nt], a, b[nt], e);
        } else {
          if (s == 0) MMA_SP("f16", "0x0", acc[0][nt], a, b[nt], e);
          else        MMA_SP("f16", "0x1", acc[1][nt], a, b[nt], e);
        }
      }
    }
  }
  // D fragment: c0,c1 = row g, cols (tokens) 2t, 2t+1; c2,c3 = row g+8.
#pragma unroll
  for (int s = 0; s < 2; s++) {
    const int row = 32 * rb + 16 * s + g;
#pragma unroll
    for (int nt = 0; nt < NTILES; nt++) {
      const int tok = tb * 32 + nt * 8 + 2 * t;
      if (tok < T) {
        Y[(long long)tok * N + row] = acc[s][nt][0];
        Y[(long long)tok * N + row + 8] = acc[s][nt][2];
      }
      if (tok + 1 < T) {
        Y[(long long)(tok + 1) * N + row] = acc[s][nt][1];
        Y[(long long)(tok + 1) * N + row + 8] = acc[s][nt][3];
      }
    }
  }
}

extern "C" __global__ void __launch_bounds__(32 * WARPS_PER_BLOCK)
spmm_bf16(const unsigned int* P, const unsigned int* E, const unsigned int* X, float* Y, int N, int K, int T) {
  spmm_tile<1>(P, E, X, Y, N, K, T);
}

extern "C" __global__ void __launch_bounds__(32 * WARPS_PER_BLOCK)
spmm_f16(const unsigned int* P, const unsigned int* E, const unsigned int* X, float* Y, int N, int K, int T) {
  spmm_tile<0>(P, E, X, Y, N, K, T);
}
