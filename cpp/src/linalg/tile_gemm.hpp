// The kernels' large GEMMs (the input projection over all steps, dx and the weight gradients after the backward
// time loop) on the 48 x 8 register tile of tile_product.hpp, with cache blocking (TileGemmBlocking):
//   for each block of row_block rows of A, for each slice of `depth` of K:
//     pack A's rows of the block (broadcast-side panels, 8 rows each), then for each product sharing A (GemmTarget)
//     and each block of col_block of its columns:
//       pack op(B)'s slice (vector-side panels, 48 columns each, kept in L2) and run every tile: one broadcast panel
//       (in L1) against every vector-side panel (streamed from L2).
// 1.05-1.55x Eigen's GEMM on the kernels' shapes; the blocking sizes are tuning.hpp's (bench/README.md has both).
#pragma once

#include <algorithm>

#include "parallel.hpp"
#include "linalg/tile_product.hpp"
#include "rnncore/memory.hpp"
#include "rnncore/types.hpp"
#include "tuning.hpp"

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
  index_t depth = tuning::kGemmDepth;          // K per slice: a broadcast panel of 8 x depth (12 KB) stays in L1
  index_t col_block = tuning::kGemmColBlock;   // columns per slice (a multiple of 48): col_block x depth kept in L2
  index_t row_block = tuning::kGemmRowBlock;   // rows packed per slice (bounds the packing buffer)
};

/// The size of the blocks that cut `n` into equal pieces of whole `unit`s, each at most `most` (or one unit).
inline index_t balanced(index_t n, index_t most, index_t unit) {
  const index_t units = (n + unit - 1) / unit, most_units = std::max<index_t>(1, most / unit);
  const index_t blocks = (units + most_units - 1) / most_units;
  return (units + blocks - 1) / blocks * unit;
}

/// One product of a GEMM that shares its left operand: out [rows, n] (row-major, stride ldo) = base + A[:rows] · B,
/// B [K, n] given by b (transposed: stored as [n, K]); rows <= M (a product may use only A's first rows).
/// base: [rows, n] with stride ldbase, or one row [n] when ldbase = 0 (a bias), or the output itself (base == out and
/// ldbase == ldo: accumulate), or null (out = A · B). Any other overlap of base and out is not allowed (a bias row
/// inside out would be overwritten by the first tile that writes it).
template <typename T>
struct GemmTarget {
  GemmOperand<T> b;
  index_t n;
  T* out;
  index_t ldo;
  index_t rows;
  const T* base = nullptr;
  index_t ldbase = 0;
};

/// Every target's product for A's rows [m0, m1), on the calling thread; A [M, K] is packed once per block for all
/// targets (transposed: stored as [K, M]).
template <typename T>
void tile_gemm_rows(index_t m0, index_t m1, index_t K, GemmOperand<T> a, const GemmTarget<T>* targets, int count,
                    const TileGemmBlocking<T>& blocking = {}) {
  using Tl = Tile<T>;
  constexpr index_t R = Tl::kRows, C = Tl::kCols;
  index_t rows_used = m0;  // the rows any target needs
  for (int t = 0; t < count; ++t) rows_used = std::max(rows_used, std::min(m1, targets[t].rows));
  m1 = rows_used;
  if (m1 <= m0) return;
  if (K <= 0) {  // nothing to multiply: out = base
    for (int t = 0; t < count; ++t) {
      const GemmTarget<T>& g = targets[t];
      for (index_t i = m0; i < std::min(m1, g.rows); ++i)
        for (index_t j = 0; j < g.n; ++j)
          g.out[i * g.ldo + j] = g.base ? g.base[(g.ldbase ? i * g.ldbase : 0) + j] : T(0);
    }
    return;
  }
  // Blocks of equal size (in whole panels), none larger than asked: N = 512 in blocks of at most 480 columns is
  // two blocks of 288 and 224, not 480 and 32.
  index_t widest = 0;
  for (int t = 0; t < count; ++t)
    if (targets[t].n > 0) widest = std::max(widest, balanced(targets[t].n, blocking.col_block, C));
  const index_t depth = balanced(K, blocking.depth, 1), row_block = balanced(m1 - m0, blocking.row_block, R);
  Buffer<T> a_pack(row_block * depth), b_pack(widest * depth + Tl::kPrefetchSlack);
  for (index_t r0 = m0; r0 < m1; r0 += row_block) {
    const index_t r1 = std::min(m1, r0 + row_block);
    for (index_t k0 = 0; k0 < K; k0 += depth) {
      const index_t kd = std::min(depth, K - k0);
      Tl::pack_broadcast_panels(a.data, a.stride, a.transposed, r0, r1, k0, kd, a_pack.data());
      for (int t = 0; t < count; ++t) {
        const GemmTarget<T>& g = targets[t];
        const index_t t1 = std::min(r1, g.rows), row_panels = t1 > r0 ? (t1 - r0 + R - 1) / R : 0;
        if (row_panels == 0 || g.n <= 0) continue;
        const index_t col_block = balanced(g.n, blocking.col_block, C);
        for (index_t c0 = 0; c0 < g.n; c0 += col_block) {
          const index_t c1 = std::min(g.n, c0 + col_block), col_panels = (c1 - c0 + C - 1) / C;
          for (index_t p = 0; p < col_panels; ++p)
            Tl::pack_vector_panel(g.b.data, g.b.stride, g.b.transposed, c0 + p * C, std::min(C, c1 - c0 - p * C), k0,
                                  kd, b_pack.data() + p * kd * C);
          for (index_t q = 0; q < row_panels; ++q) {
            const index_t i = r0 + q * R, rows = std::min(R, t1 - i);
            for (index_t p = 0; p < col_panels; ++p) {
              const index_t j = c0 + p * C, cols = std::min(C, c1 - j);
              T* o = g.out + i * g.ldo + j;
              const T* start = k0 > 0 ? o : (g.base ? g.base + (g.ldbase ? i * g.ldbase : 0) + j : nullptr);
              Tl::multiply(b_pack.data() + p * kd * C, a_pack.data() + q * kd * R, kd, o, g.ldo, rows, cols, start,
                           k0 > 0 ? g.ldo : g.ldbase);
            }
          }
        }
      }
    }
  }
}

