// The measured multiply-add peaks that benchmarks report "% of peak" against:
// every thread runs the active kernel set's fma_loop (fp32) or bf16_dot_loop
// (bf16 pair dot products), or the AMX tile loop, at the same time.

#include <chrono>
#include <vector>

#include "amx_peak.h"
#include "kernels.h"
#include "thread_pool.h"

namespace hetero {
namespace cpu {

namespace {

double measure_peak(int64_t (*loop)(int64_t), int num_threads, double seconds) {
  // Calibrate a round count that takes about `seconds` on one thread.
  int64_t rounds = 1 << 16;
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    loop(rounds);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (took > seconds / 4 || rounds > (int64_t{1} << 40)) {
      rounds = static_cast<int64_t>(rounds * seconds / (took > 0 ? took : 1e-9)) + 1;
      break;
    }
    rounds *= 4;
  }
  num_threads = usable_threads(num_threads);
  std::vector<int64_t> flops(static_cast<size_t>(num_threads));
  const auto start = std::chrono::steady_clock::now();
  parallel_run(num_threads, [&](int t) { flops[t] = loop(rounds); });
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double total = 0;
  for (int64_t f : flops) total += static_cast<double>(f);
  return total / took / 1e9;
}

}  // namespace

double measure_fma_peak(int num_threads, double seconds) {
  return measure_peak(active_kernels().fma_loop, num_threads, seconds);
}

double measure_bf16_dot_peak(int num_threads, double seconds) {
  const KernelSet& ks = active_kernels();
  return ks.bf16_dot_loop == nullptr ? 0.0 : measure_peak(ks.bf16_dot_loop, num_threads, seconds);
}

double measure_amx_bf16_peak(int num_threads, double seconds) {
  const AmxLoop loop = amx_bf16_loop();
  return loop == nullptr ? 0.0 : measure_peak(loop, num_threads, seconds);
}

}  // namespace cpu
}  // namespace hetero
