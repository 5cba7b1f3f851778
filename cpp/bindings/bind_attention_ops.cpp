// Bindings for the standalone attention ops (rnncore/attention_ops.hpp), their opaque training workspaces and the
// additive attention's prepared source.
// rnncore.ops.attention validates every argument first (shapes, dtypes, lengths in 0..Tx, the score's weights).
#include <memory>
#include <string>

#include "bindings.hpp"
#include "rnncore/attention_ops.hpp"

namespace rnncore::bindings {

namespace {

using Shape = std::vector<py::ssize_t>;

template <typename T>
const index_t* lengths_or_null(const Lengths& lengths) {
  return lengths ? lengths->data() : nullptr;
}

template <typename T>
T* mutable_or_null(std::optional<Array<T>>& a) {
  return a ? a->mutable_data() : nullptr;
}

template <typename T>
using SourcePtr = std::shared_ptr<AdditiveAttentionSource<T>>;

// projected_keys [B, Tx, A], values [B, Tx, Dv], lengths int64 [B] in 0..Tx or None -> a source (private copies).
template <typename T>
SourcePtr<T> additive_source(const Array<T>& projected_keys, const Array<T>& values, const Lengths& lengths) {
  const index_t B = projected_keys.shape(0), Tx = projected_keys.shape(1), A = projected_keys.shape(2);
  const index_t Dv = values.shape(2);
  const T *kp = projected_keys.data(), *v = values.data();
  const index_t* len = lengths_or_null<T>(lengths);
  py::gil_scoped_release release;
  return additive_attention_source<T>(B, Tx, A, Dv, kp, v, len);
}

// query [B, Dq]; the source: a source object, or projected_keys [B, Tx, A], values [B, Tx, Dv] and lengths int64
// [B] in 0..Tx or None; w_q [A, Dq], b_a [A] or None, w_v [A] (effective), score_bias 0-d or None
// -> (context [B, Dv], alpha [B, Tx], workspace or None).
template <typename T>
py::tuple additive_forward(const Array<T>& query, const SourcePtr<T>& source, const OptionalArray<T>& projected_keys,
                           const OptionalArray<T>& values, const Lengths& lengths, const Array<T>& w_q,
                           const OptionalArray<T>& b_a, const Array<T>& w_v, const OptionalArray<T>& score_bias,
                           bool relu_energy, bool training) {
  AdditiveAttentionInputs<T> in;
  in.B = query.shape(0), in.Dq = query.shape(1);
  if (source) {
    in.source = source;
    in.Tx = source->Tx, in.A = source->A, in.Dv = source->Dv;
  } else {
    in.Tx = projected_keys->shape(1), in.A = projected_keys->shape(2), in.Dv = values->shape(2);
    in.projected_keys = projected_keys->data(), in.values = values->data(), in.lengths = lengths_or_null<T>(lengths);
  }
  in.query = query.data(), in.w_q = w_q.data(), in.b_a = data_or_null(b_a), in.w_v = w_v.data();
  in.score_bias = data_or_null(score_bias), in.relu_energy = relu_energy;
  Array<T> context = cached_array<T>({in.B, in.Dv}), alpha = cached_array<T>({in.B, in.Tx});
  auto ws = training ? std::make_unique<AdditiveAttentionWorkspace<T>>() : nullptr;
  T *ctx = context.mutable_data(), *a = alpha.mutable_data();
  {
    py::gil_scoped_release release;
    additive_attention_forward<T>(in, ctx, a, ws.get());
  }
  return py::make_tuple(context, alpha, ws ? py::cast(std::move(ws)) : py::none());
}

// dcontext [B, Dv] or None, dalpha [B, Tx] or None; dprojected_keys [B, Tx, A] and dvalues [B, Tx, Dv] added into
// -> (dquery [B, Dq], dw_q [A, Dq], db_a [A] or None, dw_v [A], dscore_bias 0-d or None).
template <typename T>
py::tuple additive_backward(const AdditiveAttentionWorkspace<T>& ws, const OptionalArray<T>& dcontext,
                            const OptionalArray<T>& dalpha, Array<T>& dprojected_keys, Array<T>& dvalues) {
  Array<T> dquery = cached_array<T>({ws.B, ws.Dq}), dw_q = cached_array<T>({ws.A, ws.Dq});
  Array<T> dw_v = cached_array<T>({ws.A});
  std::optional<Array<T>> db_a, dscore_bias;
  if (ws.has_bias) db_a = cached_array<T>({ws.A});
  if (ws.has_score_bias) dscore_bias = cached_array<T>(Shape{});
  AdditiveAttentionGradients<T> g;
  g.dquery = dquery.mutable_data(), g.dprojected_keys = dprojected_keys.mutable_data();
  g.dvalues = dvalues.mutable_data(), g.dw_q = dw_q.mutable_data(), g.db_a = mutable_or_null(db_a);
  g.dw_v = dw_v.mutable_data(), g.dscore_bias = mutable_or_null(dscore_bias);
  const T *dc = data_or_null(dcontext), *da = data_or_null(dalpha);
  {
    py::gil_scoped_release release;
    additive_attention_backward<T>(ws, dc, da, g);
  }
  return py::make_tuple(dquery, dw_q, db_a ? py::object(*db_a) : py::none(), dw_v,
                        dscore_bias ? py::object(*dscore_bias) : py::none());
}

// query [B, Ty, Dq], keys [B, Tx, Dk], values [B, Tx, Dv], score 0 dot / 1 general / 2 concat, weight (general
// [Dq, Dk], concat [A, Dq + Dk]) or None, v_a [A] or None, lengths or None
// -> (context [B, Ty, Dv], alpha [B, Ty, Tx], workspace or None).
template <typename T>
py::tuple luong_forward(const Array<T>& query, const Array<T>& keys, const Array<T>& values, int score,
                        const OptionalArray<T>& weight, const OptionalArray<T>& v_a, const Lengths& lengths,
                        bool training) {
  LuongAttentionInputs<T> in;
  in.score = static_cast<LuongScore>(score);
  in.B = query.shape(0), in.Ty = query.shape(1), in.Dq = query.shape(2), in.Tx = keys.shape(1);
  in.Dk = keys.shape(2), in.Dv = values.shape(2), in.A = v_a ? v_a->shape(0) : 0;
  in.query = query.data(), in.keys = keys.data(), in.values = values.data();
  in.weight = data_or_null(weight), in.v_a = data_or_null(v_a), in.lengths = lengths_or_null<T>(lengths);
  Array<T> context = cached_array<T>({in.B, in.Ty, in.Dv}), alpha = cached_array<T>({in.B, in.Ty, in.Tx});
  auto ws = training ? std::make_unique<LuongAttentionWorkspace<T>>() : nullptr;
  T *ctx = context.mutable_data(), *a = alpha.mutable_data();
  {
    py::gil_scoped_release release;
    luong_attention_forward<T>(in, ctx, a, ws.get());
  }
  return py::make_tuple(context, alpha, ws ? py::cast(std::move(ws)) : py::none());
}

// dcontext [B, Ty, Dv] or None, dalpha [B, Ty, Tx] or None
// -> (dquery [B, Ty, Dq], dkeys [B, Tx, Dk], dvalues [B, Tx, Dv], dweight or None, dv_a [A] or None).
template <typename T>
py::tuple luong_backward(const LuongAttentionWorkspace<T>& ws, const OptionalArray<T>& dcontext,
                         const OptionalArray<T>& dalpha) {
  Array<T> dquery = cached_array<T>({ws.B, ws.Ty, ws.Dq}), dkeys = cached_array<T>({ws.B, ws.Tx, ws.Dk});
  Array<T> dvalues = cached_array<T>({ws.B, ws.Tx, ws.Dv});
  std::optional<Array<T>> dweight, dv_a;
  if (ws.score == LuongScore::general) dweight = cached_array<T>({ws.Dq, ws.Dk});
  if (ws.score == LuongScore::concat) {
    dweight = cached_array<T>({ws.A, ws.Dq + ws.Dk});
    dv_a = cached_array<T>({ws.A});
  }
  LuongAttentionGradients<T> g;
  g.dquery = dquery.mutable_data(), g.dkeys = dkeys.mutable_data(), g.dvalues = dvalues.mutable_data();
  g.dweight = mutable_or_null(dweight), g.dv_a = mutable_or_null(dv_a);
  const T *dc = data_or_null(dcontext), *da = data_or_null(dalpha);
  {
    py::gil_scoped_release release;
    luong_attention_backward<T>(ws, dc, da, g);
  }
  return py::make_tuple(dquery, dkeys, dvalues, dweight ? py::object(*dweight) : py::none(),
                        dv_a ? py::object(*dv_a) : py::none());
}

const char* luong_score_name(LuongScore score) {
  return score == LuongScore::dot ? "dot" : score == LuongScore::general ? "general" : "concat";
}

template <typename T>
void register_dtype(py::module_& m) {
  using py::arg;
  const std::string suffix = std::string("_") + dtype_name<T>();
  py::class_<AdditiveAttentionSource<T>, SourcePtr<T>>(m, ("AdditiveAttentionSource" + suffix).c_str(),
                                                      "A prepared source of additive attention: private copies of "
                                                      "K' (in the kernels' layout), values and lengths (opaque).")
      .def_property_readonly("dtype", [](const AdditiveAttentionSource<T>&) { return dtype_name<T>(); })
      .def_readonly("B", &AdditiveAttentionSource<T>::B)
      .def_readonly("Tx", &AdditiveAttentionSource<T>::Tx)
      .def_readonly("A", &AdditiveAttentionSource<T>::A)
      .def_readonly("Dv", &AdditiveAttentionSource<T>::Dv)
      .def_property_readonly("nbytes", &AdditiveAttentionSource<T>::bytes);
  // dynamic_attr: rnncore.ops keeps the normalize option's (w_v, gain) on the workspace (its backward is Python's)
  py::class_<AdditiveAttentionWorkspace<T>>(m, ("AdditiveAttentionWorkspace" + suffix).c_str(), py::dynamic_attr(),
                                            "What a training-mode additive attention step keeps for its backward "
                                            "(opaque; freed when dropped).")
      .def_property_readonly("dtype", [](const AdditiveAttentionWorkspace<T>&) { return dtype_name<T>(); })
      .def_readonly("B", &AdditiveAttentionWorkspace<T>::B)
      .def_readonly("Tx", &AdditiveAttentionWorkspace<T>::Tx)
      .def_readonly("Dq", &AdditiveAttentionWorkspace<T>::Dq)
      .def_readonly("Dv", &AdditiveAttentionWorkspace<T>::Dv)
      .def_readonly("A", &AdditiveAttentionWorkspace<T>::A)
      .def_readonly("has_bias", &AdditiveAttentionWorkspace<T>::has_bias)
      .def_readonly("has_score_bias", &AdditiveAttentionWorkspace<T>::has_score_bias)
      .def_property_readonly("nbytes", &AdditiveAttentionWorkspace<T>::bytes);
  py::class_<LuongAttentionWorkspace<T>>(m, ("LuongAttentionWorkspace" + suffix).c_str(),
                                         "What a training-mode Luong attention keeps for its backward (opaque; freed "
                                         "when dropped).")
      .def_property_readonly("dtype", [](const LuongAttentionWorkspace<T>&) { return dtype_name<T>(); })
      .def_property_readonly("score", [](const LuongAttentionWorkspace<T>& w) { return luong_score_name(w.score); })
      .def_readonly("B", &LuongAttentionWorkspace<T>::B)
      .def_readonly("Ty", &LuongAttentionWorkspace<T>::Ty)
      .def_readonly("Tx", &LuongAttentionWorkspace<T>::Tx)
      .def_readonly("Dq", &LuongAttentionWorkspace<T>::Dq)
      .def_readonly("Dk", &LuongAttentionWorkspace<T>::Dk)
      .def_readonly("Dv", &LuongAttentionWorkspace<T>::Dv)
      .def_readonly("A", &LuongAttentionWorkspace<T>::A)
      .def_property_readonly("nbytes", &LuongAttentionWorkspace<T>::bytes);
  m.def("additive_attention_source", &additive_source<T>, arg("projected_keys").noconvert(),
        arg("values").noconvert(), arg("lengths").noconvert());
  m.def("additive_attention_forward", &additive_forward<T>, arg("query").noconvert(), arg("source"),
        arg("projected_keys").noconvert(), arg("values").noconvert(), arg("lengths").noconvert(),
        arg("w_q").noconvert(), arg("b_a").noconvert(), arg("w_v").noconvert(), arg("score_bias").noconvert(),
        arg("relu_energy"), arg("training"));
  m.def("additive_attention_backward", &additive_backward<T>, arg("workspace"), arg("dcontext").noconvert(),
        arg("dalpha").noconvert(), arg("dprojected_keys").noconvert(), arg("dvalues").noconvert());
  m.def("luong_attention_forward", &luong_forward<T>, arg("query").noconvert(), arg("keys").noconvert(),
        arg("values").noconvert(), arg("score"), arg("weight").noconvert(), arg("v_a").noconvert(),
        arg("lengths").noconvert(), arg("training"));
  m.def("luong_attention_backward", &luong_backward<T>, arg("workspace"), arg("dcontext").noconvert(),
        arg("dalpha").noconvert());
}

}  // namespace

void register_attention_ops(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
