// Shared pieces of the thin pybind11 layer. Validation happens in Python (rnncore/_validation.py): the bindings only
// accept exactly-typed C-contiguous arrays (the recurrent kernels' y and dy: any element strides, StepArray), so
// nothing is ever read with the wrong strides or silently cast. The
// recurrent kernels' entry points recognise the common exact call themselves (ExactArray below: a fraction of the
// Python checks' cost, which matters on short calls) and answer anything else with NotImplemented, upon which
// rnncore.ops runs the checks that name the argument and calls again with the checked arrays.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "../src/cells/cell_table.hpp"  // the C++ cell table: names, gates, states (self-contained)
#include "rnncore/contract.hpp"
#include "rnncore/memory.hpp"

namespace rnncore::bindings {

namespace py = pybind11;

template <typename T>
using Array = py::array_t<T, py::array::c_style>;
template <typename T>
using OptionalArray = std::optional<Array<T>>;
using Lengths = std::optional<py::array_t<index_t, py::array::c_style>>;

/// numpy's own descriptor object for T (float32, float64, int64 in native byte order).
template <typename T>
PyObject* native_descr() {
  static PyObject* const descr = py::dtype::of<T>().release().ptr();  // a singleton numpy keeps alive
  return descr;
}

/// Whether an array's descriptor is T's: numpy's own object (the common case, one compare), or an equivalent one —
/// same type and byte order, e.g. unpickled arrays or dtypes with metadata (`a.dtype == np.dtype(T)`).
template <typename T>
bool is_native(PyObject* descr) {
  return descr == native_descr<T>() || py::detail::npy_api::get().PyArray_EquivTypes_(descr, native_descr<T>());
}

/// The sizes (shape) of an ndarray argument of dtype T with `nd` axes, or false when it is not one.
template <typename T>
bool array_shape(py::handle a, int nd, const py::ssize_t*& shape) {
  if (Py_TYPE(a.ptr()) != py::detail::npy_api::get().PyArray_Type_) return false;
  const auto* arr = py::detail::array_proxy(a.ptr());
  if (!is_native<T>(arr->descr) || arr->nd != nd) return false;
  shape = arr->dimensions;
  return true;
}

/// A read-only view of an argument when it is exactly what the kernels take: an ndarray (not a subclass) of
/// native dtype T, C-contiguous, of the given shape; otherwise `ok` is false and nothing may be read.
/// `optional` also takes None (an optional argument left out), with data null.
template <typename T>
struct ExactArray {
  const T* data = nullptr;
  bool ok = false;

