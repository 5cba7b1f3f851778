// Array and strided views over the kernels' row-major buffers (Eigen maps): one row as an array for coefficient-wise
// math, one gate block of a wider row-major matrix as a matrix.
#pragma once

#include <Eigen/Core>

#include "rnncore/types.hpp"

namespace rnncore::detail {

template <typename T>
using Array1D = Eigen::Array<T, 1, Eigen::Dynamic>;
template <typename T>
using ArrayView = Eigen::Map<Array1D<T>>;
template <typename T>
using ConstArrayView = Eigen::Map<const Array1D<T>>;
/// A row-major matrix view whose rows are `stride` apart (e.g. one gate's columns of a [B, G*H] block).
template <typename T>
using StridedView = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstStridedView = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;

}  // namespace rnncore::detail
