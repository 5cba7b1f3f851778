// The batched per-step product out [m, N] += a [m, K] · op(W) of the float kernels on AVX-512: the weight packed once
// per call into panels of 48 output columns, the step's batch packed into panels of 8 rows, and a 48 x 8 register
// tile (24 of the 32 vector registers accumulate; 3 weight packets are loaded per k and each batch value is
// broadcast once). Eigen's gebp tile is 48 x 4 (12 accumulators, for 16-register ISAs), so it loads the weight
// twice as often per FMA. Measured on the per-step products here (1 thread, hot, same minute): LSTM B=64 H=512
// 163 -> 184 GFLOP/s, B=16 H=512 121 -> 147, B=64 H=1024 164 -> 181; 2 threads B=64 H=512 279 -> 339. StepProduct
// uses it for float with 32 registers and Eigen's gebp otherwise.
#pragma once

#include <Eigen/Core>
#include <algorithm>

#include "row_panels.hpp"
#include "rnncore/memory.hpp"
#include "rnncore/types.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace rnncore::detail {

/// Whether TileProduct runs on this build (float, AVX-512-class: 16-lane packets and 32 vector registers).
constexpr bool kTileProductAvailable = Eigen::internal::packet_traits<float>::size == 16 &&
                                       EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32;

/// Instantiated only where kTileProductAvailable (T = float); a template so that other builds never compile it.
template <typename T>
class TileProduct {
 public:
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  using RowPacket = typename Eigen::internal::unpacket_traits<Packet>::half;  // 8 lanes: one k of a batch panel
  static constexpr index_t P = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr index_t kCols = 3 * P;  // output columns per weight panel (48)
  static constexpr index_t kRows = 8;      // batch rows per batch panel

  /// Sizes the panels for op(W) [K, N] and a batch of m rows.
  void reserve(index_t n, index_t k, index_t m) {
    n_ = n;
    k_ = k;
    m_ = m;
    panels_ = (n + kCols - 1) / kCols;
    batch_panels_ = (m + kRows - 1) / kRows;
    w_.resize(panels_ * k * kCols);
    a_.resize(batch_panels_ * k * kRows);
  }

  /// Packs weight panels [p_begin, p_end) of op(W) (transposed = true: W is [N, K] row-major with stride ldw and
  /// op(W) = W^T; false: W is [K, N] row-major and op(W) = W) as [N/48][K][48], zero-padded.
  void pack(const T* w, index_t ldw, bool transposed, index_t p_begin, index_t p_end) {
    const index_t n = n_, k = k_;
    for (index_t p = p_begin; p < p_end; ++p) {
      T* dst = w_.data() + p * k * kCols;
      const index_t n0 = p * kCols, cols = std::min(kCols, n - n0);
      if (transposed)
        RowPanels<T>::transpose_block(w + n0 * ldw, ldw, cols, k, dst, kCols);
      else
        for (index_t kk = 0; kk < k; ++kk) std::copy_n(w + kk * ldw + n0, cols, dst + kk * kCols);
      if (cols < kCols)
        for (index_t kk = 0; kk < k; ++kk) std::fill(dst + kk * kCols + cols, dst + (kk + 1) * kCols, T(0));
    }
  }

  index_t panels() const { return panels_; }
  index_t batch_panels() const { return batch_panels_; }

  /// Packs batch panels [q_begin, q_end) of this step's a [m, K] (row-major, stride lda) as [m/8][K][8].
  void pack_batch(const T* a, index_t lda, index_t q_begin, index_t q_end) {
    namespace ei = Eigen::internal;
    constexpr index_t R = kRows;
    for (index_t q = q_begin; q < q_end; ++q) {
      T* dst = a_.data() + q * k_ * R;
      const index_t rows = std::min(R, m_ - q * R);
      const T* src = a + q * R * lda;
      index_t kk = 0;
      if (rows == R) {  // 8 x 8 tiles transposed in registers
        for (; kk + R <= k_; kk += R) {
          ei::PacketBlock<RowPacket, int(R)> tile;
          for (index_t r = 0; r < R; ++r) tile.packet[r] = ei::ploadu<RowPacket>(src + r * lda + kk);
          ei::ptranspose(tile);
          for (index_t r = 0; r < R; ++r) ei::pstoreu(dst + (kk + r) * R, tile.packet[r]);
        }
      }
      for (; kk < k_; ++kk)
        for (index_t r = 0; r < R; ++r) dst[kk * R + r] = r < rows ? src[r * lda + kk] : T(0);
    }
  }

