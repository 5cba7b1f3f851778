// The batched per-step product out [m, N] += a [m, K] · op(W) of the float kernels on AVX-512: the weight packed once
// per call into panels of 48 output columns, the step's batch packed into panels of 8 rows, and a 48 x 8 register
// tile (24 of the 32 vector registers accumulate; 3 weight packets are loaded per k and each batch value is
// broadcast once). Eigen's gebp tile is 48 x 4 (12 accumulators, for 16-register ISAs), so it loads the weight
// twice as often per FMA (1.1-1.2x on the per-step products, bench/README.md). StepProduct uses it for float with
// 32 registers and Eigen's gebp otherwise. The tile itself (Tile<T>) is shared with the blocked
// GEMM of tile_gemm.hpp (input projection, dx, weight gradients).
// Every build can instantiate it for float and double (3 packets x kRows rows: 8 rows with 32 registers, 4 with 16),
// for the row-invariant mode (tuning.hpp): the tile computes each output element as acc = fma(w, a, acc) over k in
// order and out = base + acc, whatever the rows beside it, so the mode runs every product on it.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <limits>
#include <type_traits>

#include "linalg/row_panels.hpp"
#include "rnncore/memory.hpp"
#include "rnncore/types.hpp"
#include "tuning.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace rnncore::detail {

/// Whether the 48 x 8 tile runs on this build (float, AVX-512-class: 16-lane packets and 32 vector registers).
constexpr bool kTileProductAvailable = Eigen::internal::packet_traits<float>::size == 16 &&
                                       EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32;

/// Whether products of scalar type T run on the tile (the per-step product and the large GEMMs alike): float on
/// builds where it is available; float64 and narrower ISAs keep Eigen's GEMM.
template <typename T>
constexpr bool kTileFor = std::is_same_v<T, float> && kTileProductAvailable;

/// The register tile and its two packed operand layouts, shared by the per-step product (TileProduct) and the
/// blocked GEMM (tile_gemm.hpp). The default paths instantiate it where kTileProductAvailable (T = float); the
/// row-invariant mode on every build, for float and double.
///   vector side:    op(W) [K, N] in panels of kCols columns, each [k][kCols] (3 packets per k, loaded)
///   broadcast side: A [M, K] in panels of kRows rows, each [k][kRows] (one scalar per row and k, broadcast)
/// A tile is kRows rows x kCols columns of out, accumulated over k in 24 registers.
template <typename T>
struct Tile {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  static constexpr index_t P = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr index_t kCols = tuning::kTileColPackets * P;  // output columns per vector-side panel (48)
  static constexpr index_t kRows = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32
                                       ? tuning::kTileRows
                                       : tuning::kTileRowsFewRegisters;  // output rows per broadcast-side panel
  using Half = typename Eigen::internal::unpacket_traits<Packet>::half;
  /// A packet of kRows lanes (one k of a batch panel: the half packet of float on AVX-512), or void where the build
  /// has none (then the batch is packed by scalars).
  using RowPacket = std::conditional_t<Eigen::internal::unpacket_traits<Half>::size == kRows, Half,
                                       std::conditional_t<P == kRows, Packet, void>>;
  static constexpr index_t kLineScalars = 64 / sizeof(T);  // scalars per 64-byte cache line

  /// Scalars past a vector-side panel buffer's last panel that the multiply's prefetch (8 k ahead) may address.
  static constexpr index_t kPrefetchSlack = tuning::kTilePrefetchDistance * kCols;

  /// Width of a vector-side panel of `cols` columns: kCols, or a last, narrower panel rounded up to whole packets.
  static index_t panel_width(index_t cols) { return std::min(kCols, (cols + P - 1) / P * P); }

