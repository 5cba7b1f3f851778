// Build-time probe for RNNCORE_SIMD=auto: prints the single-thread float GEMM rate (GFLOP/s) that Eigen reaches
// with the flags this file is compiled with, at shapes like the recurrent kernels' (a batch of rows times a weight).
// CMakeLists.txt compiles it once per candidate instruction set and keeps the fastest.
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>

int main() {
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int shapes[][3] = {{64, 1024, 256}, {16, 1024, 256}, {256, 512, 512}};  // m, n, k
  double total_flops = 0, total_seconds = 0;
  for (const auto& s : shapes) {
    const Matrix a = Matrix::Random(s[0], s[2]), b = Matrix::Random(s[2], s[1]);
    Matrix c(s[0], s[1]);
    double best = 1e30;
    for (int repeat = 0; repeat < 15; ++repeat) {
      const auto start = std::chrono::steady_clock::now();
      c.noalias() = a * b;
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    total_flops += 2.0 * s[0] * s[1] * s[2];
    total_seconds += best;
    if (c(0, 0) == 12345.f) std::printf(" ");  // keep the product alive
  }
  std::printf("%d", static_cast<int>(total_flops / total_seconds / 1e9));
  return 0;
}
