// Bindings for the embedding scatter-add.
#include <string>
#include <vector>

#include "bindings.hpp"
#include "rnncore/embedding.hpp"

namespace rnncore::bindings {

namespace {

// indices [N] int64, dy [N, D], dweight [V, D] accumulated in place (rnncore.nn.Embedding checks every shape and
// index range before calling).
template <typename T>
void backward(const py::array_t<index_t, py::array::c_style>& indices, const Array<T>& dy, index_t padding_idx,
              Array<T>& dweight) {
  const index_t N = indices.size();
  const index_t V = dweight.shape(0), D = dweight.shape(1);
  // The kernel indexes dweight by them without the GIL, when another thread could rewrite the caller's array:
  // copy them now and check the copy.
  const std::vector<index_t> idx(indices.data(), indices.data() + N);
  for (index_t i : idx)
    if (i < 0 || i >= V) throw py::value_error("indices must lie in 0..V-1 = 0..." + std::to_string(V - 1));
  const T* g = dy.data();
  T* out = dweight.mutable_data();
  py::gil_scoped_release release;
  embedding_backward<T>(N, V, D, idx.data(), g, padding_idx, out);
}

template <typename T>
void register_dtype(py::module_& m) {
  m.def("embedding_backward", &backward<T>, py::arg("indices").noconvert(), py::arg("dy").noconvert(),
        py::arg("padding_idx"), py::arg("dweight").noconvert());
}

}  // namespace

void register_embedding(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace rnncore::bindings