  /// dst [k][panel_width(cols)] = op(W)[k0 + kk][n0 + c] for c < cols, zero-padded. transposed = true: W is
  /// [N, K] row-major (stride ldw) and op(W) = W^T; false: W is [K, N] row-major and op(W) = W.
  static void pack_vector_panel(const T* w, index_t ldw, bool transposed, index_t n0, index_t cols, index_t k0,
                                index_t k, T* dst) {
    const index_t width = panel_width(cols);
    if (transposed)
      RowPanels<T>::transpose_block(w + n0 * ldw + k0, ldw, cols, k, dst, width);
    else
      for (index_t kk = 0; kk < k; ++kk) std::copy_n(w + (k0 + kk) * ldw + n0, cols, dst + kk * width);
    if (cols < width)
      for (index_t kk = 0; kk < k; ++kk) std::fill(dst + kk * width + cols, dst + (kk + 1) * width, T(0));
  }

  /// The broadcast-side panels of rows [m0, m1) of A [M, K], columns [k0, k0 + k): panel q (rows m0 + 8q …) at
  /// dst + q·k·kRows as [k][kRows], zero-padded past m1. transposed = false: A is [M, K] row-major (stride lda);
  /// true: A is stored as A^T, [K, M] row-major (e.g. dG when the product is dG^T · x).
  static void pack_broadcast_panels(const T* a, index_t lda, bool transposed, index_t m0, index_t m1, index_t k0,
                                    index_t k, T* dst) {
    namespace ei = Eigen::internal;
    constexpr index_t R = kRows;
    const index_t panels = (m1 - m0 + R - 1) / R;
    if (transposed) {
      for (index_t q = 0; q < panels; ++q) {
        const index_t rows = std::min(R, m1 - m0 - q * R);
        for (index_t kk = 0; kk < k; ++kk) {
          const T* src = a + (k0 + kk) * lda + m0 + q * R;
          T* d = dst + q * k * R + kk * R;
          if constexpr (!std::is_void_v<RowPacket>) {
            if (rows == R) {
              ei::pstore(d, ei::ploadu<RowPacket>(src));
              continue;
            }
          }
          for (index_t r = 0; r < R; ++r) d[r] = r < rows ? src[r] : T(0);
        }
      }
      return;
    }
    for (index_t q = 0; q < panels; ++q) {
      const T* src = a + (m0 + q * R) * lda + k0;
      T* d = dst + q * k * R;
      const index_t rows = std::min(R, m1 - m0 - q * R);
      index_t kk = 0;
      if constexpr (!std::is_void_v<RowPacket>) {
        if (rows == R) {  // 8 x 8 blocks transposed in registers
          for (; kk + R <= k; kk += R) {
            ei::PacketBlock<RowPacket, int(R)> block;
            for (index_t r = 0; r < R; ++r) block.packet[r] = ei::ploadu<RowPacket>(src + r * lda + kk);
            ei::ptranspose(block);
            for (index_t r = 0; r < R; ++r) ei::pstore(d + (kk + r) * R, block.packet[r]);
          }
        }
      }
      for (; kk < k; ++kk)
        for (index_t r = 0; r < R; ++r) d[kk * R + r] = r < rows ? src[r * lda + kk] : T(0);
    }
  }

  /// out [rows, cols] (stride ldo) = base + Σ_kk b[kk][r] · w[kk][c]: w a vector-side panel of cols columns (packed
  /// by pack_vector_panel), b a broadcast-side panel, both k long; base [rows, cols] with stride ldbase (0: one row
  /// for every output row, e.g. a bias; the output itself to accumulate), or null for zeros. rows <= kRows.
  /// [ahead, ahead_end): memory to pull into L2 meanwhile, one cache line per k (e.g. the next weight panel of a
  /// product whose weight streams from L3), or null.
  static void multiply(const T* w, const T* b, index_t k, T* out, index_t ldo, index_t rows, index_t cols,
                       const T* base, index_t ldbase, const T* ahead = nullptr, const T* ahead_end = nullptr) {
    switch (panel_width(cols) / P) {
      case 3: multiply_packets<3>(w, b, k, out, ldo, rows, cols, base, ldbase, ahead, ahead_end); break;
      case 2: multiply_packets<2>(w, b, k, out, ldo, rows, cols, base, ldbase, ahead, ahead_end); break;
      default: multiply_packets<1>(w, b, k, out, ldo, rows, cols, base, ldbase, ahead, ahead_end); break;
    }
  }

