// Bindings for the streaming Stepper. Its step() is the one call meant to cost about a microsecond, so it checks its
// single argument here instead of in Python (rnncore.layers creates steppers from already-validated parameters).
#include <string>

#include "bindings.hpp"
#include "rnncore/stepper.hpp"

namespace rnncore::bindings {

namespace {

template <typename T>
Array<T> copy_state(const T* data, index_t B, index_t H) {
  Array<T> out = cached_array<T>({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(H)});
  std::copy_n(data, B * H, out.mutable_data());
  return out;
}

template <typename T>
void register_dtype(py::module_& m) {
  const std::string name = std::string("Stepper_") + dtype_name<T>();
  py::class_<Stepper<T>>(m, name.c_str(), "One recurrent step per call, weights prepared once, state kept.")
      .def(py::init([](const std::string& cell, bool reset_after, const std::string& nonlinearity, index_t batch,
                       const Array<T>& w_ih, const Array<T>& w_hh, const OptionalArray<T>& b_ih,
                       const OptionalArray<T>& b_hh) {
             CellSpec spec;
             if (!detail::cell_kind_named(cell, spec.kind))
               throw py::value_error("cell must be one of " + detail::cell_names_quoted() + ", got " +
                                     std::string(py::repr(py::str(cell))));
             if (nonlinearity != "tanh" && nonlinearity != "relu")
               throw py::value_error("nonlinearity must be one of 'tanh', 'relu', got " +
                                     std::string(py::repr(py::str(nonlinearity))));
             spec.reset_after = reset_after;
             spec.nonlinearity = nonlinearity == "relu" ? Nonlinearity::relu : Nonlinearity::tanh;
             return std::make_unique<Stepper<T>>(spec, w_ih.shape(1), w_hh.shape(1), batch, w_ih.data(),
                                                 w_hh.data(), data_or_null(b_ih), data_or_null(b_hh));
           }),
           py::arg("cell"), py::arg("reset_after"), py::arg("nonlinearity"), py::arg("batch"),
           py::arg("w_ih").noconvert(), py::arg("w_hh").noconvert(), py::arg("b_ih").noconvert(),
           py::arg("b_hh").noconvert())
      .def("reset",
           [](Stepper<T>& s, const OptionalArray<T>& h0, const OptionalArray<T>& c0) {
             s.reset(data_or_null(h0), data_or_null(c0));
           },
           py::arg("h0").noconvert(), py::arg("c0").noconvert())
      .def("step",
           [](Stepper<T>& s, const py::array& x) {
             const index_t B = s.batch(), I = s.input_size();
             const bool exact = py::isinstance<Array<T>>(x) && x.dtype().is(py::dtype::of<T>());
             if (!exact || x.ndim() != 2 || x.shape(0) != B || x.shape(1) != I ||
                 !(x.flags() & py::array::c_style))
               throw py::value_error("x must be a C-contiguous " + std::string(dtype_name<T>()) +
                                     " array of shape [B, I] = (" + std::to_string(B) + ", " + std::to_string(I) +
                                     "), got dtype " + std::string(py::str(x.dtype())) + " and shape " +
                                     std::string(py::str(py::cast(std::vector<py::ssize_t>(
                                         x.shape(), x.shape() + x.ndim())))));
             const T* data = static_cast<const T*>(x.data());
             {
               py::gil_scoped_release release;
               s.step(data);
             }
             return copy_state(s.h(), B, s.hidden_size());
           },
           py::arg("x"))
      .def_property_readonly("h", [](const Stepper<T>& s) { return copy_state(s.h(), s.batch(), s.hidden_size()); })
      .def_property_readonly("c", [](const Stepper<T>& s) { return copy_state(s.c(), s.batch(), s.hidden_size()); });
}

}  // namespace

void register_stepper(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
