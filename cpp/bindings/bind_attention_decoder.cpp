// Bindings for the fused attention decoder (rnncore/attention_decoder.hpp) and its opaque training workspace.
// The forward recognises the exact call itself (bindings.hpp) and answers anything else with NotImplemented, upon
// which rnncore.ops.attention_decoder_forward checks every argument and calls again; the backward takes exact arrays
// only (noconvert), checked by rnncore.ops first.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "rnncore/attention_decoder.hpp"

namespace rnncore::bindings {

namespace {

const char* score_name(AttentionScore s) { return s == AttentionScore::additive ? "additive" : "dot"; }
const char* position_name(AttentionPosition p) { return p == AttentionPosition::before ? "before" : "after"; }

template <typename T>
Array<T> new_array(std::vector<py::ssize_t> shape) {
  return cached_array<T>(std::move(shape));
}

/// 0 or 1 when `name` is exactly the string a or b, else -1.
int which_of(py::handle name, const char* a, const char* b) {
  if (!PyUnicode_CheckExact(name.ptr())) return -1;
  if (PyUnicode_CompareWithASCIIString(name.ptr(), a) == 0) return 0;
  if (PyUnicode_CompareWithASCIIString(name.ptr(), b) == 0) return 1;
  return -1;
}

/// A bool argument given as True or False themselves, else -1.
int bool_of(py::handle flag) { return flag.ptr() == Py_True ? 1 : flag.ptr() == Py_False ? 0 : -1; }

/// The arguments of one forward call when the whole call is exact (the rules of
/// rnncore._validation.decoder_arguments, which the tests hold the two to): every array an exact C-contiguous ndarray
/// of T and of its shape, lengths None or int64 [B] within 0..Tx, the options as the op's values; otherwise `ok` is
/// false and rnncore.ops validates (naming the argument) and calls again with the checked arguments. A session's
/// `sources` (None, or int64 [B] within 0..N-1) makes keys, values and lengths N sources' (N = keys' first extent).
template <typename T>
struct DecoderCallArgs {
  DecoderSpec spec;
  DecoderDims d;
  DecoderArguments<T> a;
  bool training = false, ok = false;
  std::optional<IndexCopy> len, src;  // the lengths and sources a.lengths, a.sources point to: the call's own copies