 private:
  /// multiply() for a panel NP packets wide. Out of line: one call per tile, and a symbol of its own for
  /// bench/profile.py.
  template <int NP>
  static EIGEN_DONT_INLINE void multiply_packets(const T* w, const T* b, index_t k, T* out, index_t ldo,
                                                 index_t rows, index_t cols, const T* base, index_t ldbase,
                                                 const T* ahead, const T* ahead_end) {
    namespace ei = Eigen::internal;
    constexpr index_t width = NP * P;
    // The accumulators must stay in registers: every loop over the tile is unrolled by pragma (GCC 12 otherwise
    // keeps acc in memory and reloads/stores all 24 packets at every k: half the speed, measured).
    Packet acc[NP][kRows];
#pragma GCC unroll 8
    for (int j = 0; j < int(kRows); ++j)
#pragma GCC unroll 3
      for (int i = 0; i < NP; ++i) acc[i][j] = ei::pzero(Packet());
    // Ask early for the rows the epilogue reads: a step's slice of the input projection is cold (in L3 or memory)
    // and a long k loop hides that; short tiles skip it (tuning::kEpiloguePrefetchMinDepth).
    if (base && ldbase && k >= tuning::kEpiloguePrefetchMinDepth)
      for (index_t j = 0; j < rows; ++j)
        for (index_t c = 0; c < cols; c += kLineScalars) ei::prefetch(base + j * ldbase + c);
    for (index_t kk = 0; kk < k; ++kk, w += width, b += kRows) {
      ei::prefetch(w + tuning::kTilePrefetchDistance * width);  // the vector-side panel streams from L2
      if (ahead < ahead_end) {  // one line per k of what the caller wants in L2 next
        __builtin_prefetch(ahead, 0, 2);
        ahead += kLineScalars;
      }
      Packet wk[NP];
#pragma GCC unroll 3
      for (int i = 0; i < NP; ++i) wk[i] = ei::pload<Packet>(w + i * P);
#pragma GCC unroll 8
      for (int j = 0; j < int(kRows); ++j) {
        const Packet bj = ei::pset1<Packet>(b[j]);
#pragma GCC unroll 3
        for (int i = 0; i < NP; ++i) acc[i][j] = ei::pmadd(wk[i], bj, acc[i][j]);
      }
    }
    if (rows == kRows && cols == width) {
#pragma GCC unroll 8
      for (int j = 0; j < int(kRows); ++j) {
        T* o = out + j * ldo;
        const T* s = base ? base + j * ldbase : nullptr;
#pragma GCC unroll 3
        for (int i = 0; i < NP; ++i)
          ei::pstoreu(o + i * P, s ? ei::padd(ei::ploadu<Packet>(s + i * P), acc[i][j]) : acc[i][j]);
      }
      return;
    }
    alignas(64) T sums[kRows][width];  // a partial tile: the last rows or columns
#pragma GCC unroll 8
    for (int j = 0; j < int(kRows); ++j)
#pragma GCC unroll 3
      for (int i = 0; i < NP; ++i) ei::pstore(&sums[j][i * P], acc[i][j]);
    for (index_t j = 0; j < rows; ++j)  // as a whole tile's (acc itself when there is no base: 0 + -0 is +0)
      for (index_t c = 0; c < cols; ++c) out[j * ldo + c] = base ? base[j * ldbase + c] + sums[j][c] : sums[j][c];
  }
};

