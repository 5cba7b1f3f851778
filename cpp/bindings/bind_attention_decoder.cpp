// Bindings for the fused attention decoder (rnncore/attention_decoder.hpp) and its opaque training workspace.
// rnncore.ops.attention_decoder_forward checks every argument first; these take exact arrays only (noconvert).
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

/// x [Ty, B, E], h0/c0 [B, H] or None, o0 [B, O] or None, w_ih [G*H, E + Dc], w_hh [G*H, H], b_ih/b_hh [G*H] or None,
/// keys [B, Tx, K], values [B, Tx, Dv], lengths int64 [B] or None, w_q [A, H] / b_a [A] / w_v [A] / score_bias 0-d
/// (additive, each optional where the op says), w_c [O, Dv + H] / b_c [O] (after); the options as the op's names.
/// -> (outputs [Ty, B, O], contexts [Ty, B, Dv], alpha [Ty, B, Tx], h_n [B, H], c_n [B, H] or None, workspace or
/// None).
template <typename T>
py::tuple forward(const Array<T>& x, const OptionalArray<T>& h0, const OptionalArray<T>& c0,
                  const OptionalArray<T>& o0, const Array<T>& w_ih, const Array<T>& w_hh, const OptionalArray<T>& b_ih,
                  const OptionalArray<T>& b_hh, const Array<T>& keys, const Array<T>& values, const Lengths& lengths,
                  const OptionalArray<T>& w_q, const OptionalArray<T>& b_a, const OptionalArray<T>& w_v,
                  const OptionalArray<T>& score_bias, const OptionalArray<T>& w_c, const OptionalArray<T>& b_c,
                  const std::string& cell, bool reset_after, const std::string& nonlinearity, const std::string& score,
                  const std::string& position, bool input_feeding, bool relu_energy, bool training) {
  DecoderSpec spec;
  if (!detail::cell_kind_named(cell, spec.cell.kind)) throw std::invalid_argument("rnncore internal error: cell");
  spec.cell.reset_after = reset_after;
  spec.cell.nonlinearity = nonlinearity == "relu" ? Nonlinearity::relu : Nonlinearity::tanh;
  spec.score = score == "dot" ? AttentionScore::dot : AttentionScore::additive;
  spec.position = position == "after" ? AttentionPosition::after : AttentionPosition::before;
  spec.input_feeding = input_feeding;
  spec.relu_energy = relu_energy;
  DecoderDims d;
  d.Ty = x.shape(0);
  d.B = x.shape(1);
  d.E = x.shape(2);
  d.H = w_hh.shape(1);
  d.Tx = keys.shape(1);
  d.K = keys.shape(2);
  d.Dv = values.shape(2);
  d.A = spec.score == AttentionScore::additive ? d.K : 0;
  d.O = spec.position == AttentionPosition::after ? w_c->shape(0) : d.H;

  DecoderArguments<T> args;
  args.x = x.data();
  args.h0 = data_or_null(h0);
  args.c0 = data_or_null(c0);
  args.o0 = data_or_null(o0);
  args.w_ih = w_ih.data();
  args.w_hh = w_hh.data();
  args.b_ih = data_or_null(b_ih);
  args.b_hh = data_or_null(b_hh);
  args.keys = keys.data();
  args.values = values.data();
  args.lengths = lengths ? lengths->data() : nullptr;
  args.w_q = data_or_null(w_q);
  args.b_a = data_or_null(b_a);
  args.w_v = data_or_null(w_v);
  args.score_bias = data_or_null(score_bias);
  args.w_c = data_or_null(w_c);
  args.b_c = data_or_null(b_c);

  auto outputs = new_array<T>({d.Ty, d.B, d.O}), contexts = new_array<T>({d.Ty, d.B, d.Dv}),
       alpha = new_array<T>({d.Ty, d.B, d.Tx}), h_n = new_array<T>({d.B, d.H});
  const bool lstm = spec.cell.kind == CellKind::lstm;
  std::optional<Array<T>> c_n;
  if (lstm) c_n = new_array<T>({d.B, d.H});
  DecoderOutputs<T> out{outputs.mutable_data(), contexts.mutable_data(), alpha.mutable_data(), h_n.mutable_data(),
                        lstm ? c_n->mutable_data() : nullptr};
  auto ws = training ? std::make_unique<DecoderWorkspace<T>>() : nullptr;
  {
    py::gil_scoped_release release;
    attention_decoder_forward<T>(spec, d, args, out, ws.get());
  }
  return py::make_tuple(outputs, contexts, alpha, h_n, c_n ? py::object(*c_n) : py::none(),
                        ws ? py::cast(std::move(ws)) : py::none());
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

template <typename T>
void register_dtype(py::module_& m) {
  const std::string name = std::string("DecoderWorkspace_") + dtype_name<T>();
  py::class_<DecoderWorkspace<T>>(m, name.c_str(),
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
  m.def("attention_decoder_forward", &forward<T>, arg("x").noconvert(), arg("h0").noconvert(), arg("c0").noconvert(),
        arg("o0").noconvert(), arg("w_ih").noconvert(), arg("w_hh").noconvert(), arg("b_ih").noconvert(),
        arg("b_hh").noconvert(), arg("keys").noconvert(), arg("values").noconvert(), arg("lengths").noconvert(),
        arg("w_q").noconvert(), arg("b_a").noconvert(), arg("w_v").noconvert(), arg("score_bias").noconvert(),
        arg("w_c").noconvert(), arg("b_c").noconvert(), arg("cell"), arg("reset_after"), arg("nonlinearity"),
        arg("score"), arg("position"), arg("input_feeding"), arg("relu_energy"), arg("training"));
  m.def("attention_decoder_backward", &backward<T>, arg("workspace"), arg("doutputs").noconvert(),
        arg("dcontexts").noconvert(), arg("dalpha").noconvert(), arg("dh_n").noconvert(), arg("dc_n").noconvert());
}

}  // namespace

void register_attention_decoder(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
