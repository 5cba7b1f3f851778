// Bindings for the masked softmax.
#include "bindings.hpp"
#include "rnncore/attention.hpp"

namespace rnncore::bindings {

namespace {

template <typename T>
Array<T> softmax(const Array<T>& e, const std::optional<py::array_t<std::uint8_t, py::array::c_style>>& mask) {
  Array<T> alpha = cached_array<T>(std::vector<py::ssize_t>(e.shape(), e.shape() + e.ndim()));
  const index_t cols = e.shape(e.ndim() - 1);
  const index_t rows = cols == 0 ? 0 : e.size() / cols;
  const std::uint8_t* m = data_or_null(mask);
  T* out = alpha.mutable_data();
  py::gil_scoped_release release;
  masked_softmax<T>(rows, cols, e.data(), m, out);
  return alpha;
}

template <typename T>
Array<T> softmax_backward(const Array<T>& alpha, const Array<T>& dalpha) {
  Array<T> de = cached_array<T>(std::vector<py::ssize_t>(alpha.shape(), alpha.shape() + alpha.ndim()));
  const index_t cols = alpha.shape(alpha.ndim() - 1);
  const index_t rows = cols == 0 ? 0 : alpha.size() / cols;
  T* out = de.mutable_data();
  py::gil_scoped_release release;
  masked_softmax_backward<T>(rows, cols, alpha.data(), dalpha.data(), out);
  return de;
}

template <typename T>
void register_dtype(py::module_& m) {
  m.def("masked_softmax", &softmax<T>, py::arg("e").noconvert(), py::arg("mask").noconvert());
  m.def("masked_softmax_backward", &softmax_backward<T>, py::arg("alpha").noconvert(), py::arg("dalpha").noconvert());
}

}  // namespace

void register_attention(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