  /// out [m, N] (row-major, stride ldo) += the packed batch times weight panels [p_begin, p_end).
  void multiply(T* out, index_t ldo, index_t p_begin, index_t p_end) const {
    for (index_t p = p_begin; p < p_end; ++p)
      for (index_t q = 0; q < batch_panels_; ++q) tile(p, q, out, ldo);
  }

 private:
  /// One 48 x 8 tile: columns [48p, 48p + 48) of batch rows [8q, 8q + 8), accumulated over all of K.
  void tile(index_t p, index_t q, T* out, index_t ldo) const {
    namespace ei = Eigen::internal;
    const T* w = w_.data() + p * k_ * kCols;
    const T* b = a_.data() + q * k_ * kRows;
    // The accumulators must stay in registers: every loop over the tile is unrolled by pragma (GCC 12 otherwise
    // keeps acc in memory and reloads/stores all 24 packets at every k: half the speed, measured).
    Packet acc[3][kRows];
#pragma GCC unroll 8
    for (int j = 0; j < int(kRows); ++j) acc[0][j] = acc[1][j] = acc[2][j] = ei::pzero(Packet());
    for (index_t kk = 0; kk < k_; ++kk, w += kCols, b += kRows) {
      ei::prefetch(w + 8 * kCols);  // the weight panel streams from L2: ask 8 k ahead
      const Packet w0 = ei::pload<Packet>(w), w1 = ei::pload<Packet>(w + P), w2 = ei::pload<Packet>(w + 2 * P);
#pragma GCC unroll 8
      for (int j = 0; j < int(kRows); ++j) {
        const Packet bj = ei::pset1<Packet>(b[j]);
        acc[0][j] = ei::pmadd(w0, bj, acc[0][j]);
        acc[1][j] = ei::pmadd(w1, bj, acc[1][j]);
        acc[2][j] = ei::pmadd(w2, bj, acc[2][j]);
      }
    }
    const index_t n0 = p * kCols, cols = std::min(kCols, n_ - n0), rows = std::min(kRows, m_ - q * kRows);
    if (rows == kRows && cols == kCols) {
#pragma GCC unroll 8
      for (int j = 0; j < int(kRows); ++j) {
        T* o = out + (q * kRows + j) * ldo + n0;
        ei::pstoreu(o, ei::padd(ei::ploadu<Packet>(o), acc[0][j]));
        ei::pstoreu(o + P, ei::padd(ei::ploadu<Packet>(o + P), acc[1][j]));
        ei::pstoreu(o + 2 * P, ei::padd(ei::ploadu<Packet>(o + 2 * P), acc[2][j]));
      }
      return;
    }
    alignas(64) T sums[kRows][kCols];  // the batch's or the weight's last, partial panel
#pragma GCC unroll 8
    for (int j = 0; j < int(kRows); ++j) {
      ei::pstore(&sums[j][0], acc[0][j]);
      ei::pstore(&sums[j][P], acc[1][j]);
      ei::pstore(&sums[j][2 * P], acc[2][j]);
    }
    for (index_t j = 0; j < rows; ++j)
      for (index_t c = 0; c < cols; ++c) out[(q * kRows + j) * ldo + n0 + c] += sums[j][c];
  }

  index_t n_ = 0, k_ = 0, m_ = 0, panels_ = 0, batch_panels_ = 0;
  Buffer<T> w_, a_;  // block cache (64-byte aligned: the weight panels are read with aligned loads)
};

}  // namespace rnncore::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
