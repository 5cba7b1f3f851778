// Thread count and build facts.
#include "rnncore/runtime.hpp"

#include "parallel.hpp"

#include <Eigen/Core>
#include <atomic>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef RNNCORE_BUILD_FLAGS
#define RNNCORE_BUILD_FLAGS "unknown"
#endif
#ifndef RNNCORE_SIMD_SETTING
#define RNNCORE_SIMD_SETTING "unknown"
#endif

namespace rnncore {

namespace {
/// The threads a kernel call may use; set once by the user, read at every call (kernels apply it per call and per
/// calling thread, see KernelScope in src/parallel.hpp).
std::atomic<int>& configured_threads() {
#ifdef _OPENMP
  static std::atomic<int> threads{omp_get_max_threads()};
#else
  static std::atomic<int> threads{1};
#endif
  return threads;
}
/// Read when the library is loaded (import rnncore), not at first use: a first call inside a cap of the calling
/// thread's OpenMP setting (threadpoolctl.threadpool_limits(1)) made that cap rnncore's default for good.
[[maybe_unused]] const int kDefaultThreads = configured_threads().load();
}  // namespace

void set_num_threads(int n) { configured_threads().store(n > 0 ? n : 1); }

int get_num_threads() { return configured_threads().load(); }

void run_pair(double flops, const std::function<void()>& first, const std::function<void()>& second) {
  detail::run_pair(flops, first, second);
}

std::string simd_instruction_sets() {
  std::string sets = Eigen::SimdInstructionSetsInUse();  // Eigen names the widest family only
#ifdef EIGEN_VECTORIZE_AVX2
  if (sets.find("AVX2") == std::string::npos) sets += ", AVX2";
#endif
#ifdef EIGEN_VECTORIZE_FMA
  if (sets.find("FMA") == std::string::npos) sets += ", FMA";
#endif
  return sets;
}

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

std::string build_info() {
  std::string info;
#if defined(__clang__)
  info += "clang " __clang_version__;
#elif defined(__GNUC__)
  info += "gcc " __VERSION__;
#endif
  info += "; flags: " RNNCORE_BUILD_FLAGS "; SIMD setting: " RNNCORE_SIMD_SETTING;
  info += "; Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
          std::to_string(EIGEN_MINOR_VERSION);
  return info;
}

}  // namespace rnncore
