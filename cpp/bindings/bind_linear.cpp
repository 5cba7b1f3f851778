// Bindings for the dense layer's products (rnncore/linear.hpp).
#include "bindings.hpp"
#include "rnncore/linear.hpp"

namespace rnncore::bindings {

namespace {

// x [N, I], weight [O, I], bias [O] or None -> y [N, O] (rnncore.ops.linear_forward checks every shape and dtype).
template <typename T>
Array<T> forward(const Array<T>& x, const Array<T>& weight, const OptionalArray<T>& bias) {
  const index_t N = x.shape(0), I = x.shape(1), O = weight.shape(0);
  Array<T> y = cached_array<T>({N, O});
  const T* b = data_or_null(bias);
  T* out = y.mutable_data();
  py::gil_scoped_release release;
  linear_forward<T>(N, I, O, x.data(), weight.data(), b, out);
  return y;
}

// dweight [O, I] and dbias [O] (or None) accumulated in place; returns dx [N, I], or None when need_dx is false.
template <typename T>
py::object backward(const Array<T>& x, const Array<T>& weight, const Array<T>& dy, Array<T>& dweight,
                    OptionalArray<T> dbias, bool need_dx) {
  const index_t N = x.shape(0), I = x.shape(1), O = weight.shape(0);
  std::optional<Array<T>> dx;
  if (need_dx) dx = cached_array<T>({N, I});
  T* dw = dweight.mutable_data();
  T* db = dbias ? dbias->mutable_data() : nullptr;
  T* dx_out = dx ? dx->mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    linear_backward<T>(N, I, O, x.data(), weight.data(), dy.data(), dw, db, dx_out);
  }
  return dx ? py::object(std::move(*dx)) : py::none();
}

template <typename T>
void register_dtype(py::module_& m) {
  m.def("linear_forward", &forward<T>, py::arg("x").noconvert(), py::arg("weight").noconvert(),
        py::arg("bias").noconvert());
  m.def("linear_backward", &backward<T>, py::arg("x").noconvert(), py::arg("weight").noconvert(),
        py::arg("dy").noconvert(), py::arg("dweight").noconvert(), py::arg("dbias").noconvert(), py::arg("need_dx"));
}

}  // namespace

void register_linear(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