  DecoderCallArgs(const DecoderCallArgs&) = delete;
  DecoderCallArgs& operator=(const DecoderCallArgs&) = delete;
  DecoderCallArgs(py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh, py::handle b_ih,
                  py::handle b_hh, py::handle keys, py::handle values, py::handle lengths, py::handle cell,
                  py::handle reset_after, py::handle nonlinearity, py::handle score, py::handle w_q, py::handle b_a,
                  py::handle w_v, py::handle score_bias, py::handle energy_activation, py::handle position,
                  py::handle input_feeding, py::handle w_c, py::handle b_c, py::handle o0, py::handle training_,
                  py::handle sources = py::none()) {
    if (!PyUnicode_CheckExact(cell.ptr())) return;
    const char* cell_name = PyUnicode_AsUTF8(cell.ptr());
    if (cell_name == nullptr) {  // (not UTF-8 encodable: the Python checks name it)
      PyErr_Clear();
      return;
    }
    if (!detail::cell_kind_named(cell_name, spec.cell.kind)) return;
    const int after_reset = bool_of(reset_after), relu = which_of(nonlinearity, "tanh", "relu");
    const int dot = which_of(score, "additive", "dot"), after = which_of(position, "before", "after");
    const int feeding = bool_of(input_feeding), train = bool_of(training_);
    if (after_reset < 0 || relu < 0 || dot < 0 || after < 0 || feeding < 0 || train < 0) return;
    const bool relu_energy = !energy_activation.is_none();
    if (relu_energy && (!PyUnicode_CheckExact(energy_activation.ptr()) ||
                        PyUnicode_CompareWithASCIIString(energy_activation.ptr(), "relu") != 0))
      return;
    spec.cell.reset_after = after_reset == 1;
    spec.cell.nonlinearity = relu == 1 ? Nonlinearity::relu : Nonlinearity::tanh;
    spec.score = dot == 1 ? AttentionScore::dot : AttentionScore::additive;
    spec.position = after == 1 ? AttentionPosition::after : AttentionPosition::before;
    spec.input_feeding = feeding == 1;
    spec.relu_energy = relu_energy;
    training = train == 1;
    const bool lstm = spec.cell.kind == CellKind::lstm, additive = dot == 0;
    if ((after == 0 && spec.input_feeding) || (!lstm && !c0.is_none())) return;

    const py::ssize_t *xs, *hs, *ks, *vs;
    if (!array_shape<T>(x, 3, xs) || !array_shape<T>(w_hh, 2, hs) || !array_shape<T>(keys, 3, ks) ||
        !array_shape<T>(values, 3, vs))
      return;
    d.Ty = xs[0], d.B = xs[1], d.E = xs[2], d.H = hs[1], d.Tx = ks[1], d.K = ks[2], d.Dv = vs[2];
    const index_t GH = spec.cell.gates() * d.H;
    if (d.Ty < 1 || d.B < 1 || d.H < 1 || d.Tx < 1 || d.Dv < 1 || hs[0] != GH) return;
    if (additive) {
      d.A = d.K;
      if (d.A < 1) return;
    } else if (d.K != d.H || !w_q.is_none() || !b_a.is_none() || !w_v.is_none() || !score_bias.is_none() ||
               relu_energy) {
      return;
    }
    if (after == 1) {
      const py::ssize_t* cs;
      if (!array_shape<T>(w_c, 2, cs)) return;
      d.O = cs[0];
      if (d.O < 1 || (!spec.input_feeding && (d.E < 1 || !o0.is_none()))) return;
    } else {
      if (!w_c.is_none() || !b_c.is_none() || !o0.is_none()) return;
      d.O = d.H;
    }
    const index_t B = d.B, H = d.H, A = d.A, O = d.O;
    if (!sources.is_none()) {  // a row -> source map: N sources, row b on sources[b]
      d.N = ks[0];
      if (d.N < 1) return;
      const IndexCopy& map = src.emplace(sources, std::initializer_list<index_t>{B});
      if (!map.ok) return;
      for (index_t b = 0; b < B; ++b)
        if (map.data[b] < 0 || map.data[b] >= d.N) return;
      a.sources = map.data;
    }
    const index_t N = d.source_rows();
    const ExactArray<T> xa(x, {d.Ty, B, d.E}), wih(w_ih, {GH, d.E + d.fed(spec)}), whh(w_hh, {GH, H}),
        bih(b_ih, {GH}, true), bhh(b_hh, {GH}, true), h(h0, {B, H}, true), c(c0, {B, H}, true),
        k(keys, {N, d.Tx, d.K}), v(values, {N, d.Tx, d.Dv});
    const IndexCopy& len = this->len.emplace(lengths, std::initializer_list<index_t>{N}, true);
    if (!(xa.ok && wih.ok && whh.ok && bih.ok && bhh.ok && h.ok && c.ok && k.ok && v.ok && len.ok)) return;
    for (index_t n = 0; len.data && n < N; ++n)
      if (len.data[n] < 0 || len.data[n] > d.Tx) return;
    if (additive) {
      const ExactArray<T> q(w_q, {A, H}), ba(b_a, {A}, true), wv(w_v, {A}), sb(score_bias, {}, true);
      if (!(q.ok && ba.ok && wv.ok && sb.ok)) return;
      a.w_q = q.data, a.b_a = ba.data, a.w_v = wv.data, a.score_bias = sb.data;
    }
    if (after == 1) {
      const ExactArray<T> wc(w_c, {O, d.Dv + H}), bc(b_c, {O}, true), o(o0, {B, O}, true);
      if (!(wc.ok && bc.ok && o.ok)) return;
      a.w_c = wc.data, a.b_c = bc.data, a.o0 = o.data;
    }
    a.x = xa.data, a.h0 = h.data, a.c0 = c.data, a.w_ih = wih.data, a.w_hh = whh.data, a.b_ih = bih.data,
    a.b_hh = bhh.data, a.keys = k.data, a.values = v.data, a.lengths = len.data;
    ok = true;
  }
};

/// The op's arguments in its order, then borrow (a bool: training keeps values and the returned alpha by reference,
/// the workspace holding both) -> (outputs [Ty, B, O], contexts [Ty, B, Dv], alpha [Ty, B, Tx], h_n [B, H],
/// c_n [B, H] or None, workspace or None); NotImplemented unless the call is exact (DecoderCallArgs).
py::object forward(py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh, py::handle b_ih,
                   py::handle b_hh, py::handle keys, py::handle values, py::handle lengths, py::handle cell,
                   py::handle reset_after, py::handle nonlinearity, py::handle score, py::handle w_q, py::handle b_a,
                   py::handle w_v, py::handle score_bias, py::handle energy_activation, py::handle position,
                   py::handle input_feeding, py::handle w_c, py::handle b_c, py::handle o0, py::handle training,
                   py::handle borrow) {
  if (!py::isinstance<py::bool_>(borrow)) return not_exact();
  auto run = [&](auto type) -> py::object {
    using T = decltype(type);
    DecoderCallArgs<T> call(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keys, values, lengths, cell, reset_after,
                            nonlinearity, score, w_q, b_a, w_v, score_bias, energy_activation, position,
                            input_feeding, w_c, b_c, o0, training);
    if (!call.ok) return not_exact();
    call.a.borrow = call.training && borrow.cast<bool>();
    const DecoderDims& d = call.d;
    auto outputs = new_array<T>({d.Ty, d.B, d.O}), contexts = new_array<T>({d.Ty, d.B, d.Dv}),
         alpha = new_array<T>({d.Ty, d.B, d.Tx}), h_n = new_array<T>({d.B, d.H});
    const bool lstm = call.spec.cell.kind == CellKind::lstm;
    std::optional<Array<T>> c_n;
    if (lstm) c_n = new_array<T>({d.B, d.H});
    const DecoderOutputs<T> out{outputs.mutable_data(), contexts.mutable_data(), alpha.mutable_data(),
                                h_n.mutable_data(), lstm ? c_n->mutable_data() : nullptr};
    auto ws = call.training ? std::make_unique<DecoderWorkspace<T>>() : nullptr;
    {
      py::gil_scoped_release release;
      attention_decoder_forward<T>(call.spec, d, call.a, out, ws.get());
    }
    py::object workspace = ws ? py::cast(std::move(ws)) : py::none();
    if (call.a.borrow) workspace.attr("_borrowed") = py::make_tuple(values, alpha);  // alive while it is
    return py::make_tuple(outputs, contexts, alpha, h_n, c_n ? py::object(*c_n) : py::none(), workspace);
  };
  const py::ssize_t* shape;
  if (array_shape<float>(x, 3, shape)) return run(float{});
  if (array_shape<double>(x, 3, shape)) return run(double{});
  return not_exact();
}

/// (workspace, doutputs, dcontexts, dalpha, dh_n, dc_n), each upstream None or of its forward's shape ->
/// (dx, dh0, dc0, do0, dkeys, dvalues, dw_ih, dw_hh, db_ih, db_hh, dw_q, db_a, dw_v, dscore_bias, dw_c, db_c),
/// None where the forward had no such argument.
template <typename T>
py::tuple backward(const DecoderWorkspace<T>& ws, const OptionalArray<T>& doutputs, const OptionalArray<T>& dcontexts,
                   const OptionalArray<T>& dalpha, const OptionalArray<T>& dh_n, const OptionalArray<T>& dc_n) {
  const DecoderSpec& s = ws.spec;
  const DecoderDims& d = ws.dims;
  const index_t GH = s.cell.gates() * d.H, I = d.E + d.fed(s);
  const bool additive = s.score == AttentionScore::additive, after = s.position == AttentionPosition::after;
  const bool lstm = s.cell.kind == CellKind::lstm, feeding = after && s.input_feeding;
  std::vector<std::optional<Array<T>>> arrays;
  std::vector<T*> pointers;
  auto add = [&](bool present, std::vector<py::ssize_t> shape) {
    if (present) {
      arrays.emplace_back(new_array<T>(std::move(shape)));
      pointers.push_back(arrays.back()->mutable_data());
    } else {
      arrays.emplace_back(std::nullopt);
      pointers.push_back(nullptr);
    }
  };
  add(true, {d.Ty, d.B, d.E});                       // dx
  add(true, {d.B, d.H});                             // dh0
  add(lstm, {d.B, d.H});                             // dc0
  add(feeding, {d.B, d.O});                          // do0
  add(true, {d.B, d.Tx, d.K});                       // dkeys
  add(true, {d.B, d.Tx, d.Dv});                      // dvalues
  add(true, {GH, I});                                // dw_ih
  add(true, {GH, d.H});                              // dw_hh
  add(true, {GH});                                   // db_ih (the cells' weight gradients always sum it)
  add(true, {GH});                                   // db_hh
  add(additive, {d.A, d.H});                         // dw_q
  add(additive && ws.has_b_a, {d.A});                // db_a
  add(additive, {d.A});                              // dw_v
  add(additive && ws.has_score_bias, {});            // dscore_bias
  add(after, {d.O, d.Dv + d.H});                     // dw_c
  add(after && ws.has_b_c, {d.O});                   // db_c
  const DecoderGradients<T> g{pointers[0], pointers[1], pointers[2],  pointers[3],  pointers[4],  pointers[5],
                              pointers[6], pointers[7], pointers[8],  pointers[9],  pointers[10], pointers[11],
                              pointers[12], pointers[13], pointers[14], pointers[15]};
  const DecoderUpstream<T> up{data_or_null(doutputs), data_or_null(dcontexts), data_or_null(dalpha),
                              data_or_null(dh_n), data_or_null(dc_n)};
  {
    py::gil_scoped_release release;
    attention_decoder_backward<T>(ws, up, g);
  }
  const bool keep_bias[2] = {ws.cell.has_bias_ih, ws.cell.has_bias_hh};
  py::tuple result(arrays.size());
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    const bool dropped = (i == 8 && !keep_bias[0]) || (i == 9 && !keep_bias[1]);
    result[i] = arrays[i] && !dropped ? py::object(*arrays[i]) : py::none();
  }
  return result;
}

/// A decoding session from the forward's exact arguments (x [1, B, E] gives B and E; h0, c0, o0 must be None)
/// plus embedding [Vin, E] (None when E = 0), w_out [V, O], b_out [V] or None, and sources: None, or int64 [B] in
/// 0..N-1 (row b attends to source sources[b] of the N in keys [N, Tx, K], values [N, Tx, Dv], lengths [N]);
/// NotImplemented unless all exact.
py::object make_session(py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh,
                        py::handle keys, py::handle values, py::handle lengths, py::handle cell, py::handle reset_after,
                        py::handle nonlinearity, py::handle score, py::handle w_q, py::handle b_a, py::handle w_v,
                        py::handle score_bias, py::handle energy_activation, py::handle position,
                        py::handle input_feeding, py::handle w_c, py::handle b_c, py::handle embedding,
                        py::handle w_out, py::handle b_out, py::handle sources) {
  auto run = [&](auto type) -> py::object {
    using T = decltype(type);
    const py::handle none = py::none();
    const DecoderCallArgs<T> call(x, none, none, w_ih, w_hh, b_ih, b_hh, keys, values, lengths, cell, reset_after,
                                  nonlinearity, score, w_q, b_a, w_v, score_bias, energy_activation, position,
                                  input_feeding, w_c, b_c, none, py::bool_(false), sources);
    if (!call.ok || call.d.Ty != 1) return not_exact();
    const DecoderDims& d = call.d;
    const py::ssize_t *es = nullptr, *os;
    if (d.E > 0 ? !array_shape<T>(embedding, 2, es) : !embedding.is_none()) return not_exact();
    if (!array_shape<T>(w_out, 2, os)) return not_exact();
    const index_t Vin = es ? es[0] : 0, V = os[0];
    const ExactArray<T> emb(embedding, {Vin, d.E}, true), wo(w_out, {V, d.O}), bo(b_out, {V}, true);
    if (!(emb.ok && wo.ok && bo.ok) || V < 1 || (d.E > 0 && Vin < 1)) return not_exact();
    std::unique_ptr<DecoderSession<T>> session;
    {
      py::gil_scoped_release release;
      session = std::make_unique<DecoderSession<T>>(call.spec, d, call.a, emb.data, Vin, wo.data, bo.data, V);
    }
    return py::cast(std::move(session));
  };
  const py::ssize_t* shape;
  if (array_shape<float>(x, 3, shape)) return run(float{});
  if (array_shape<double>(x, 3, shape)) return run(double{});
  return not_exact();
}

/// One session step: tokens int64 [B] in 0..Vin-1 (None when E = 0), h [B, H], c [B, H] (LSTM, else None), fed
/// [B, O] (input feeding, else None); None for a state part is zeros -> (log_probs [B, V], outputs [B, O],
/// alpha [B, Tx], h_n [B, H], c_n [B, H] or None). NotImplemented unless every argument is exact.
template <typename T>
py::object session_step(DecoderSession<T>& session, py::handle tokens, py::handle h, py::handle c, py::handle fed) {
  const DecoderDims& d = session.dims();
  const DecoderSpec& spec = session.spec();
  const bool lstm = spec.cell.kind == CellKind::lstm, feeding = spec.input_feeding;
  const index_t B = d.B, Vin = session.embedding_rows();
  const IndexCopy tok(tokens, {B}, d.E == 0);  // checked and read as copied
  const ExactArray<T> ha(h, {B, d.H}, true), ca(c, {B, d.H}, true), fa(fed, {B, d.O}, true);
  if (!(tok.ok && ha.ok && ca.ok && fa.ok) || (!lstm && ca.data) || (!feeding && fa.data) ||
      (d.E == 0 && !tokens.is_none()))
    return not_exact();
  for (index_t b = 0; d.E > 0 && b < B; ++b)
    if (tok.data[b] < 0 || tok.data[b] >= Vin) return not_exact();
  auto log_probs = new_array<T>({B, session.vocabulary()}), outputs = new_array<T>({B, d.O}),
       alpha = new_array<T>({B, d.Tx}), h_n = new_array<T>({B, d.H});
  std::optional<Array<T>> c_n;
  if (lstm) c_n = new_array<T>({B, d.H});
  {
    py::gil_scoped_release release;
    session.step(tok.data, ha.data, ca.data, fa.data, log_probs.mutable_data(), outputs.mutable_data(),
                 alpha.mutable_data(), h_n.mutable_data(), lstm ? c_n->mutable_data() : nullptr);
  }
  return py::make_tuple(log_probs, outputs, alpha, h_n, c_n ? py::object(*c_n) : py::none());
}

template <typename T>
void register_dtype(py::module_& m) {
  const std::string session_name = std::string("DecoderSession_") + dtype_name<T>();
  py::class_<DecoderSession<T>>(m, session_name.c_str(),
                                "One-step attention decoding with the weights, source and output layer prepared once "
                                "(opaque; rnncore.ops.DecoderSession).")
      .def("step", &session_step<T>, py::arg("tokens"), py::arg("h"), py::arg("c"), py::arg("fed"))
      .def_property_readonly("rows", [](const DecoderSession<T>& s) { return s.dims().B; })
      .def_property_readonly("vocabulary", [](const DecoderSession<T>& s) { return s.vocabulary(); })
      .def_property_readonly("dtype", [](const DecoderSession<T>&) { return dtype_name<T>(); });
  const std::string name = std::string("DecoderWorkspace_") + dtype_name<T>();
  // dynamic_attr: a borrowing forward keeps the values and alpha it points at on the workspace (_borrowed)
  py::class_<DecoderWorkspace<T>>(m, name.c_str(), py::dynamic_attr(),
                                  "What a training-mode attention decoder forward keeps for its backward (opaque).")
      .def_property_readonly("cell", [](const DecoderWorkspace<T>& w) { return cell_traits(w.spec.cell.kind).name; })
      .def_property_readonly("score", [](const DecoderWorkspace<T>& w) { return score_name(w.spec.score); })
      .def_property_readonly("position", [](const DecoderWorkspace<T>& w) { return position_name(w.spec.position); })
      .def_property_readonly("input_feeding", [](const DecoderWorkspace<T>& w) { return w.spec.input_feeding; })
      .def_property_readonly("dtype", [](const DecoderWorkspace<T>&) { return dtype_name<T>(); })
      .def_property_readonly("sizes",
                             [](const DecoderWorkspace<T>& w) {
                               const DecoderDims& d = w.dims;
                               py::dict sizes;
                               sizes["Ty"] = d.Ty;
                               sizes["B"] = d.B;
                               sizes["E"] = d.E;
                               sizes["H"] = d.H;
                               sizes["Tx"] = d.Tx;
                               sizes["K"] = d.K;
                               sizes["Dv"] = d.Dv;
                               sizes["A"] = d.A;
                               sizes["O"] = d.O;
                               return sizes;
                             })
      .def_property_readonly("nbytes", &DecoderWorkspace<T>::bytes);
  using py::arg;
  m.def("attention_decoder_backward", &backward<T>, arg("workspace"), arg("doutputs").noconvert(),
        arg("dcontexts").noconvert(), arg("dalpha").noconvert(), arg("dh_n").noconvert(), arg("dc_n").noconvert());
}

}  // namespace

void register_attention_decoder(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
  using py::arg;
  m.def("attention_decoder_forward", &forward, arg("x"), arg("h0"), arg("c0"), arg("w_ih"), arg("w_hh"), arg("b_ih"),
        arg("b_hh"), arg("keys"), arg("values"), arg("lengths"), arg("cell"), arg("reset_after"), arg("nonlinearity"),
        arg("score"), arg("w_q"), arg("b_a"), arg("w_v"), arg("score_bias"), arg("energy_activation"),
        arg("position"), arg("input_feeding"), arg("w_c"), arg("b_c"), arg("o0"), arg("training"),
        arg("borrow") = false);
  m.def("decoder_session", &make_session, arg("x"), arg("w_ih"), arg("w_hh"), arg("b_ih"), arg("b_hh"), arg("keys"),
        arg("values"), arg("lengths"), arg("cell"), arg("reset_after"), arg("nonlinearity"), arg("score"),
        arg("w_q"), arg("b_a"), arg("w_v"), arg("score_bias"), arg("energy_activation"), arg("position"),
        arg("input_feeding"), arg("w_c"), arg("b_c"), arg("embedding"), arg("w_out"), arg("b_out"),
        arg("sources") = py::none());
}

}  // namespace rnncore::bindings