/// Where part `part` of `parts` starts in A's rows [0, M) (a multiple of `unit`, or M) when the rows are cut into
/// pieces of equal work, a row's work being the columns of every target that uses it: the targets may stop at
/// different rows (a GRU's n block has no dW_hh product), and equal rows then gave one of two threads 1.5x the
/// other's work (GRU H=1024 weight gradients: 1.67x on 2 threads).
template <typename T>
index_t work_split(index_t M, const GemmTarget<T>* targets, int count, int part, int parts, index_t unit) {
  auto work_before = [&](index_t m) {  // the work of rows [0, m)
    double w = 0;
    for (int t = 0; t < count; ++t) w += double(std::min(m, targets[t].rows)) * double(targets[t].n);
    return w;
  };
  if (part <= 0) return 0;
  if (part >= parts) return M;
  const double goal = work_before(M) * part / parts;
  index_t lo = 0, hi = (M + unit - 1) / unit;  // in units of rows: the first cut whose work reaches the goal
  while (lo < hi) {
    const index_t mid = (lo + hi) / 2;
    if (work_before(std::min(M, mid * unit)) < goal)
      lo = mid + 1;
    else
      hi = mid;
  }
  return std::min(M, lo * unit);
}

/// Every target's product (see GemmTarget), A's rows split across the call's threads by work (work_split).
template <typename T>
void tile_gemm(index_t M, index_t K, GemmOperand<T> a, const GemmTarget<T>* targets, int count,
               const TileGemmBlocking<T>& blocking = {}) {
  double flops = 0;
  for (int t = 0; t < count; ++t) flops += 2.0 * std::min(M, targets[t].rows) * targets[t].n * K;
  const int parts = threads_for(flops, (M + Tile<T>::kRows - 1) / Tile<T>::kRows, tuning::kMinGemmFlopsPerThread);
  parallel_chunks(parts, parts, 1, [&](int, index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p) {
      const index_t m0 = work_split(M, targets, count, int(p), parts, Tile<T>::kRows);
      tile_gemm_rows(m0, work_split(M, targets, count, int(p) + 1, parts, Tile<T>::kRows), K, a, targets, count,
                     blocking);
    }
  });
}

/// out [M, N] (row-major, stride ldo) = base + A [M, K] · B [K, N]: one target (see GemmTarget for base).
template <typename T>
void tile_gemm(index_t M, index_t N, index_t K, GemmOperand<T> a, GemmOperand<T> b, T* out, index_t ldo,
               const T* base, index_t ldbase, const TileGemmBlocking<T>& blocking = {}) {
  const GemmTarget<T> target{b, N, out, ldo, M, base, ldbase};
  tile_gemm(M, K, a, &target, 1, blocking);
}

}  // namespace rnncore::detail
