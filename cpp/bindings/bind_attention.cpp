// Bindings for the masked softmax and the fused masked softmax + context (rnncore/attention.hpp).
// rnncore.ops.attention validates every argument first (shapes, dtypes, lengths in 0..Tx, the mask as uint8 of e's
// shape).
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

// e [B, Tx] or [B, Ty, Tx], values [B, Tx, Dv], lengths int64 [B] in 0..Tx or None, mask uint8 of e's shape or None
// -> (context [B, Dv] or [B, Ty, Dv], alpha of e's shape).
template <typename T>
py::tuple context_forward(const Array<T>& e, const Array<T>& values, const Lengths& lengths,
                          const std::optional<py::array_t<std::uint8_t, py::array::c_style>>& mask) {
  const bool steps = e.ndim() == 3;
  const index_t B = e.shape(0), Ty = steps ? e.shape(1) : 1, Tx = e.shape(e.ndim() - 1), Dv = values.shape(2);
  Array<T> alpha = cached_array<T>(std::vector<py::ssize_t>(e.shape(), e.shape() + e.ndim()));
  Array<T> context = cached_array<T>(steps ? std::vector<py::ssize_t>{B, Ty, Dv} : std::vector<py::ssize_t>{B, Dv});
  const T *scores = e.data(), *v = values.data();
  const index_t* len = lengths ? lengths->data() : nullptr;
  const std::uint8_t* m = data_or_null(mask);
  T *a = alpha.mutable_data(), *ctx = context.mutable_data();
  {
    py::gil_scoped_release release;
    attention_context<T>(B, Ty, Tx, Dv, scores, len, m, v, a, ctx);
  }
  return py::make_tuple(std::move(context), std::move(alpha));
}

// alpha [B, Tx] or [B, Ty, Tx], values [B, Tx, Dv], dcontext [B, Dv] or [B, Ty, Dv], dalpha of alpha's shape or None
// -> (de of alpha's shape, dvalues [B, Tx, Dv]).
template <typename T>
py::tuple context_backward(const Array<T>& alpha, const Array<T>& values, const Array<T>& dcontext,
                           const OptionalArray<T>& dalpha) {
  const bool steps = alpha.ndim() == 3;
  const index_t B = alpha.shape(0), Ty = steps ? alpha.shape(1) : 1, Tx = alpha.shape(alpha.ndim() - 1);
  const index_t Dv = values.shape(2);
  Array<T> de = cached_array<T>(std::vector<py::ssize_t>(alpha.shape(), alpha.shape() + alpha.ndim()));
  Array<T> dvalues = cached_array<T>({B, Tx, Dv});
  const T *a = alpha.data(), *v = values.data(), *dctx = dcontext.data(), *da = data_or_null(dalpha);
  T *de_out = de.mutable_data(), *dv_out = dvalues.mutable_data();
  {
    py::gil_scoped_release release;
    attention_context_backward<T>(B, Ty, Tx, Dv, a, v, dctx, da, de_out, dv_out);
  }
  return py::make_tuple(std::move(de), std::move(dvalues));
}

template <typename T>
void register_dtype(py::module_& m) {
  m.def("masked_softmax", &softmax<T>, py::arg("e").noconvert(), py::arg("mask").noconvert());
  m.def("masked_softmax_backward", &softmax_backward<T>, py::arg("alpha").noconvert(), py::arg("dalpha").noconvert());
  m.def("attention_context", &context_forward<T>, py::arg("e").noconvert(), py::arg("values").noconvert(),
        py::arg("lengths").noconvert(), py::arg("mask").noconvert());
  m.def("attention_context_backward", &context_backward<T>, py::arg("alpha").noconvert(),
        py::arg("values").noconvert(), py::arg("dcontext").noconvert(), py::arg("dalpha").noconvert());
}

}  // namespace

void register_attention(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
