// Bindings for the streaming Stepper. Its step() is the one call meant to cost about a microsecond, so it checks its
// single argument here instead of in Python (rnncore.layers creates steppers from already-validated parameters).
// Python (rnncore.ops, rnncore._validation) checks every other argument first; the checks here only keep C++ in
// bounds whatever reaches it (the raw _core class is callable too): a wrong shape raises ValueError.
#include <algorithm>
#include <string>
#include <vector>

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

/// "[2, 3]": an array's shape (as a list), for error messages.
inline std::string shape_text(const py::array& a) {
  return std::string(py::str(py::cast(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()))));
}

/// Raises ValueError unless `a` has shape `shape` (described by `letters`, e.g. "[B, H]").
inline void require_shape(const char* name, const py::array& a, const std::vector<py::ssize_t>& shape,
                          const char* letters) {
  if (a.ndim() == static_cast<py::ssize_t>(shape.size()) && std::equal(shape.begin(), shape.end(), a.shape())) return;
  std::string sizes;
  for (py::ssize_t extent : shape) sizes += (sizes.empty() ? "" : ", ") + std::to_string(extent);
  throw py::value_error(std::string(name) + " must have shape " + letters + " = (" + sizes +
                        (shape.size() == 1 ? ",)" : ")") + ", got shape " + shape_text(a));
}

/// The AttributeError for reading c from a cell with one state (rnncore._validation.no_cell_state's message).
inline py::attribute_error no_cell_state(CellKind kind) {
  return py::attribute_error(std::string("c exists only for an LSTM stepper (cell '") + cell_traits(kind).name +
                             "' has one state, h)");
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
             if (batch < 1) throw py::value_error("batch must be >= 1, got " + std::to_string(batch));
             if (w_ih.ndim() != 2 || w_hh.ndim() != 2 || w_ih.shape(1) < 1 || w_hh.shape(1) < 1)
               throw py::value_error("w_ih [G*H, I] and w_hh [G*H, H] must be 2-D with I, H >= 1, got shapes " +
                                     shape_text(w_ih) + " and " + shape_text(w_hh));
             const py::ssize_t GH = cell_traits(spec.kind).gates * w_hh.shape(1);
             require_shape("w_hh", w_hh, {GH, w_hh.shape(1)}, "[G*H, H]");  // w_hh fixes H, so it is checked first
             require_shape("w_ih", w_ih, {GH, w_ih.shape(1)}, "[G*H, I]");
             if (b_ih) require_shape("b_ih", *b_ih, {GH}, "[G*H]");
             if (b_hh) require_shape("b_hh", *b_hh, {GH}, "[G*H]");
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
             const std::vector<py::ssize_t> shape{s.batch(), s.hidden_size()};
             if (h0) require_shape("h0", *h0, shape, "[B, H]");
             if (c0 && cell_traits(s.spec().kind).states < 2)
               throw py::value_error(std::string("c0 must be None for a one-state cell (cell '") +
                                     cell_traits(s.spec().kind).name + "' has one state, h)");
             if (c0) require_shape("c0", *c0, shape, "[B, H]");
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
                                     shape_text(x));
             const T* data = static_cast<const T*>(x.data());
             {
               py::gil_scoped_release release;
               s.step(data);
             }
             return copy_state(s.h(), B, s.hidden_size());
           },
           py::arg("x"))
      .def_property_readonly("h", [](const Stepper<T>& s) { return copy_state(s.h(), s.batch(), s.hidden_size()); })
      .def_property_readonly("c",
                             [](const Stepper<T>& s) {
                               if (cell_traits(s.spec().kind).states < 2) throw no_cell_state(s.spec().kind);
                               return copy_state(s.c(), s.batch(), s.hidden_size());
                             })
      .def_property_readonly("n_states", [](const Stepper<T>& s) { return cell_traits(s.spec().kind).states; },
                             "The state arrays the cell carries (the C++ cell table's): 2 (h, c) for the LSTM, else 1.");
}

}  // namespace

void register_stepper(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
