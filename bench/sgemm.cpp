// Standalone SGEMM timer: the GEMM rates of the two GEMMs rnncore's kernels use — Eigen's, and the package's own
// 48x8 register-tile GEMM (cpp/src/linalg/tile_gemm.hpp, float on AVX-512-class builds) — compiled with the package's flags
// and sources (bench/native.py builds it). Not part of the package.
//
//   sgemm THREADS MIN_SECONDS SPEC [SPEC ...]
//   SPEC = OP:M:N:K[:COUNT]     OP = nt | nn | tn  (Eigen), or tile_nt | tile_nn | tile_tn  (the package's tile GEMM)
//   (all matrices row-major, float32)
//     nt:  C[M,N] = A[M,K] · W[N,K]^T   (forward: x·W_ih^T, h·W_hh^T)
//     nn:  C[M,N] = A[M,K] · W[K,N]     (backward: dG·W_ih, dG_t·W_hh)
//     tn:  C[M,N] = A[K,M]^T · X[K,N]   (weight gradients: dG^T·x)
//   COUNT products back to back make one sample (e.g. T per-step recurrent products); default 1.
//
// Prints one line per SPEC: "OP M N K COUNT best_seconds_per_sample gflops" (best sample of at least 3, sampled
// until MIN_SECONDS have passed), or "OP unavailable" for a tile_ spec on a build without the tile. Eigen products
// are written with its expression API (C.noalias() = A * B), so small ones take Eigen's own GEMV / lazy-product
// paths exactly as the kernels' expressions do.
#include <Eigen/Core>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "linalg/tile_gemm.hpp"  // cpp/src of the package

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Spec {
  std::string op;
  long m, n, k, count;
};

static bool parse(const char* text, Spec& s) {
  char op[16] = {0};
  long m = 0, n = 0, k = 0, count = 1;
  const int got = std::sscanf(text, "%15[a-z_]:%ld:%ld:%ld:%ld", op, &m, &n, &k, &count);
  if (got < 4 || m < 1 || n < 1 || k < 1 || count < 1) return false;
  s = Spec{op, m, n, k, count};
  const std::string base = s.op.rfind("tile_", 0) == 0 ? s.op.substr(5) : s.op;
  return base == "nt" || base == "nn" || base == "tn";
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s THREADS MIN_SECONDS OP:M:N:K[:COUNT] ...\n", argv[0]);
    return 2;
  }
  Eigen::setNbThreads(std::atoi(argv[1]));
#ifdef _OPENMP
  omp_set_num_threads(std::atoi(argv[1]));  // the tile GEMM takes OpenMP's count, as in the kernels
#endif
  const double min_seconds = std::atof(argv[2]);
  for (int a = 3; a < argc; ++a) {
    Spec s;
    if (!parse(argv[a], s)) {
      std::fprintf(stderr, "bad spec '%s' (want [tile_]nt|nn|tn:M:N:K[:COUNT])\n", argv[a]);
      return 2;
    }
    const bool tile = s.op.rfind("tile_", 0) == 0;
    const std::string op = tile ? s.op.substr(5) : s.op;
    if (tile && !rnncore::detail::kTileFor<float>) {
      std::printf("%s unavailable\n", s.op.c_str());
      std::fflush(stdout);
      continue;
    }
    const bool ta = op == "tn", tb = op == "nt";
    RowMatrix A = RowMatrix::Random(ta ? s.k : s.m, ta ? s.m : s.k);
    RowMatrix W = RowMatrix::Random(tb ? s.n : s.k, tb ? s.k : s.n);
    RowMatrix C = RowMatrix::Zero(s.m, s.n);
    auto sample = [&] {
      for (long c = 0; c < s.count; ++c) {
        if (tile) {
          if constexpr (rnncore::detail::kTileFor<float>)
            rnncore::detail::tile_gemm<float>(s.m, s.n, s.k, {A.data(), A.cols(), ta}, {W.data(), W.cols(), tb},
                                              C.data(), s.n, nullptr, 0);
        } else if (op == "nt") {
          C.noalias() = A * W.transpose();
        } else if (op == "nn") {
          C.noalias() = A * W;
        } else {
          C.noalias() = A.transpose() * W;
        }
      }
    };
    sample();  // warm-up: page in, allocate Eigen's blocking buffers once
    double best = 1e30, total = 0;
    int reps = 0;
    while (reps < 3 || total < min_seconds) {
      const auto t0 = std::chrono::steady_clock::now();
      sample();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = dt < best ? dt : best;
      total += dt;
      ++reps;
      if (reps >= 100000) break;
    }
    const double flops = 2.0 * s.m * s.n * s.k * s.count;
    std::printf("%s %ld %ld %ld %ld %.9g %.6g\n", s.op.c_str(), s.m, s.n, s.k, s.count, best, flops / best / 1e9);
    std::fflush(stdout);
    if (C(0, 0) == 12345.678f) std::printf(" \n");  // keep C alive
  }
  return 0;
}
