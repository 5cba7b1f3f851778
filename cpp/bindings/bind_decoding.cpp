// Bindings for decoding's row-wise pieces (rnncore/decoding.hpp).
#include <cstdint>

#include "bindings.hpp"
#include "rnncore/decoding.hpp"

namespace rnncore::bindings {

namespace {

// scores [R, C], k, offsets [R] float64 or None -> (columns [R, k] int64, values [R, k] float64).
template <typename T>
py::tuple top_k(const Array<T>& scores, index_t k, const std::optional<Array<double>>& offsets) {
  const index_t R = scores.shape(0), C = scores.shape(1);
  Array<std::int64_t> columns({R, k});
  Array<double> values({R, k});
  std::int64_t* cols = columns.mutable_data();
  double* vals = values.mutable_data();
  const double* offs = data_or_null(offsets);
  {
    py::gil_scoped_release release;
    top_k_rows<T>(R, C, k, scores.data(), offs, cols, vals);
  }
  return py::make_tuple(columns, values);
}

// x [R, C] -> log_softmax over each row, [R, C].
template <typename T>
Array<T> log_softmax(const Array<T>& x) {
  const index_t R = x.shape(0), C = x.shape(1);
  Array<T> y = cached_array<T>({R, C});
  T* out = y.mutable_data();
  py::gil_scoped_release release;
  log_softmax_rows<T>(R, C, x.data(), out);
  return y;
}

// logits [R, C], targets [R] int64, keep [R] uint8 or None, label_smoothing -> (losses [R], dlogits [R, C]);
// NotImplemented when a kept row's target is not a class (the Python checks then name it).
template <typename T>
py::object softmax_cross_entropy(const Array<T>& logits, const Array<std::int64_t>& targets,
                                 const OptionalArray<std::uint8_t>& keep, double label_smoothing) {
  const index_t R = logits.shape(0), C = logits.shape(1);
  if (!kept_targets_in_range(R, C, targets.data(), data_or_null(keep))) return not_exact();
  Array<T> losses({R});
  Array<T> dlogits({R, C});
  T* loss_out = losses.mutable_data();
  T* grad_out = dlogits.mutable_data();
  {
    py::gil_scoped_release release;
    softmax_cross_entropy_rows<T>(R, C, logits.data(), targets.data(), data_or_null(keep), T(label_smoothing),
                                  loss_out, grad_out);
  }
  return py::make_tuple(losses, dlogits);
}

template <typename T>
void register_dtype(py::module_& m) {
  m.def("top_k", &top_k<T>, py::arg("scores").noconvert(), py::arg("k"), py::arg("offsets").noconvert());
  m.def("log_softmax", &log_softmax<T>, py::arg("x").noconvert());
  m.def("softmax_cross_entropy", &softmax_cross_entropy<T>, py::arg("logits").noconvert(),
        py::arg("targets").noconvert(), py::arg("keep").noconvert(), py::arg("label_smoothing"));
}

}  // namespace

void register_decoding(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