/// out [N] = start + a [K] · op(W) for ONE row, in the tile's arithmetic without packing anything: each element
/// acc = 0, acc = pmadd(w, a_k, acc) over k in order, out = start + acc, in depth slices of `depth` (start: base, or
/// nothing when base is null, for the first slice; the output for the later ones): the bits of Tile::multiply over
/// the same slices (tile_gemm's, or one slice for TileProduct), whatever the lane a column takes. The row-invariant
/// mode's one-row products (a decode step of one source): packing the whole weight for one row cost 2.2-2.9x.
///   transposed: W is [N, K] row-major (stride ldw) and op(W) = W^T, read in P x P blocks transposed in registers;
///   else W is [K, N] row-major.  a: a[k * a_stride].  Columns [n0, n1) of out [N] (a thread's share);
///   base: [N] or null, may be out itself.
template <typename T>
void invariant_row_product(const T* w, index_t ldw, bool transposed, const T* a, index_t a_stride, index_t K,
                           index_t depth, index_t n0, index_t n1, T* out, const T* base) {
  namespace ei = Eigen::internal;
  using Packet = typename Tile<T>::Packet;
  constexpr index_t P = Tile<T>::P;
  alignas(64) T lanes[P];  // a packet assembled from scalars (a column block's tail), or a partial result
  for (index_t c0 = n0; c0 < n1; c0 += P) {
    const index_t cols = std::min(P, n1 - c0);
    for (index_t k0 = 0; k0 < K; k0 += depth) {
      const index_t k1 = std::min(K, k0 + depth);
      Packet acc = ei::pzero(Packet());
      index_t k = k0;
      if constexpr (P > 1) {
        if (transposed && cols == P) {
          for (; k + P <= k1; k += P) {  // W's P rows x P columns, transposed: a packet of op(W) per k
            ei::PacketBlock<Packet, int(P)> block;
            for (index_t i = 0; i < P; ++i) block.packet[i] = ei::ploadu<Packet>(w + (c0 + i) * ldw + k);
            ei::ptranspose(block);
            for (index_t j = 0; j < P; ++j)
              acc = ei::pmadd(block.packet[j], ei::pset1<Packet>(a[(k + j) * a_stride]), acc);
          }
        }
      }
      for (; k < k1; ++k) {
        Packet wk;
        if (!transposed && cols == P) {
          wk = ei::ploadu<Packet>(w + k * ldw + c0);
        } else {
          for (index_t i = 0; i < P; ++i)
            lanes[i] = i >= cols ? T(0) : transposed ? w[(c0 + i) * ldw + k] : w[k * ldw + c0 + i];
          wk = ei::pload<Packet>(lanes);
        }
        acc = ei::pmadd(wk, ei::pset1<Packet>(a[k * a_stride]), acc);
      }
      const T* start = k0 > 0 ? out + c0 : base ? base + c0 : nullptr;
      if (cols == P) {
        ei::pstoreu(out + c0, start ? ei::padd(ei::ploadu<Packet>(start), acc) : acc);
      } else {
        ei::pstore(lanes, acc);
        for (index_t i = 0; i < cols; ++i) out[c0 + i] = start ? start[i] + lanes[i] : lanes[i];
      }
    }
  }
}

/// The batched per-step product out [m, N] += a [m, K] · op(W) on the tile, with op(W) packed once per call.
/// The default paths use it where kTileProductAvailable (T = float); the row-invariant mode everywhere.
template <typename T>
class TileProduct {
 public:
  static constexpr index_t kCols = Tile<T>::kCols, kRows = Tile<T>::kRows;

  /// Sizes the panels for op(W) [K, N] and a batch of m rows. weight_in_l2: the knob of that name (tuning.hpp),
  /// -1 auto (multiply orders its loops by the half-L2 rule), 0 always weight-outer, 1 always batch-outer.
  void reserve(index_t n, index_t k, index_t m, int weight_in_l2 = -1) {
    order_budget_ = weight_in_l2 < 0 ? half_l2() : weight_in_l2 == 1 ? std::numeric_limits<double>::infinity() : -1.0;
    n_ = n;
    k_ = k;
    m_ = m;
    panels_ = (n + kCols - 1) / kCols;
    batch_panels_ = (m + kRows - 1) / kRows;
    w_.resize(panels_ * k * kCols + Tile<T>::kPrefetchSlack);
    a_.resize(batch_panels_ * k * kRows);
  }

  /// Packs weight panels [p_begin, p_end) of op(W) (transposed = true: W is [N, K] row-major with stride ldw and
  /// op(W) = W^T; false: W is [K, N] row-major and op(W) = W) as [N/48][K][48], zero-padded.
  void pack(const T* w, index_t ldw, bool transposed, index_t p_begin, index_t p_end) {
    for (index_t p = p_begin; p < p_end; ++p)
      Tile<T>::pack_vector_panel(w, ldw, transposed, p * kCols, std::min(kCols, n_ - p * kCols), 0, k_, panel(p));
  }

