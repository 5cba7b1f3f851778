// The extension module rnncore._core: registers each op family and the runtime settings.
#include <Eigen/Core>

#include "bindings.hpp"
#include "rnncore/runtime.hpp"

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  using namespace rnncore;
  m.doc() = "rnncore's compiled kernels. Use rnncore.ops: it validates arguments before they reach this module.";
  Eigen::initParallel();
  bindings::register_recurrent(m);
  bindings::register_attention(m);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def("simd_instruction_sets", &simd_instruction_sets);
  m.def("build_info", &build_info);
  m.def("has_openmp", &has_openmp);
}
