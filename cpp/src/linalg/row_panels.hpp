// The one-row product out [N] += a [K] · op(W) of a batch-1 recurrent step, on the weight packed once per call into
// column panels. Eigen's GEMV reads op(W) as K rows of N scalars with a stride, which at H = 64 (W_hh: 64 KB, more
// than L1) is bound by L2 bandwidth. Here:
// - op(W) is packed into panels of up to kPanelPackets SIMD packets of columns, each panel [K, width] contiguous
//   (one stream for the prefetcher, no partial cache lines);
// - a panel's columns are accumulated in registers over all of K (one store per output); a narrow panel (fewer
//   than kPanelPackets packets, e.g. N = 64 floats with AVX-512 = 4 packets) splits K into interleaved streams with
//   their own accumulators, so that there are always ~kPanelPackets independent FMA chains to hide FMA latency;
// - successive calls visit the panels in alternating order, so the panels used last by one step (still in L1)
//   are the first the next step reads. The order of the panels does not change any output's summation order, so
//   results do not depend on it.
// Packed by units (pack with unit_gates = G >= 1: op(W)'s N columns are G gate blocks of N/G, N/G a multiple of the
// packet): packed packet q holds gate block q % G's columns of units (q / G)·P …, so a panel ends with every gate of
// its units in registers and `for_each_unit` hands them to the cell's update right there (no store and reload of the
// gates, and the update of one panel overlaps the next panel's loads).
#pragma once

#include <Eigen/Core>
#include <algorithm>

#include "parallel.hpp"
#include "rnncore/memory.hpp"
#include "rnncore/types.hpp"
#include "tuning.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace rnncore::detail {

template <typename T>
class RowPanels {
 public:
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  static constexpr index_t P = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr index_t kPanelPackets = tuning::kRowPanelPackets;  // a panel's accumulators (FMA chains)
  static constexpr index_t kPanel = kPanelPackets * P;

  RowPanels() = default;

  /// Whether op(W) with n columns in unit_gates gate blocks can be packed by units (see the header).
  static bool can_pack_by_units(index_t n, index_t unit_gates) {
    return n > 0 && unit_gates >= 1 && unit_gates <= kPanelPackets && n % (unit_gates * P) == 0;
  }

  /// Packs op(W) [K, N] for the given weight: transposed = true: W is [N, K] row-major (stride ldw) and
  /// op(W) = W^T; transposed = false: W is [K, N] row-major (stride ldw) and op(W) = W.
  /// unit_gates >= 1 (only where can_pack_by_units): packed by units of that many gates, for for_each_unit;
  /// 0: for accumulate.
  void pack(const T* w, index_t ldw, index_t n, index_t k, bool transposed, index_t unit_gates = 0) {
    eigen_assert(unit_gates == 0 || can_pack_by_units(n, unit_gates));
    n_ = n;
    k_ = k;
    unit_gates_ = unit_gates;
    panel_ = unit_gates ? kPanelPackets / unit_gates * unit_gates * P : kPanel;  // whole units per panel
    panels_ = (n + panel_ - 1) / panel_;
    data_.resize(panels_ * panel_ * k);
    for (index_t p = 0; p < panels_; ++p) {
      const index_t n0 = p * panel_, width = padded_width(p);
      T* dst = panel(p);
      const index_t cols = std::min(panel_, n - n0);
      if (unit_gates > 1) {  // packet by packet, each from its gate block
        for (index_t q = 0; q < width / P; ++q) {
          const index_t src = source_column(n0 + q * P);
          if (transposed)
            transpose_block(w + src * ldw, ldw, P, k, dst + q * P, width);
          else
            for (index_t kk = 0; kk < k; ++kk) std::copy_n(w + kk * ldw + src, P, dst + kk * width + q * P);
        }
        continue;
      }
      if (transposed) {
        transpose_block(w + n0 * ldw, ldw, cols, k, dst, width);
      } else {
        for (index_t kk = 0; kk < k; ++kk) std::copy_n(w + kk * ldw + n0, cols, dst + kk * width);
      }
      for (index_t kk = 0; kk < k; ++kk) std::fill(dst + kk * width + cols, dst + (kk + 1) * width, T(0));
    }
  }

