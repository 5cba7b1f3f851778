// Shared pieces of the thin pybind11 layer. Validation happens in Python (rnncore/_validation.py) before any call
// reaches here; the bindings only accept exactly-typed C-contiguous arrays (noconvert), so nothing is ever read with
// the wrong strides or silently cast.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "rnncore/contract.hpp"
#include "rnncore/memory.hpp"

namespace rnncore::bindings {

namespace py = pybind11;

template <typename T>
using Array = py::array_t<T, py::array::c_style>;
template <typename T>
using OptionalArray = std::optional<Array<T>>;
using Lengths = std::optional<py::array_t<index_t, py::array::c_style>>;

template <typename T>
const T* data_or_null(const std::optional<py::array_t<T, py::array::c_style>>& a) {
  return a ? a->data() : nullptr;
}

/// The dtype's name as numpy spells it, for class names and reprs.
template <typename T>
constexpr const char* dtype_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

/// A new, uninitialised C-contiguous array whose memory comes from the block cache and goes back to it when numpy
/// frees the array (large outputs are then reused across training steps instead of faulting in fresh pages).
template <typename T>
Array<T> cached_array(const std::vector<py::ssize_t>& shape) {
  std::size_t count = 1;
  for (py::ssize_t extent : shape) count *= static_cast<std::size_t>(extent);
  void* block = acquire_block(sizeof(T) * count);
  py::capsule owner(block, [](void* b) { release_block(b); });
  return Array<T>(shape, static_cast<T*>(block), owner);
}

void register_recurrent(py::module_& m);
void register_stepper(py::module_& m);
void register_attention(py::module_& m);
void register_embedding(py::module_& m);

}  // namespace rnncore::bindings
