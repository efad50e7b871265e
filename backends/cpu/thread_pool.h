// A small persistent thread pool for the CPU kernels, and a barrier for
// threads inside one parallel_run.
//
// Why not OpenMP: torch wheels ship their own OpenMP runtime; a second one in
// the same process fights it for cores. This pool is a few dozen lines, its
// threads sleep between calls, and it is rebuilt after fork().
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace hetero {
namespace cpu {

// Calls fn(thread_index) for thread_index in [0, num_threads), in parallel,
// and returns when every call has returned. The caller runs index 0. Calls
// from several host threads are serialised. fn must not throw or call
// parallel_run itself.
void parallel_run(int num_threads, const std::function<void(int)>& fn);

// Threads of one parallel_run meeting between phases. Spins briefly (phases
// are short), then yields so an oversubscribed machine still progresses.
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait();

 private:
  const int count_;
  std::atomic<int> waiting_{0};
  std::atomic<uint32_t> generation_{0};
};

// GFLOP/s of the active kernel set's fma_loop on num_threads threads at
// once, timed over about `seconds` after a warm-up.
double measure_fma_peak(int num_threads, double seconds);

// [begin, end) of the i-th of `parts` near-equal chunks of `total` units.
inline void split_range(int64_t total, int64_t parts, int64_t i, int64_t* begin, int64_t* end) {
  const int64_t base = total / parts, extra = total % parts;
  *begin = i * base + (i < extra ? i : extra);
  *end = *begin + base + (i < extra ? 1 : 0);
}

}  // namespace cpu
}  // namespace hetero
