// The extension module rnncore._core: registers each op family and the runtime settings.
#include <Eigen/Core>

#include "bindings.hpp"
#include "rnncore/memory.hpp"
#include "rnncore/runtime.hpp"

namespace rnncore::bindings {
void register_tuning(py::module_& m);  // bind_tuning.cpp: private hooks for the tests
}

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  using namespace rnncore;
  m.doc() = "rnncore's compiled kernels. Use rnncore.ops: it validates arguments before they reach this module.";
  Eigen::initParallel();
  bindings::register_recurrent(m);
  bindings::register_stepper(m);
  bindings::register_attention(m);
  bindings::register_attention_ops(m);
  bindings::register_embedding(m);
  bindings::register_linear(m);
  bindings::register_decoding(m);
  bindings::register_attention_decoder(m);
  bindings::register_optim(m);
  bindings::register_tuning(m);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def("simd_instruction_sets", &simd_instruction_sets);
  m.def("build_info", &build_info);
  m.def("has_openmp", &has_openmp);
  m.def("memory_cache_stats", [] {
    const MemoryCacheStats s = memory_cache_stats();
    py::dict d;
    d["idle_bytes"] = s.idle_bytes;
    d["idle_blocks"] = s.idle_blocks;
    d["limit_bytes"] = s.limit_bytes;
    return d;
  });
  m.def("empty_memory_cache", &empty_memory_cache);
  m.def("set_memory_cache_limit", &set_memory_cache_limit, py::arg("bytes"));
}
