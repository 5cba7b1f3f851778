// Process-wide settings and build facts (for `python -m rnncore` and bug reports).
#pragma once

#include <string>

namespace rnncore {

/// Threads used inside one kernel call (Eigen's GEMMs). n >= 1.
void set_num_threads(int n);
int get_num_threads();

/// The SIMD instruction sets the kernels were compiled for, as Eigen reports them (e.g. "SSE, ..., AVX2, FMA").
std::string simd_instruction_sets();
/// The compiler, its optimisation flags and the SIMD setting the kernels were built with.
std::string build_info();
/// Whether the kernels were built with OpenMP (needed for more than one thread).
bool has_openmp();

}  // namespace rnncore
