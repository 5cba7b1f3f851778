// Bindings for the LSTM, GRU and simple-RNN kernels and their opaque training workspace.
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "rnncore/gru.hpp"
#include "rnncore/lstm.hpp"
#include "rnncore/rnn.hpp"
#include "rnncore/runtime.hpp"

namespace rnncore::bindings {

namespace {

template <typename T>
Array<T> new_array(std::initializer_list<index_t> shape) {
  return cached_array<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

/// A kernel call made ready with the GIL held (its arguments exact, its outputs allocated): run() needs no GIL and
/// touches no Python object; result() then builds the call's Python result with the GIL held. A forward and a
/// backward call of every cell take this shape, so one runner serves single calls and pairs (run_one, run_two).
class ReadyCall {
 public:
  virtual ~ReadyCall() = default;
  virtual double flops() const = 0;
  virtual void run() = 0;
  virtual py::object result() = 0;
};
using Ready = std::unique_ptr<ReadyCall>;  // null: the call is not exact (NotImplemented)

template <typename Run, typename Result>
class LambdaCall final : public ReadyCall {
 public:
  LambdaCall(double flops, Run run, Result result) : flops_(flops), run_(std::move(run)), result_(std::move(result)) {}
  double flops() const override { return flops_; }
  void run() override { run_(); }
  py::object result() override { return result_(); }

 private:
  double flops_;
  Run run_;
  Result result_;
};

template <typename Run, typename Result>
Ready ready(double flops, Run run, Result result) {
  return std::make_unique<LambdaCall<Run, Result>>(flops, std::move(run), std::move(result));
}

/// One call: NotImplemented when not exact, else its result (the kernel runs with the GIL released).
py::object run_one(const Ready& call) {
  if (!call) return not_exact();
  {
    py::gil_scoped_release release;
    call->run();
  }
  return call->result();
}

/// Two independent calls (a bidirectional layer's directions): NotImplemented unless both are exact, else the tuple
/// of their results; run_pair runs them at once on two threads when that is measured faster.
py::object run_two(const Ready& first, const Ready& second) {
  if (!first || !second) return not_exact();
  {
    py::gil_scoped_release release;
    run_pair(first->flops() + second->flops(), [&] { first->run(); }, [&] { second->run(); });
  }
  py::object a = first->result();
  return py::make_tuple(a, second->result());
}

/// `make(T{})` with T the float type of `x` (an ndarray of float32 or float64), or for one-hot inputs given by their
/// indices (x an int64 [T, B] ndarray) the float type of `w_hh`; otherwise null (NotImplemented).
template <typename Make>
Ready ready_by_dtype(py::handle x, py::handle w_hh, Make&& make) {
  const py::ssize_t* shape;
  if (array_shape<float>(x, 3, shape)) return make(float{});
  if (array_shape<double>(x, 3, shape)) return make(double{});
  if (array_shape<index_t>(x, 2, shape)) {
    if (array_shape<float>(w_hh, 2, shape)) return make(float{});
    if (array_shape<double>(w_hh, 2, shape)) return make(double{});
  }
  return nullptr;
}

/// The arguments of one forward call when the whole call is exact (see bindings.hpp): x [T, B, I] fixes the sizes
/// and w_hh [G*H, H] the hidden size; every other array must match them; lengths None or int64 [B] within 1..T
/// (the kernels index by it); training a bool. One-hot inputs come as their indices, x_index int64 [T, B] each in
/// 0..I-1 (the kernels index by them), I then from w_ih [G*H, I]. Otherwise `ok` is false.
template <typename T>
struct ForwardArgs {
  Dims d{};
  const T *x = nullptr, *h0 = nullptr, *c0 = nullptr, *w_ih = nullptr, *w_hh = nullptr, *b_ih = nullptr,
          *b_hh = nullptr;
  const index_t *lengths = nullptr, *x_index = nullptr;
  bool training = false, ok = false;
  std::optional<IndexCopy> len, xi;  // what lengths and x_index point to: the call's own copies (IndexCopy)

  ForwardArgs(const ForwardArgs&) = delete;
  ForwardArgs& operator=(const ForwardArgs&) = delete;
  ForwardArgs(CellKind kind, py::handle x_, py::handle h0_, py::handle c0_, py::handle w_ih_, py::handle w_hh_,
              py::handle b_ih_, py::handle b_hh_, py::handle lengths_, py::handle training_) {
    const py::ssize_t *xs, *ws, *wis;
    if (!array_shape<T>(w_hh_, 2, ws)) return;
    const bool one_hot = array_shape<index_t>(x_, 2, xs);
    if (one_hot) {
      if (!array_shape<T>(w_ih_, 2, wis)) return;
      d = Dims{xs[0], xs[1], wis[1], ws[1]};
    } else {
      if (!array_shape<T>(x_, 3, xs)) return;
      d = Dims{xs[0], xs[1], xs[2], ws[1]};
    }
    const index_t GH = cell_traits(kind).gates * d.H;
    if (d.I < 1 || d.H < 1 || ws[0] != GH) return;
    if (training_.ptr() != Py_True && training_.ptr() != Py_False) return;
    training = training_.ptr() == Py_True;
    const ExactArray<T> xa(one_hot ? py::handle(Py_None) : x_, {d.T, d.B, d.I}, one_hot), wih(w_ih_, {GH, d.I}),
        whh(w_hh_, {GH, d.H}), bih(b_ih_, {GH}, true), bhh(b_hh_, {GH}, true), h(h0_, {d.B, d.H}, true),
        c(c0_, {d.B, d.H}, true);
    const IndexCopy& len = this->len.emplace(lengths_, std::initializer_list<index_t>{d.B}, true);
    const IndexCopy& xi =
        this->xi.emplace(one_hot ? x_ : py::handle(Py_None), std::initializer_list<index_t>{d.T, d.B}, true);
    if (!(xa.ok && xi.ok && wih.ok && whh.ok && bih.ok && bhh.ok && h.ok && c.ok && len.ok)) return;
    for (index_t b = 0; len.data && b < d.B; ++b)
      if (len.data[b] < 1 || len.data[b] > d.T) return;
    for (index_t r = 0; xi.data && r < d.T * d.B; ++r)
      if (xi.data[r] < 0 || xi.data[r] >= d.I) return;
    x = xa.data, h0 = h.data, c0 = c.data, w_ih = wih.data, w_hh = whh.data, b_ih = bih.data, b_hh = bhh.data;
    lengths = len.data, x_index = xi.data;
    ok = true;
  }
};

/// y's array and the view the kernel writes it through: a new C-contiguous array when `out` is None, else `out`
/// itself when exact (StepArray: any element strides, writeable, rows apart) and sharing no memory with the call's
/// arrays `inputs` (numpy.may_share_memory); false (NotImplemented's cue) otherwise.
template <typename T>
bool output_steps(py::handle out, const Dims& d, std::initializer_list<py::handle> inputs, py::object& y,
                  StepView<T>& view) {
  if (out.is_none()) {
    auto a = new_array<T>({d.T, d.B, d.H});
    view = StepView<T>::dense(a.mutable_data(), d.B, d.H);
    y = std::move(a);
    return true;
  }
  const StepArray<T> o(out, d.T, d.B, d.H);
  if (!o.ok || may_share_memory(out, inputs)) return false;
  view = o.view;
  y = py::reinterpret_borrow<py::object>(out);
  return true;
}

/// Forward's result: the arrays, then the workspace (None in inference).
template <typename T, typename... Arrays>
py::tuple with_workspace(std::unique_ptr<Workspace<T>> ws, const Arrays&... arrays) {
  return py::make_tuple(arrays..., ws ? py::cast(std::move(ws)) : py::none());
}

/// The gradients every cell returns after its time loop — dx [T,B,I], dw_ih [G*H,I], dw_hh [G*H,H], db_ih and db_hh
/// [G*H] — allocated only when the kernel asks for them (GradientOutputs; block cache, no GIL needed), then handed
/// to numpy. A bias the forward did not have gets None, as in PyTorch.
template <typename T>
class LateGradients {
 public:
  /// want_dx false: no dx (None), as for one-hot inputs (whose workspace keeps indices).
  LateGradients(const Workspace<T>& ws, bool want_dx)
      : shapes_{{ws.dims.T, ws.dims.B, ws.dims.I}, {ws.w_ih.rows(), ws.dims.I}, {ws.w_hh.rows(), ws.dims.H},
                {ws.w_ih.rows()}, {ws.w_hh.rows()}} {
    out_.want_dx = want_dx && !ws.one_hot;
    out_.allocate = [this](GradientOutputs<T>& o) {
      T** slots[kCount] = {&o.dx, &o.dw_ih, &o.dw_hh, &o.db_ih, &o.db_hh};
      for (int i = o.want_dx ? 0 : 1; i < kCount; ++i) {
        blocks_[i] = acquire_block(sizeof(T) * element_count(shapes_[i]));
        *slots[i] = static_cast<T*>(blocks_[i]);
      }
    };
  }
  LateGradients(const LateGradients&) = delete;
  LateGradients& operator=(const LateGradients&) = delete;
  ~LateGradients() {
    for (void* block : blocks_) release_block(block);  // those not handed to numpy
  }

  GradientOutputs<T>& outputs() { return out_; }

  /// After the kernel (GIL held): (dx, dw_ih, dw_hh, db_ih or None, db_hh or None).
  py::tuple arrays(const Workspace<T>& ws) {
    if (!blocks_[1]) throw std::logic_error("rnncore internal error: backward did not ask for its gradient outputs");
    const bool keep[kCount] = {out_.want_dx, true, true, ws.has_bias_ih, ws.has_bias_hh};
    py::object result[kCount];
    for (int i = 0; i < kCount; ++i) {
      if (!keep[i]) {
        result[i] = py::none();
        continue;
      }
      // Ownership passes to the array's capsule as soon as it exists: drop ours first, so that a failure while
      // building the array cannot free the block twice.
      result[i] = array_over_block<T>(std::exchange(blocks_[i], nullptr), shapes_[i]);
    }
    return py::make_tuple(result[0], result[1], result[2], result[3], result[4]);
  }

 private:
  static constexpr int kCount = 5;
  std::vector<py::ssize_t> shapes_[kCount];
  void* blocks_[kCount] = {};
  GradientOutputs<T> out_;
};

/// The arguments of one backward call when exact: a workspace of `kind` and dtype T, and each upstream gradient
/// None or of its forward's shape: dy [T, B, H] at any element strides (StepArray: read in place, e.g. a
/// direction's columns of a layer's dy), the final states' [B, H] C-contiguous into `finals`. Otherwise null.
/// (need_dx, a bool itself, is checked by the callers: flag_of.)
template <typename T>
const Workspace<T>* exact_backward(CellKind kind, py::handle workspace, std::initializer_list<py::handle> final_grads,
                                   py::handle dy, StepView<const T>& dy_view, const T** finals) {
  if (!py::isinstance<Workspace<T>>(workspace)) return nullptr;
  const auto& ws = workspace.cast<const Workspace<T>&>();
  if (ws.spec.kind != kind) return nullptr;
  const Dims& d = ws.dims;
  const StepArray<const T> dy_a(dy, d.T, d.B, d.H, true);
  if (!dy_a.ok) return nullptr;
  dy_view = dy_a.view;
  int i = 0;
  for (py::handle g : final_grads) {
    const ExactArray<T> g_a(g, {d.B, d.H}, true);
    if (!g_a.ok) return nullptr;
    finals[i++] = g_a.data;
  }
  return &ws;
}

template <typename T>
Ready ready_lstm_forward(py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh,
                         py::handle b_ih, py::handle b_hh, py::handle lengths, py::handle training, py::handle out) {
  auto a = std::make_unique<ForwardArgs<T>>(CellKind::lstm, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, training);
  if (!a->ok) return nullptr;
  const Dims d = a->d;
  py::object y;
  StepView<T> y_view;
  if (!output_steps<T>(out, d, {x, h0, c0, w_ih, w_hh, b_ih, b_hh}, y, y_view)) return nullptr;
  auto h_n = new_array<T>({d.B, d.H}), c_n = new_array<T>({d.B, d.H});
  auto ws = a->training ? std::make_unique<Workspace<T>>() : nullptr;
  T *h_p = h_n.mutable_data(), *c_p = c_n.mutable_data();
  const ForwardArgs<T>* args = a.get();  // (taken before the result's lambda takes a: argument order is unspecified)
  Workspace<T>* ws_p = ws.get();
  return ready(
      forward_flops(4, d),
      [args, d, y_view, h_p, c_p, ws_p] {
        lstm_forward<T>(d, args->x, args->h0, args->c0, args->w_ih, args->w_hh, args->b_ih, args->b_hh, args->lengths,
                        y_view, h_p, c_p, ws_p, args->x_index);
      },
      [a = std::move(a), ws = std::move(ws), y = std::move(y), h_n = std::move(h_n), c_n = std::move(c_n)]() mutable {
        return py::object(with_workspace(std::move(ws), y, h_n, c_n));
      });
}

Ready ready_lstm_forward_any(py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh,
                             py::handle b_ih, py::handle b_hh, py::handle lengths, py::handle training,
                             py::handle out) {
  return ready_by_dtype(x, w_hh, [&](auto type) {
    return ready_lstm_forward<decltype(type)>(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, training, out);
  });
}

py::object lstm_forward_py(py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh,
                           py::handle b_ih, py::handle b_hh, py::handle lengths, py::handle training, py::handle out) {
  return run_one(ready_lstm_forward_any(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, training, out));
}

/// True or False themselves (the exact call's flags), else NotImplemented's cue: false.
bool flag_of(py::handle flag, bool& value) {
  if (flag.ptr() != Py_True && flag.ptr() != Py_False) return false;
  value = flag.ptr() == Py_True;
  return true;
}

template <typename T>
Ready ready_lstm_backward(py::handle workspace, py::handle dy, py::handle dh_n, py::handle dc_n, bool need_dx) {
  StepView<const T> dy_view;
  const T* finals[2];
  const Workspace<T>* ws = exact_backward<T>(CellKind::lstm, workspace, {dh_n, dc_n}, dy, dy_view, finals);
  if (!ws) return nullptr;
  auto g = std::make_unique<LateGradients<T>>(*ws, need_dx);
  auto dh0 = new_array<T>({ws->dims.B, ws->dims.H}), dc0 = new_array<T>({ws->dims.B, ws->dims.H});
  T *dh0_p = dh0.mutable_data(), *dc0_p = dc0.mutable_data();
  LateGradients<T>* g_p = g.get();  // (before the result's lambda takes g)
  return ready(
      2 * forward_flops(4, ws->dims),
      [ws, dy_view, dh_n_p = finals[0], dc_n_p = finals[1], dh0_p, dc0_p, g_p] {
        lstm_backward<T>(*ws, dy_view, dh_n_p, dc_n_p, dh0_p, dc0_p, g_p->outputs());
      },
      [ws, g = std::move(g), dh0 = std::move(dh0), dc0 = std::move(dc0)]() mutable {
        const py::tuple grads = g->arrays(*ws);  // dx, dw_ih, dw_hh, db_ih, db_hh
        return py::object(py::make_tuple(grads[0], dh0, dc0, grads[1], grads[2], grads[3], grads[4]));
      });
}

Ready ready_lstm_backward_any(py::handle workspace, py::handle dy, py::handle dh_n, py::handle dc_n,
                              py::handle need_dx) {
  bool want_dx;
  if (!flag_of(need_dx, want_dx)) return nullptr;
  Ready call = ready_lstm_backward<float>(workspace, dy, dh_n, dc_n, want_dx);
  return call ? std::move(call) : ready_lstm_backward<double>(workspace, dy, dh_n, dc_n, want_dx);
}

py::object lstm_backward_py(py::handle workspace, py::handle dy, py::handle dh_n, py::handle dc_n,
                            py::handle need_dx) {
  return run_one(ready_lstm_backward_any(workspace, dy, dh_n, dc_n, need_dx));
}

/// "tanh" or "relu" (the only names the kernels know), else NotImplemented's cue: false.
bool nonlinearity_of(py::handle name, Nonlinearity& act) {
  if (!PyUnicode_CheckExact(name.ptr())) return false;
  if (PyUnicode_CompareWithASCIIString(name.ptr(), "tanh") == 0) {
    act = Nonlinearity::tanh;
    return true;
  }
  if (PyUnicode_CompareWithASCIIString(name.ptr(), "relu") == 0) {
    act = Nonlinearity::relu;
    return true;
  }
  return false;
}

/// GRU and simple-RNN forward share one shape: (x, h0, w_ih, w_hh, b_ih, b_hh, lengths, training, option, out) ->
/// (y, h_n, workspace or None). kernel(d, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, y, h_n, ws, x_index) runs the cell
/// with the option already applied.
template <CellKind Kind, typename T, typename Kernel>
Ready ready_single_state_forward(py::handle x, py::handle h0, py::handle w_ih, py::handle w_hh, py::handle b_ih,
                                 py::handle b_hh, py::handle lengths, py::handle training, py::handle out,
                                 Kernel kernel) {
  auto a = std::make_unique<ForwardArgs<T>>(Kind, x, h0, py::none(), w_ih, w_hh, b_ih, b_hh, lengths, training);
  if (!a->ok) return nullptr;
  const Dims d = a->d;
  py::object y;
  StepView<T> y_view;
  if (!output_steps<T>(out, d, {x, h0, w_ih, w_hh, b_ih, b_hh}, y, y_view)) return nullptr;
  auto h_n = new_array<T>({d.B, d.H});
  auto ws = a->training ? std::make_unique<Workspace<T>>() : nullptr;
  T* h_p = h_n.mutable_data();
  const ForwardArgs<T>* args = a.get();  // (before the result's lambda takes a)
  Workspace<T>* ws_p = ws.get();
  return ready(
      forward_flops(cell_traits(Kind).gates, d),
      [kernel, args, d, y_view, h_p, ws_p] {
        kernel(d, args->x, args->h0, args->w_ih, args->w_hh, args->b_ih, args->b_hh, args->lengths, y_view, h_p,
               ws_p, args->x_index);
      },
      [a = std::move(a), ws = std::move(ws), y = std::move(y), h_n = std::move(h_n)]() mutable {
        return py::object(with_workspace(std::move(ws), y, h_n));
      });
}

Ready ready_gru_forward_any(py::handle x, py::handle h0, py::handle w_ih, py::handle w_hh, py::handle b_ih,
                            py::handle b_hh, py::handle lengths, py::handle training, py::handle reset_after,
                            py::handle out) {
  if (reset_after.ptr() != Py_True && reset_after.ptr() != Py_False) return nullptr;
  const bool after = reset_after.ptr() == Py_True;
  return ready_by_dtype(x, w_hh, [&](auto type) {
    using T = decltype(type);
    return ready_single_state_forward<CellKind::gru, T>(
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths, training, out,
        [after](const Dims& d, const T* x_, const T* h0_, const T* wi, const T* wh, const T* bi, const T* bh,
                const index_t* len, StepView<T> y, T* h_n, Workspace<T>* ws, const index_t* xi) {
          gru_forward<T>(d, x_, h0_, wi, wh, bi, bh, len, after, y, h_n, ws, xi);
        });
  });
}

py::object gru_forward_py(py::handle x, py::handle h0, py::handle w_ih, py::handle w_hh, py::handle b_ih,
                          py::handle b_hh, py::handle lengths, py::handle training, py::handle reset_after,
                          py::handle out) {
  return run_one(ready_gru_forward_any(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, training, reset_after, out));
}

Ready ready_rnn_forward_any(py::handle x, py::handle h0, py::handle w_ih, py::handle w_hh, py::handle b_ih,
                            py::handle b_hh, py::handle lengths, py::handle training, py::handle nonlinearity,
                            py::handle out) {
  Nonlinearity act;
  if (!nonlinearity_of(nonlinearity, act)) return nullptr;
  return ready_by_dtype(x, w_hh, [&](auto type) {
    using T = decltype(type);
    return ready_single_state_forward<CellKind::rnn, T>(
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths, training, out,
        [act](const Dims& d, const T* x_, const T* h0_, const T* wi, const T* wh, const T* bi, const T* bh,
              const index_t* len, StepView<T> y, T* h_n, Workspace<T>* ws, const index_t* xi) {
          rnn_forward<T>(d, x_, h0_, wi, wh, bi, bh, len, act, y, h_n, ws, xi);
        });
  });
}

py::object rnn_forward_py(py::handle x, py::handle h0, py::handle w_ih, py::handle w_hh, py::handle b_ih,
                          py::handle b_hh, py::handle lengths, py::handle training, py::handle nonlinearity,
                          py::handle out) {
  return run_one(ready_rnn_forward_any(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, training, nonlinearity, out));
}

/// GRU and simple-RNN backward share one signature: (ws, dy, dh_n) -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh).
template <typename T,
          void (*Backward)(const Workspace<T>&, StepView<const T>, const T*, T*, GradientOutputs<T>&)>
Ready ready_single_state_backward(CellKind kind, py::handle workspace, py::handle dy, py::handle dh_n,
                                  bool need_dx) {
  StepView<const T> dy_view;
  const T* finals[1];
  const Workspace<T>* ws = exact_backward<T>(kind, workspace, {dh_n}, dy, dy_view, finals);
  if (!ws) return nullptr;
  auto g = std::make_unique<LateGradients<T>>(*ws, need_dx);
  auto dh0 = new_array<T>({ws->dims.B, ws->dims.H});
  T* dh0_p = dh0.mutable_data();
  LateGradients<T>* g_p = g.get();  // (before the result's lambda takes g)
  return ready(
      2 * forward_flops(cell_traits(kind).gates, ws->dims),
      [ws, dy_view, dh_n_p = finals[0], dh0_p, g_p] {
        Backward(*ws, dy_view, dh_n_p, dh0_p, g_p->outputs());
      },
      [ws, g = std::move(g), dh0 = std::move(dh0)]() mutable {
        const py::tuple grads = g->arrays(*ws);
        return py::object(py::make_tuple(grads[0], dh0, grads[1], grads[2], grads[3], grads[4]));
      });
}

template <CellKind Kind,
          void (*BackwardF)(const Workspace<float>&, StepView<const float>, const float*, float*,
                            GradientOutputs<float>&),
          void (*BackwardD)(const Workspace<double>&, StepView<const double>, const double*, double*,
                            GradientOutputs<double>&)>
Ready ready_single_state_backward_any(py::handle workspace, py::handle dy, py::handle dh_n, py::handle need_dx) {
  bool want_dx;
  if (!flag_of(need_dx, want_dx)) return nullptr;
  Ready call = ready_single_state_backward<float, BackwardF>(Kind, workspace, dy, dh_n, want_dx);
  return call ? std::move(call) : ready_single_state_backward<double, BackwardD>(Kind, workspace, dy, dh_n, want_dx);
}

template <CellKind Kind,
          void (*BackwardF)(const Workspace<float>&, StepView<const float>, const float*, float*,
                            GradientOutputs<float>&),
          void (*BackwardD)(const Workspace<double>&, StepView<const double>, const double*, double*,
                            GradientOutputs<double>&)>
py::object single_state_backward_py(py::handle workspace, py::handle dy, py::handle dh_n, py::handle need_dx) {
  return run_one(ready_single_state_backward_any<Kind, BackwardF, BackwardD>(workspace, dy, dh_n, need_dx));
}

// ---- pairs: a bidirectional layer's two directions in one call -------------------------------------------------

/// Whether a pair's calls are independent: neither call's `out` (its last argument; None: a new array) may share an
/// element with any array of the other call (one would write what the other reads or writes while both run). Byte
/// extents first; where they meet (a layer's two directions write column blocks of one array), numpy.shares_memory
/// decides exactly (a problem too hard for its bounded search counts as shared).
bool independent_outputs(const py::tuple& first, const py::tuple& second) {
  // whether `out` shares an element with one of others[0, n)
  auto meets = [](py::handle out, const py::tuple& others, std::size_t n) {
    if (out.is_none()) return false;
    for (std::size_t i = 0; i < n; ++i) {
      const py::handle other = others[i];
      if (!may_share_memory(out, {other})) continue;
      // (looked up once, GIL-safely, and kept for the process: a static py::object would outlive the interpreter)
      PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> storage;
      const py::object& shares_memory =
          storage.call_once_and_store_result([] { return py::module_::import("numpy").attr("shares_memory"); })
              .get_stored();
      try {
        if (shares_memory(out, other, py::arg("max_work") = 1 << 16).cast<bool>()) return true;
      } catch (const py::error_already_set&) {  // numpy.exceptions.TooHardError
        return true;
      }
    }
    return false;
  };
  const py::handle first_out = first[first.size() - 1], second_out = second[second.size() - 1];
  // second's out against first's inputs only: against first's out the first test already looked
  return !meets(first_out, second, second.size()) && !meets(second_out, first, first.size() - 1);
}

/// prepare(t[0], ..., t[N-1]): a call made ready from a tuple of its arguments.
template <typename Prepare, std::size_t... I>
Ready ready_from_tuple(Prepare&& prepare, const py::tuple& t, std::index_sequence<I...>) {
  return prepare(t[I]...);
}

/// `<cell>_forward_pair` / `_backward_pair`(first, second): each a tuple of the single call's N arguments,
/// positionally (a forward's out last). Returns the tuple of the two results, or NotImplemented when either call is
/// not exact or (forwards) their outputs are not independent.
template <std::size_t N, typename Prepare>
py::object call_pair(const py::tuple& first, const py::tuple& second, bool forwards, Prepare&& prepare) {
  if (first.size() != N || second.size() != N || (forwards && !independent_outputs(first, second)))
    return not_exact();
  const Ready a = ready_from_tuple(prepare, first, std::make_index_sequence<N>{});
  const Ready b = a ? ready_from_tuple(prepare, second, std::make_index_sequence<N>{}) : nullptr;
  return run_two(a, b);
}

template <typename T>
void register_dtype(py::module_& m) {
  const std::string name = std::string("Workspace_") + dtype_name<T>();
  py::class_<Workspace<T>>(m, name.c_str(),
                           "What a training-mode forward keeps for its backward (opaque; freed when dropped).")
      .def_property_readonly("cell", [](const Workspace<T>& w) { return cell_traits(w.spec.kind).name; })
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
      .def_property_readonly("one_hot", [](const Workspace<T>& w) { return w.one_hot; })
      .def_property_readonly("nbytes", &Workspace<T>::bytes);

}

}  // namespace

void register_recurrent(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
  // Each returns NotImplemented unless the call is exact (see bindings.hpp): rnncore.ops then validates and calls
  // again with the checked arguments.
  using py::arg;
  m.def("lstm_forward", &lstm_forward_py, arg("x"), arg("h0"), arg("c0"), arg("w_ih"), arg("w_hh"), arg("b_ih"),
        arg("b_hh"), arg("lengths"), arg("training"), arg("out") = py::none());
  m.def("lstm_backward", &lstm_backward_py, arg("workspace"), arg("dy"), arg("dh_n"), arg("dc_n"), arg("need_dx"));
  m.def("gru_forward", &gru_forward_py, arg("x"), arg("h0"), arg("w_ih"), arg("w_hh"), arg("b_ih"), arg("b_hh"),
        arg("lengths"), arg("training"), arg("reset_after"), arg("out") = py::none());
  m.def("gru_backward", &single_state_backward_py<CellKind::gru, gru_backward<float>, gru_backward<double>>,
        arg("workspace"), arg("dy"), arg("dh_n"), arg("need_dx"));
  m.def("rnn_forward", &rnn_forward_py, arg("x"), arg("h0"), arg("w_ih"), arg("w_hh"), arg("b_ih"), arg("b_hh"),
        arg("lengths"), arg("training"), arg("nonlinearity"), arg("out") = py::none());
  m.def("rnn_backward", &single_state_backward_py<CellKind::rnn, rnn_backward<float>, rnn_backward<double>>,
        arg("workspace"), arg("dy"), arg("dh_n"), arg("need_dx"));
  // The two directions of a bidirectional layer in one call (each argument a tuple of the single call's arguments):
  // at once on two threads when that is measured faster (rnncore::run_pair). Private: rnncore.layers calls them.
  m.def("_lstm_forward_pair", [](const py::tuple& a, const py::tuple& b) {
    return call_pair<10>(a, b, true, &ready_lstm_forward_any);
  });
  m.def("_gru_forward_pair", [](const py::tuple& a, const py::tuple& b) {
    return call_pair<10>(a, b, true, &ready_gru_forward_any);
  });
  m.def("_rnn_forward_pair", [](const py::tuple& a, const py::tuple& b) {
    return call_pair<10>(a, b, true, &ready_rnn_forward_any);
  });
  m.def("_lstm_backward_pair", [](const py::tuple& a, const py::tuple& b) {
    return call_pair<5>(a, b, false, &ready_lstm_backward_any);
  });
  m.def("_gru_backward_pair", [](const py::tuple& a, const py::tuple& b) {
    return call_pair<4>(a, b, false,
                         &ready_single_state_backward_any<CellKind::gru, gru_backward<float>, gru_backward<double>>);
  });
  m.def("_rnn_backward_pair", [](const py::tuple& a, const py::tuple& b) {
    return call_pair<4>(a, b, false,
                         &ready_single_state_backward_any<CellKind::rnn, rnn_backward<float>, rnn_backward<double>>);
  });
}

}  // namespace rnncore::bindings
