// The kernels' large GEMMs (the input projection over all steps, dx and the weight gradients after the backward
// time loop) on the 48 x 8 register tile of tile_product.hpp, with cache blocking:
//   for each block of kRowBlock output rows, for each slice of kDepth of K:
//     pack A's rows of the block (broadcast-side panels, 8 rows each), then for each block of kColBlock columns:
//       pack op(B)'s slice (vector-side panels, 48 columns each, kept in L2) and run every tile: one broadcast panel
//       (in L1) against every vector-side panel (streamed from L2).
// Measured here (1 thread, GFLOP/s, Eigen's GEMM -> this): x·W_ih^T 1600x2048x512 168 -> 206, dx 1600x512x2048
// 187 -> 197, dW 2048x512 over K=1600 145 -> 173, 1024x256 over K=9600 114 -> 177 (bench/README.md has the rest).
// Blocking sizes: tried K slices of 128-512 and column blocks of 240-960; 384 / 480 were best or within noise.
#pragma once

#include <algorithm>

#include "parallel.hpp"
#include "tile_product.hpp"
#include "rnncore/memory.hpp"
#include "rnncore/types.hpp"

namespace rnncore::detail {

/// One operand of a GEMM as it is stored (row-major, rows `stride` apart): the logical matrix, or its transpose.
template <typename T>
struct GemmOperand {
  const T* data;
  index_t stride;
  bool transposed;
};

template <typename T>
struct TileGemmBlocking {
  index_t depth = 384;       // K per slice: a broadcast panel of 8 x depth (12 KB) stays in L1
  index_t col_block = 480;   // columns packed per slice (a multiple of 48): col_block x depth (720 KB) kept in L2
  index_t row_block = 1536;  // rows packed per slice (bounds the packing buffer)
};

/// The size of the blocks that cut `n` into equal pieces of whole `unit`s, each at most `most` (or one unit).
inline index_t balanced(index_t n, index_t most, index_t unit) {
  const index_t units = (n + unit - 1) / unit, most_units = std::max<index_t>(1, most / unit);
  const index_t blocks = (units + most_units - 1) / most_units;
  return (units + blocks - 1) / blocks * unit;
}

/// out [M, N] (row-major, stride ldo) = base + A [M, K] · B [K, N], on the calling thread, for rows [m0, m1).
/// a: A [M, K] (transposed: stored as [K, M]); b: B [K, N] (transposed: stored as [N, K]).
/// base: [M, N] with stride ldbase, or one row [N] when ldbase = 0 (a bias), or the output itself (base == out and
/// ldbase == ldo: accumulate), or null (out = A · B). Any other overlap of base and out is not allowed (a bias row
/// inside out would be overwritten by the first tile that writes it).
template <typename T>
void tile_gemm_rows(index_t m0, index_t m1, index_t N, index_t K, GemmOperand<T> a, GemmOperand<T> b, T* out,
                    index_t ldo, const T* base, index_t ldbase, const TileGemmBlocking<T>& blocking = {}) {
  using Tl = Tile<T>;
  constexpr index_t R = Tl::kRows, C = Tl::kCols;
  if (m1 <= m0 || N <= 0) return;
  if (K <= 0) {  // nothing to multiply: out = base
    for (index_t i = m0; i < m1; ++i)
      for (index_t j = 0; j < N; ++j) out[i * ldo + j] = base ? base[(ldbase ? i * ldbase : 0) + j] : T(0);
    return;
  }
  // Blocks of equal size (in whole panels), none larger than asked: N = 512 in blocks of at most 480 columns is
  // two blocks of 288 and 240, not 480 and 32.
  const index_t depth = balanced(K, blocking.depth, 1), col_block = balanced(N, blocking.col_block, C),
                row_block = balanced(m1 - m0, blocking.row_block, R);
  Buffer<T> a_pack(row_block * depth), b_pack(col_block * depth);
  for (index_t r0 = m0; r0 < m1; r0 += row_block) {
    const index_t r1 = std::min(m1, r0 + row_block), row_panels = (r1 - r0 + R - 1) / R;
    for (index_t k0 = 0; k0 < K; k0 += depth) {
      const index_t kd = std::min(depth, K - k0);
      Tl::pack_broadcast_panels(a.data, a.stride, a.transposed, r0, r1, k0, kd, a_pack.data());
      for (index_t c0 = 0; c0 < N; c0 += col_block) {
        const index_t c1 = std::min(N, c0 + col_block), col_panels = (c1 - c0 + C - 1) / C;
        for (index_t p = 0; p < col_panels; ++p)
          Tl::pack_vector_panel(b.data, b.stride, b.transposed, c0 + p * C, std::min(C, c1 - c0 - p * C), k0, kd,
                                b_pack.data() + p * kd * C);
        for (index_t q = 0; q < row_panels; ++q) {
          const index_t i = r0 + q * R, rows = std::min(R, r1 - i);
          for (index_t p = 0; p < col_panels; ++p) {
            const index_t j = c0 + p * C, cols = std::min(C, c1 - j);
            T* o = out + i * ldo + j;
            const T* start = k0 > 0 ? o : (base ? base + (ldbase ? i * ldbase : 0) + j : nullptr);
            Tl::multiply(b_pack.data() + p * kd * C, a_pack.data() + q * kd * R, kd, o, ldo, rows, cols, start,
                         k0 > 0 ? ldo : ldbase);
          }
        }
      }
    }
  }
}

/// out [M, N] = base + A [M, K] · B [K, N] (see tile_gemm_rows), rows split across the call's threads.
template <typename T>
void tile_gemm(index_t M, index_t N, index_t K, GemmOperand<T> a, GemmOperand<T> b, T* out, index_t ldo,
               const T* base, index_t ldbase, const TileGemmBlocking<T>& blocking = {}) {
  const int parts = threads_for(2.0 * M * N * K, (M + 7) / 8, 4e6);
  parallel_chunks(M, parts, Tile<T>::kRows, [&](int, index_t m0, index_t m1) {
    tile_gemm_rows(m0, m1, N, K, a, b, out, ldo, base, ldbase, blocking);
  });
}

}  // namespace rnncore::detail
