// The fused pointwise passes' loop: it visits a row of n scalars with the widest SIMD packet first and then ever
// narrower ones (so a row shorter than one AVX-512 packet, e.g. H = 8, is still vectorised; Eigen's array
// expressions would fall back to scalars there). A pass is written once as a generic lambda
// `[&](auto lane, index_t j) { using P = decltype(lane); ... }` with the activations of rnncore/activations.hpp, and
// runs on every packet width. float uses packets; double runs scalars (float is the speed path, double the
// accuracy path).
#pragma once

#include <Eigen/Core>
#include <type_traits>

#include "rnncore/activations.hpp"
#include "rnncore/contract.hpp"

// Packet types carry vector attributes that GCC drops (and warns about) in template arguments; Eigen silences the
// same warning in its own headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace rnncore::detail::lanes {

namespace ei = Eigen::internal;

template <typename P, typename Body>
EIGEN_ALWAYS_INLINE index_t run_packets(index_t j, index_t n, Body& body) {
  constexpr index_t size = ei::unpacket_traits<P>::size;
  for (; j + size <= n; j += size) body(P{}, j);
  using Half = typename ei::unpacket_traits<P>::half;
  if constexpr (ei::unpacket_traits<Half>::size < size) return run_packets<Half>(j, n, body);
  return j;
}

/// body(lane, j) for j = 0 … n-1 in steps of the lane's width (a packet type, or T itself for the tail).
template <typename T, typename Body>
EIGEN_ALWAYS_INLINE void for_each(index_t n, Body&& body) {
  index_t j = 0;
  if constexpr (std::is_same_v<T, float>) j = run_packets<typename ei::packet_traits<float>::type>(j, n, body);
  for (; j < n; ++j) body(T{}, j);
}

template <typename P, typename T>
EIGEN_ALWAYS_INLINE P load(const T* p) {
  if constexpr (std::is_same_v<P, T>)
    return *p;
  else
    return ei::ploadu<P>(p);
}

template <typename P, typename T>
EIGEN_ALWAYS_INLINE void store(T* p, const P& v) {
  if constexpr (std::is_same_v<P, T>)
    *p = v;
  else
    ei::pstoreu(p, v);
}

}  // namespace rnncore::detail::lanes

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