  index_t panels() const { return panels_; }
  bool by_units() const { return unit_gates_ > 0; }

  /// dst[kk * ldd + j] = src[j * lds + kk] for j < rows, kk < cols: P x P tiles transposed in registers, scalar
  /// edges (a scalar transpose of W_hh cost as much as ~10 steps of a B = 1, H = 64 LSTM).
  static void transpose_block(const T* src, index_t lds, index_t rows, index_t cols, T* dst, index_t ldd) {
    namespace ei = Eigen::internal;
    const index_t rows_p = rows / P * P, cols_p = cols / P * P;
    for (index_t j0 = 0; j0 < rows_p; j0 += P)
      for (index_t k0 = 0; k0 < cols_p; k0 += P) {
        ei::PacketBlock<Packet, int(P)> tile;
        for (index_t r = 0; r < P; ++r) tile.packet[r] = ei::ploadu<Packet>(src + (j0 + r) * lds + k0);
        ei::ptranspose(tile);
        for (index_t r = 0; r < P; ++r) ei::pstoreu(dst + (k0 + r) * ldd + j0, tile.packet[r]);
      }
    for (index_t j = 0; j < rows; ++j)
      for (index_t kk = (j < rows_p ? cols_p : 0); kk < cols; ++kk) dst[kk * ldd + j] = src[j * lds + kk];
  }

  /// out [N] += a [K] · op(W) over panels [p_begin, p_end), visited in the order `reverse` says (either packing).
  /// Kept out of line (one call per step) so that bench/profile.py can tell the product from the pointwise work.
  EIGEN_DONT_INLINE void accumulate(const T* a, T* out, index_t p_begin, index_t p_end, bool reverse) const {
    visit_panels(a, p_begin, p_end, reverse, [&](index_t n0, index_t cols, const Packet* sums, auto np) {
      namespace ei = Eigen::internal;
      constexpr int NP = decltype(np)::value;
      if (unit_gates_ > 1) {  // packed by units: each packet goes back to its gate block's columns
        for (int i = 0; i < NP; ++i) {
          T* o = out + source_column(n0 + i * P);
          ei::pstoreu(o, ei::padd(ei::ploadu<Packet>(o), sums[i]));
        }
        return;
      }
      T* o = out + n0;
      if (cols == NP * P) {
        for (int i = 0; i < NP; ++i) ei::pstoreu(o + i * P, ei::padd(ei::ploadu<Packet>(o + i * P), sums[i]));
        return;
      }
      alignas(64) T spill[NP * P];
      for (int i = 0; i < NP; ++i) ei::pstore(spill + i * P, sums[i]);
      for (index_t j = 0; j < cols; ++j) o[j] += spill[j];
    });
  }

  /// The product of a pack by units (by_units()) over panels [p_begin, p_end), handed over unit packet by unit
  /// packet: unit(j, sums) with sums[g] = (a · op(W)) of gate block g's columns j … j+P-1 (G packets), each unit
  /// packet once. Kept out of line with the cell's update inlined (bench/profile.py counts it as the product).
  template <typename Unit>
  EIGEN_DONT_INLINE void for_each_unit(const T* a, index_t p_begin, index_t p_end, bool reverse, Unit&& unit) const {
    eigen_assert(by_units());
    const index_t G = std::max<index_t>(1, unit_gates_);  // (a plain pack reads as units of one gate)
    visit_panels(a, p_begin, p_end, reverse, [&](index_t n0, index_t, const Packet* sums, auto np) {
      constexpr int NP = decltype(np)::value;
      for (int q = 0; q < NP; q += int(G)) unit((n0 + q * P) / G, sums + q);
    });
  }

