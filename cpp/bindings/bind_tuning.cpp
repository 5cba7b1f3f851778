// rnncore._core's private tuning hooks, for the tests (tests/test_tuning.py): the path knobs of cpp/src/tuning.hpp,
// the count of the paths taken, and the table's thresholds. Not part of the API.
#include <Eigen/Core>
#include <string>

#include "bindings.hpp"
#include "linalg/tile_product.hpp"
#include "parallel.hpp"
#include "tuning.hpp"

namespace rnncore::bindings {

namespace {

detail::Knob knob_named(const std::string& name) {
  for (int k = 0; k < int(detail::Knob::count); ++k)
    if (name == detail::kKnobNames[k]) return detail::Knob(k);
  throw py::value_error("unknown tuning knob '" + name + "'");
}

}  // namespace

void register_tuning(py::module_& m) {
  namespace tuning = detail::tuning;
  m.def("_tuning_get", [] {
    py::dict knobs;
    for (int k = 0; k < int(detail::Knob::count); ++k) knobs[detail::kKnobNames[k]] = detail::forced(detail::Knob(k));
    return knobs;
  });
  m.def(
      "_tuning_set",
      [](const std::string& name, int value) {
        const detail::Knob knob = knob_named(name);
        if (value < -1 || value > 1) throw py::value_error("a tuning knob is -1 (auto), 0 (off) or 1 (on)");
        detail::knob_values[int(knob)].store(value, std::memory_order_relaxed);
      },
      py::arg("name"), py::arg("value"));
  m.def("_tuning_reset", [] {
    for (auto& knob : detail::knob_values) knob.store(-1, std::memory_order_relaxed);
    for (auto& count : detail::path_counts) count.store(0, std::memory_order_relaxed);
    detail::AdaptiveThreads::of_this_thread() = detail::AdaptiveThreads{};  // the calling thread's measurements
  });
  m.def("_tuning_counts", [] {
    py::dict counts;
    for (int p = 0; p < int(detail::Path::count); ++p)
      counts[detail::kPathNames[p]] = detail::path_counts[p].load(std::memory_order_relaxed);
    return counts;
  });
  // The row-invariant mode of the calling thread (tuning.hpp; rnncore.ops.row_invariant): returns the previous
  // setting. The kernels run on the calling thread (the GIL released), so the thread-local setting reaches them.
  m.def(
      "_row_invariant_set",
      [](bool on) {
        const bool previous = detail::row_invariant_mode;
        detail::row_invariant_mode = on;
        return previous;
      },
      py::arg("on"));
  m.def("_row_invariant_get", [] { return detail::row_invariant(); });
  m.def("_tuning_table", [] {
    py::dict table;
    table["tile_available"] = detail::kTileProductAvailable;
    table["l2_bytes"] = double(Eigen::l2CacheSize());
    table["min_parallel_flops"] = tuning::kMinParallelFlops;
    table["adapt_probe_every"] = tuning::kAdaptProbeEvery;
    table["pointwise_ops_per_element"] = tuning::kPointwiseOpsPerElement;
    table["min_pointwise_ops_per_thread"] = tuning::kMinPointwiseOpsPerThread;
    table["min_step_flops_per_thread"] = tuning::kMinStepFlopsPerThread;
    table["min_gemm_flops_per_thread"] = tuning::kMinGemmFlopsPerThread;
    table["min_projection_rows_per_thread"] = tuning::kMinProjectionRowsPerThread;
    table["min_copy_per_thread"] = tuning::kMinCopyPerThread;
    table["row_block_rows"] = tuning::kRowBlockRows;
    table["min_row_block_panels_per_thread"] = tuning::kMinRowBlockPanelsPerThread;
    table["tile_gemm_min_rows"] = tuning::kTileGemmMinRows;
    table["min_steps_to_pack"] = tuning::kMinStepsToPack;
    table["epilogue_prefetch_min_depth"] = tuning::kEpiloguePrefetchMinDepth;
    return table;
  });
}

}  // namespace rnncore::bindings
