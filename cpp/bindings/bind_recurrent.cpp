// Bindings for the LSTM, GRU and simple-RNN kernels and their opaque training workspace.
#include <memory>
#include <string>

#include "bindings.hpp"
#include "rnncore/gru.hpp"
#include "rnncore/lstm.hpp"
#include "rnncore/rnn.hpp"

namespace rnncore::bindings {

namespace {

const char* cell_name(CellKind kind) {
  switch (kind) {
    case CellKind::lstm: return "lstm";
    case CellKind::gru: return "gru";
    case CellKind::rnn: return "rnn";
  }
  return "?";
}

/// The sizes of a forward call, read from x [T, B, I] and w_hh [G*H, H].
template <typename T>
Dims dims_of(const Array<T>& x, const Array<T>& w_hh) {
  return Dims{x.shape(0), x.shape(1), x.shape(2), w_hh.shape(1)};
}

template <typename T>
Array<T> new_array(std::initializer_list<index_t> shape) {
  return cached_array<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

/// Forward's result: the arrays, then the workspace (None in inference).
template <typename T>
py::tuple with_workspace(py::tuple arrays, std::unique_ptr<Workspace<T>> ws) {
  py::list out(arrays);
  out.append(ws ? py::cast(std::move(ws)) : py::none());
  return py::tuple(out);
}

/// The gradients every cell returns: dx [T,B,I], dw_ih [G*H,I], dw_hh [G*H,H], db_ih and db_hh [G*H].
template <typename T>
struct ParameterGradients {
  Array<T> dx, dw_ih, dw_hh, db_ih, db_hh;
  explicit ParameterGradients(const Workspace<T>& ws)
      : dx(new_array<T>({ws.dims.T, ws.dims.B, ws.dims.I})),
        dw_ih(new_array<T>({ws.w_ih.rows(), ws.dims.I})),
        dw_hh(new_array<T>({ws.w_hh.rows(), ws.dims.H})),
        db_ih(new_array<T>({ws.w_ih.rows()})),
        db_hh(new_array<T>({ws.w_hh.rows()})) {}
};

template <typename T>
py::tuple lstm_forward_py(const Array<T>& x, const OptionalArray<T>& h0, const OptionalArray<T>& c0,
                          const Array<T>& w_ih, const Array<T>& w_hh, const OptionalArray<T>& b_ih,
                          const OptionalArray<T>& b_hh, const Lengths& lengths, bool training) {
  const Dims d = dims_of(x, w_hh);
  auto y = new_array<T>({d.T, d.B, d.H}), h_n = new_array<T>({d.B, d.H}), c_n = new_array<T>({d.B, d.H});
  auto ws = training ? std::make_unique<Workspace<T>>() : nullptr;
  T *y_p = y.mutable_data(), *h_p = h_n.mutable_data(), *c_p = c_n.mutable_data();
  {
    py::gil_scoped_release release;
    lstm_forward<T>(d, x.data(), data_or_null(h0), data_or_null(c0), w_ih.data(), w_hh.data(), data_or_null(b_ih),
                    data_or_null(b_hh), data_or_null(lengths), y_p, h_p, c_p, ws.get());
  }
  return with_workspace(py::make_tuple(y, h_n, c_n), std::move(ws));
}

template <typename T>
py::tuple lstm_backward_py(const Workspace<T>& ws, const OptionalArray<T>& dy, const OptionalArray<T>& dh_n,
                           const OptionalArray<T>& dc_n) {
  ParameterGradients<T> g(ws);
  auto dh0 = new_array<T>({ws.dims.B, ws.dims.H}), dc0 = new_array<T>({ws.dims.B, ws.dims.H});
  T *dh0_p = dh0.mutable_data(), *dc0_p = dc0.mutable_data(), *dx_p = g.dx.mutable_data(),
    *dwih_p = g.dw_ih.mutable_data(), *dwhh_p = g.dw_hh.mutable_data(), *dbih_p = g.db_ih.mutable_data(),
    *dbhh_p = g.db_hh.mutable_data();
  {
    py::gil_scoped_release release;
    lstm_backward<T>(ws, data_or_null(dy), data_or_null(dh_n), data_or_null(dc_n), dx_p, dh0_p, dc0_p, dwih_p, dwhh_p,
                     dbih_p, dbhh_p);
  }
  return py::make_tuple(g.dx, dh0, dc0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh);
}

template <typename T>
py::tuple gru_forward_py(const Array<T>& x, const OptionalArray<T>& h0, const Array<T>& w_ih, const Array<T>& w_hh,
                         const OptionalArray<T>& b_ih, const OptionalArray<T>& b_hh, const Lengths& lengths,
                         bool training, bool reset_after) {
  const Dims d = dims_of(x, w_hh);
  auto y = new_array<T>({d.T, d.B, d.H}), h_n = new_array<T>({d.B, d.H});
  auto ws = training ? std::make_unique<Workspace<T>>() : nullptr;
  T *y_p = y.mutable_data(), *h_p = h_n.mutable_data();
  {
    py::gil_scoped_release release;
    gru_forward<T>(d, x.data(), data_or_null(h0), w_ih.data(), w_hh.data(), data_or_null(b_ih), data_or_null(b_hh),
                   data_or_null(lengths), reset_after, y_p, h_p, ws.get());
  }
  return with_workspace(py::make_tuple(y, h_n), std::move(ws));
}

template <typename T>
py::tuple rnn_forward_py(const Array<T>& x, const OptionalArray<T>& h0, const Array<T>& w_ih, const Array<T>& w_hh,
                         const OptionalArray<T>& b_ih, const OptionalArray<T>& b_hh, const Lengths& lengths,
                         bool training, const std::string& nonlinearity) {
  const Dims d = dims_of(x, w_hh);
  const Nonlinearity act = nonlinearity == "relu" ? Nonlinearity::relu : Nonlinearity::tanh;
  auto y = new_array<T>({d.T, d.B, d.H}), h_n = new_array<T>({d.B, d.H});
  auto ws = training ? std::make_unique<Workspace<T>>() : nullptr;
  T *y_p = y.mutable_data(), *h_p = h_n.mutable_data();
  {
    py::gil_scoped_release release;
    rnn_forward<T>(d, x.data(), data_or_null(h0), w_ih.data(), w_hh.data(), data_or_null(b_ih), data_or_null(b_hh),
                   data_or_null(lengths), act, y_p, h_p, ws.get());
  }
  return with_workspace(py::make_tuple(y, h_n), std::move(ws));
}

/// GRU and simple-RNN backward share one signature: (ws, dy, dh_n) -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh).
template <typename T, void (*Backward)(const Workspace<T>&, const T*, const T*, T*, T*, T*, T*, T*, T*)>
py::tuple single_state_backward_py(const Workspace<T>& ws, const OptionalArray<T>& dy, const OptionalArray<T>& dh_n) {
  ParameterGradients<T> g(ws);
  auto dh0 = new_array<T>({ws.dims.B, ws.dims.H});
  T *dh0_p = dh0.mutable_data(), *dx_p = g.dx.mutable_data(), *dwih_p = g.dw_ih.mutable_data(),
    *dwhh_p = g.dw_hh.mutable_data(), *dbih_p = g.db_ih.mutable_data(), *dbhh_p = g.db_hh.mutable_data();
  {
    py::gil_scoped_release release;
    Backward(ws, data_or_null(dy), data_or_null(dh_n), dx_p, dh0_p, dwih_p, dwhh_p, dbih_p, dbhh_p);
  }
  return py::make_tuple(g.dx, dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh);
}

template <typename T>
void register_dtype(py::module_& m) {
  const std::string name = std::string("Workspace_") + dtype_name<T>();
  py::class_<Workspace<T>>(m, name.c_str(),
                           "What a training-mode forward keeps for its backward (opaque; freed when dropped).")
      .def_property_readonly("cell", [](const Workspace<T>& w) { return cell_name(w.spec.kind); })
      .def_property_readonly("reset_after", [](const Workspace<T>& w) { return w.spec.reset_after; })
      .def_property_readonly("nonlinearity", [](const Workspace<T>& w) {
        return w.spec.nonlinearity == Nonlinearity::relu ? "relu" : "tanh";
      })
      .def_property_readonly("dtype", [](const Workspace<T>&) { return dtype_name<T>(); })
      .def_property_readonly("T", [](const Workspace<T>& w) { return w.dims.T; })
      .def_property_readonly("B", [](const Workspace<T>& w) { return w.dims.B; })
      .def_property_readonly("I", [](const Workspace<T>& w) { return w.dims.I; })
      .def_property_readonly("H", [](const Workspace<T>& w) { return w.dims.H; })
      .def_property_readonly("has_bias_ih", [](const Workspace<T>& w) { return w.has_bias_ih; })
      .def_property_readonly("has_bias_hh", [](const Workspace<T>& w) { return w.has_bias_hh; })
      .def_property_readonly("nbytes", &Workspace<T>::bytes);

  using py::arg;
  m.def("lstm_forward", &lstm_forward_py<T>, arg("x").noconvert(), arg("h0").noconvert(), arg("c0").noconvert(),
        arg("w_ih").noconvert(), arg("w_hh").noconvert(), arg("b_ih").noconvert(), arg("b_hh").noconvert(),
        arg("lengths").noconvert(), arg("training"));
  m.def("lstm_backward", &lstm_backward_py<T>, arg("workspace"), arg("dy").noconvert(), arg("dh_n").noconvert(),
        arg("dc_n").noconvert());
  m.def("gru_forward", &gru_forward_py<T>, arg("x").noconvert(), arg("h0").noconvert(), arg("w_ih").noconvert(),
        arg("w_hh").noconvert(), arg("b_ih").noconvert(), arg("b_hh").noconvert(), arg("lengths").noconvert(),
        arg("training"), arg("reset_after"));
  m.def("gru_backward", &single_state_backward_py<T, gru_backward<T>>, arg("workspace"), arg("dy").noconvert(),
        arg("dh_n").noconvert());
  m.def("rnn_forward", &rnn_forward_py<T>, arg("x").noconvert(), arg("h0").noconvert(), arg("w_ih").noconvert(),
        arg("w_hh").noconvert(), arg("b_ih").noconvert(), arg("b_hh").noconvert(), arg("lengths").noconvert(),
        arg("training"), arg("nonlinearity"));
  m.def("rnn_backward", &single_state_backward_py<T, rnn_backward<T>>, arg("workspace"), arg("dy").noconvert(),
        arg("dh_n").noconvert());
}

}  // namespace

void register_recurrent(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