 private:
  /// Width of panel p in scalars: panel_, or the last panel's columns rounded up to whole packets.
  index_t padded_width(index_t p) const {
    const index_t cols = std::min(panel_, n_ - p * panel_);
    return (cols + P - 1) / P * P;
  }
  const T* panel(index_t p) const { return data_.data() + p * panel_ * k_; }
  T* panel(index_t p) { return data_.data() + p * panel_ * k_; }
  /// The column of op(W) that packed column c holds when packed by units (packet c / P is gate block (c / P) % G's
  /// packet (c / P) / G).
  index_t source_column(index_t c) const {
    const index_t q = c / P, G = unit_gates_;
    return (q % G) * (n_ / G) + (q / G) * P + c % P;
  }

  /// Panels [p_begin, p_end) in the order `reverse` says; sink(n0, cols, sums, np) gets each panel's first packed
  /// column, its real columns and its NP sums (np: std::integral_constant<int, NP>).
  template <typename Sink>
  EIGEN_ALWAYS_INLINE void visit_panels(const T* a, index_t p_begin, index_t p_end, bool reverse, Sink&& sink) const {
    for (index_t i = p_begin; i < p_end; ++i) {
      const index_t p = reverse ? p_end - 1 - (i - p_begin) : i;
      switch (padded_width(p) / P) {
        case 8: panel_product<8>(p, a, sink); break;
        case 7: panel_product<7>(p, a, sink); break;
        case 6: panel_product<6>(p, a, sink); break;
        case 5: panel_product<5>(p, a, sink); break;
        case 4: panel_product<4>(p, a, sink); break;
        case 3: panel_product<3>(p, a, sink); break;
        case 2: panel_product<2>(p, a, sink); break;
        default: panel_product<1>(p, a, sink); break;
      }
    }
  }

  /// One panel of NP packets: Streams = kPanelPackets / NP interleaved slices of K, each with NP accumulators.
  template <int NP, typename Sink>
  EIGEN_ALWAYS_INLINE void panel_product(index_t p, const T* a, Sink& sink) const {
    namespace ei = Eigen::internal;
    constexpr int Streams = std::max<int>(1, int(kPanelPackets) / NP);
    constexpr index_t width = NP * P;
    const T* w = panel(p);
    Packet acc[Streams][NP];
    for (int s = 0; s < Streams; ++s)
      for (int i = 0; i < NP; ++i) acc[s][i] = ei::pset1<Packet>(T(0));
    index_t kk = 0;
    for (; kk + Streams <= k_; kk += Streams)
      for (int s = 0; s < Streams; ++s) {
        const Packet b = ei::pset1<Packet>(a[kk + s]);
        for (int i = 0; i < NP; ++i)
          acc[s][i] = ei::pmadd(b, ei::ploadu<Packet>(w + (kk + s) * width + i * P), acc[s][i]);
      }
    for (int s = 0; kk < k_; ++kk, ++s) {  // the last K % Streams rows
      const Packet b = ei::pset1<Packet>(a[kk]);
      for (int i = 0; i < NP; ++i) acc[s][i] = ei::pmadd(b, ei::ploadu<Packet>(w + kk * width + i * P), acc[s][i]);
    }
    // Add the streams pairwise (a fixed tree), then the outputs.
    for (int step = 1; step < Streams; step *= 2)
      for (int s = 0; s + step < Streams; s += 2 * step)
        for (int i = 0; i < NP; ++i) acc[s][i] = ei::padd(acc[s][i], acc[s + step][i]);
    const index_t n0 = p * panel_;
    sink(n0, std::min(panel_, n_ - n0), acc[0], std::integral_constant<int, NP>{});
  }

  index_t n_ = 0, k_ = 0, panels_ = 0, panel_ = kPanel, unit_gates_ = 0;
  Buffer<T> data_;  // block cache, 64-byte aligned
};

}  // namespace rnncore::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