  index_t panels() const { return panels_; }
  index_t batch_panels() const { return batch_panels_; }

  /// Packs batch panels [q_begin, q_end) of this step's a [m, K] (row-major, stride lda) as [m/8][K][8].
  void pack_batch(const T* a, index_t lda, index_t q_begin, index_t q_end) {
    Tile<T>::pack_broadcast_panels(a, lda, false, q_begin * kRows, std::min(m_, q_end * kRows), 0, k_,
                                   a_.data() + q_begin * k_ * kRows);
  }

  /// Whether the whole packed weight fits in half of L2 (then each batch panel meets every weight panel from L2).
  bool weight_fits_half_l2() const { return fits_half_l2(panels_ * k_ * kCols); }

  /// The vector packets of weight panels [p_begin, p_end) (a tile's work is proportional to its panel's packets).
  index_t packets(index_t p_begin, index_t p_end) const {
    index_t sum = 0;
    for (index_t p = p_begin; p < p_end; ++p) sum += Tile<T>::panel_width(std::min(kCols, n_ - p * kCols));
    return sum / Tile<T>::P;
  }

  /// out [m, N] (row-major, stride ldo) += packed batch panels [q_begin, q_end) times weight panels [p_begin, p_end).
  /// Order: when those weight panels fit in half of L2, each batch panel (in L1) meets every weight panel (from L2);
  /// otherwise each weight panel (read once from L3/memory) meets every batch panel (tuning.hpp).
  void multiply(T* out, index_t ldo, index_t p_begin, index_t p_end, index_t q_begin, index_t q_end) const {
    auto tile = [&](index_t p, index_t q, const T* ahead, const T* ahead_end) {
      const index_t n0 = p * kCols;
      T* o = out + q * kRows * ldo + n0;
      Tile<T>::multiply(panel(p), a_.data() + q * k_ * kRows, k_, o, ldo, std::min(kRows, m_ - q * kRows),
                        std::min(kCols, n_ - n0), o, ldo, ahead, ahead_end);
    };
    if (double(sizeof(T)) * ((p_end - p_begin) * k_ * kCols) <= order_budget_) {  // the weight panels fit
      for (index_t q = q_begin; q < q_end; ++q)
        for (index_t p = p_begin; p < p_end; ++p) tile(p, q, nullptr, nullptr);
    } else {
      // Weight-outer: batch panel 0's pass streams weight panel p from L3; the other passes run from L2 and
      // pull panel p + 1 (the first one after the last, for the next step) into L2, each its share of the lines
      // at one line per k: all of it from Q = 4 batch panels, a third at Q = 2 and two thirds at Q = 3 (three
      // lines per k, to cover it all, was slower).
      const index_t Q = q_end - q_begin, line = Tile<T>::kLineScalars, lines = k_ * kCols / line;
      for (index_t p = p_begin; p < p_end && Q > 0; ++p) {
        const T* next = panel(p + 1 < p_end ? p + 1 : p_begin);
        tile(p, q_begin, nullptr, nullptr);
        for (index_t q = 1; q < Q; ++q)
          tile(p, q_begin + q, next + (q - 1) * lines / (Q - 1) * line, next + q * lines / (Q - 1) * line);
      }
    }
  }

 private:
  static double half_l2() {
    static const double bytes = tuning::tile_weight_l2_budget(Eigen::l2CacheSize());
    return bytes;
  }
  static bool fits_half_l2(index_t scalars) { return double(sizeof(T)) * scalars <= half_l2(); }
  const T* panel(index_t p) const { return w_.data() + p * k_ * kCols; }
  T* panel(index_t p) { return w_.data() + p * k_ * kCols; }

  index_t n_ = 0, k_ = 0, m_ = 0, panels_ = 0, batch_panels_ = 0;
  double order_budget_ = 0;  // bytes of weight panels multiply runs batch-outer (from L2); more: weight-outer
  Buffer<T> w_, a_;  // block cache (64-byte aligned: the weight panels are read with aligned loads)
};

}  // namespace rnncore::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
