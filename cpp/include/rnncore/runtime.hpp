// Process-wide settings and build facts (for `python -m rnncore` and bug reports).
#pragma once

#include <functional>
#include <string>

namespace rnncore {

/// Threads used inside one kernel call (Eigen's GEMMs). n >= 1.
void set_num_threads(int n);
int get_num_threads();

/// Runs two independent kernel calls (each a whole call: its KernelScope inside), e.g. a bidirectional layer's two
/// directions: at once on two threads, each call on one, when the threads are there and measured faster for a pair
/// of `flops` together; else one after the other. Each call's results are those it gives alone. The first exception
/// thrown is rethrown after both have stopped.
void run_pair(double flops, const std::function<void()>& first, const std::function<void()>& second);

/// The SIMD instruction sets the kernels were compiled for, as Eigen reports them (e.g. "SSE, ..., AVX2, FMA").
std::string simd_instruction_sets();
/// The compiler, its optimisation flags and the SIMD setting the kernels were built with.
std::string build_info();
/// Whether the kernels were built with OpenMP (needed for more than one thread).
bool has_openmp();

}  // namespace rnncore
