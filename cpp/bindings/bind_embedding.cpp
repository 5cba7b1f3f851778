// Bindings for the embedding scatter-add.
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
  const index_t* idx = indices.data();
  const T* g = dy.data();
  T* out = dweight.mutable_data();
  py::gil_scoped_release release;
  embedding_backward<T>(N, V, D, idx, g, padding_idx, out);
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
