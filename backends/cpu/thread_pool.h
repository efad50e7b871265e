// Parallel regions for the CPU kernels (OpenMP, or a small pool where the
// compiler has none), and a barrier for threads inside one region.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace hetero {
namespace cpu {

// How many threads parallel_run can really give (1 inside another parallel
// region). Plans that split work must be made for this count.
int usable_threads(int requested);

// Threads for a call doing `work` units, at most `requested` (and what
// usable_threads allows), at least 1, and no more than one per
// `min_work_per_thread` units: below that, waking a thread costs more than
// it saves.
int threads_for_work(int requested, int64_t work, int64_t min_work_per_thread);

// Calls fn(thread_index) for thread_index in [0, num_threads), all at once,
// and returns when every call has returned; num_threads must come from
// usable_threads(). The caller runs index 0. fn must not throw.
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
// The same for its bf16_dot_loop; 0 where the set has none.
double measure_bf16_dot_peak(int num_threads, double seconds);
// The same for the AMX bf16 tile loop (amx_peak.h); 0 without AMX.
double measure_amx_bf16_peak(int num_threads, double seconds);

// [begin, end) of the i-th of `parts` near-equal chunks of `total` units.
inline void split_range(int64_t total, int64_t parts, int64_t i, int64_t* begin, int64_t* end) {
  const int64_t base = total / parts, extra = total % parts;
  *begin = i * base + (i < extra ? i : extra);
  *end = *begin + base + (i < extra ? 1 : 0);
}

}  // namespace cpu
}  // namespace hetero