  ExactArray(py::handle a, std::initializer_list<index_t> shape, bool optional = false) {
    if (optional && a.is_none()) {
      ok = true;
      return;
    }
    const py::ssize_t* dims;
    if (!array_shape<T>(a, static_cast<int>(shape.size()), dims)) return;
    const auto* arr = py::detail::array_proxy(a.ptr());
    if (!(arr->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return;
    int axis = 0;
    for (index_t extent : shape)
      if (dims[axis++] != extent) return;
    data = reinterpret_cast<const T*>(arr->data);
    ok = true;
  }
};

/// ExactArray's int64 values copied into memory the call owns, taken while the GIL is held: the kernels index by
/// them after releasing it, when another Python thread could rewrite the caller's array (an out-of-bounds read).
/// Check the copy, never the caller's array. Not copyable (`data` points into `values`).
struct IndexCopy {
  std::vector<index_t> values;
  const index_t* data = nullptr;
  bool ok = false;

  IndexCopy(py::handle a, std::initializer_list<index_t> shape, bool optional = false) {
    const ExactArray<index_t> view(a, shape, optional);
    ok = view.ok;
    if (!view.data) return;
    index_t n = 1;
    for (index_t extent : shape) n *= extent;
    values.assign(view.data, view.data + n);
    data = n > 0 ? values.data() : view.data;  // (none: non-null still, as given; nothing is read)
  }
  IndexCopy(const IndexCopy&) = delete;
  IndexCopy& operator=(const IndexCopy&) = delete;
};

/// A recurrent kernel's y (out=) or dy taken at its strides (StepView) when the kernels can: an ndarray (not a
/// subclass) of native dtype T, shape [T, B, H], aligned, each stride a whole number of elements; `writable` (out=)
/// also asks for a writeable array whose rows do not overlap one another. `optional` also takes None (view.data
/// null). Otherwise `ok` is false and nothing may be read or written.
template <typename T, bool Writable = std::is_const_v<T> == false>
struct StepArray {
  using Scalar = std::remove_const_t<T>;
  StepView<T> view;
  bool ok = false;

  StepArray(py::handle a, index_t steps, index_t batch, index_t hidden, bool optional = false) {
    if (optional && a.is_none()) {
      ok = true;
      return;
    }
    const py::ssize_t* dims;
    if (!array_shape<Scalar>(a, 3, dims) || dims[0] != steps || dims[1] != batch || dims[2] != hidden) return;
    const auto* arr = py::detail::array_proxy(a.ptr());
    if (!(arr->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) return;
    if (Writable && !(arr->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_)) return;
    index_t stride[3];
    for (int k = 0; k < 3; ++k) {
      if (arr->strides[k] % static_cast<py::ssize_t>(sizeof(Scalar)) != 0) return;
      stride[k] = arr->strides[k] / static_cast<py::ssize_t>(sizeof(Scalar));
    }
    if (Writable && !rows_apart({steps, batch, hidden}, stride)) return;
    view = StepView<T>{reinterpret_cast<T*>(arr->data), stride[0], stride[1], stride[2]};
    ok = true;
  }

  /// Whether no two elements of the three axes (extents, strides in elements) share an address: ordered by
  /// |stride|, each axis steps past everything the shorter ones span (axes of one element ignored). The check
  /// rnncore._validation.steps_overlap_themselves makes too.
  static bool rows_apart(const index_t (&extent)[3], const index_t (&stride)[3]) {
    if (extent[0] == 0 || extent[1] == 0 || extent[2] == 0) return true;  // no element at all
    index_t order[3] = {0, 1, 2};
    auto size = [&](index_t k) { return stride[k] < 0 ? -stride[k] : stride[k]; };
    std::sort(order, order + 3, [&](index_t a, index_t b) { return size(a) < size(b); });
    index_t span = 0;  // the farthest element the shorter axes reach from any element
    for (index_t k : order) {
      if (extent[k] == 1) continue;
      if (size(k) <= span) return false;
      span += size(k) * (extent[k] - 1);
    }
    return true;
  }
};

/// The bytes [first, last) an ndarray's elements occupy; empty (first == last) for no array or no element.
inline std::pair<const char*, const char*> byte_extent(py::handle a) {
  if (!py::isinstance<py::array>(a)) return {nullptr, nullptr};
  const auto* arr = py::detail::array_proxy(a.ptr());
  const char* first = arr->data;
  const char* last = arr->data;
  for (int k = 0; k < arr->nd; ++k) {
    if (arr->dimensions[k] == 0) return {nullptr, nullptr};
    const py::ssize_t reach = arr->strides[k] * (arr->dimensions[k] - 1);
    (reach < 0 ? first : last) += reach;
  }
  return {first, last + py::reinterpret_borrow<py::array>(a).itemsize()};
}

/// Whether `out`'s memory may overlap one of `others`' (their byte extents intersect): numpy.may_share_memory,
/// the test rnncore._validation makes of an out= argument too.
inline bool may_share_memory(py::handle out, std::initializer_list<py::handle> others) {
  const auto o = byte_extent(out);
  if (o.first == o.second) return false;
  for (py::handle a : others) {
    const auto e = byte_extent(a);
    if (e.first != e.second && e.first < o.second && o.first < e.second) return true;
  }
  return false;
}

/// The answer to a call that is not the exact call: Python validates the arguments and calls again.
inline py::object not_exact() { return py::reinterpret_borrow<py::object>(py::handle(Py_NotImplemented)); }

template <typename T>
const T* data_or_null(const std::optional<py::array_t<T, py::array::c_style>>& a) {
  return a ? a->data() : nullptr;
}

using detail::cell_traits;

/// The dtype's name as numpy spells it, for class names and reprs.
template <typename T>
constexpr const char* dtype_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

/// The number of scalars of an array of this shape.
inline std::size_t element_count(const std::vector<py::ssize_t>& shape) {
  std::size_t count = 1;
  for (py::ssize_t extent : shape) count *= static_cast<std::size_t>(extent);
  return count;
}

/// A C-contiguous array over a block from acquire_block, which goes back to the cache when numpy frees the array.
template <typename T>
Array<T> array_over_block(void* block, const std::vector<py::ssize_t>& shape) {
  py::capsule owner(block, [](void* b) { release_block(b); });
  return Array<T>(shape, static_cast<T*>(block), owner);
}

/// A new, uninitialised C-contiguous array whose memory comes from the block cache and goes back to it when numpy
/// frees the array (large outputs are then reused across training steps instead of faulting in fresh pages).
template <typename T>
Array<T> cached_array(const std::vector<py::ssize_t>& shape) {
  return array_over_block<T>(acquire_block(sizeof(T) * element_count(shape)), shape);
}

void register_recurrent(py::module_& m);
void register_stepper(py::module_& m);
void register_attention(py::module_& m);
void register_attention_ops(py::module_& m);
void register_embedding(py::module_& m);
void register_linear(py::module_& m);
void register_decoding(py::module_& m);
void register_attention_decoder(py::module_& m);
void register_optim(py::module_& m);

}  // namespace rnncore::bindings
