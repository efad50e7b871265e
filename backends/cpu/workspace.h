// Grow-only, 64-byte aligned float scratch memory for packed panels and
// accumulator tiles. Kept between calls (one per calling thread) because
// fresh multi-megabyte allocations cost page faults on every GEMM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace hetero {
namespace cpu {

class Workspace {
 public:
  // At least `floats` floats, 64-byte aligned; contents unspecified. May throw
  // std::bad_alloc (callers reserve before starting threads).
  float* reserve(int64_t floats) {
    const size_t want = static_cast<size_t>(floats) + kAlignFloats;
    if (want > size_) {
      storage_.reset(new float[want]);
      size_ = want;
    }
    const uintptr_t p = reinterpret_cast<uintptr_t>(storage_.get());
    const uintptr_t aligned = (p + 63) & ~static_cast<uintptr_t>(63);
    return reinterpret_cast<float*>(aligned);
  }

 private:
  static constexpr size_t kAlignFloats = 16;
  std::unique_ptr<float[]> storage_;
  size_t size_ = 0;
};

// One block of at least `floats` floats for each of `threads` threads,
// reused across the calling thread's calls. May throw std::bad_alloc: call it
// before parallel_run.
inline std::vector<float*> per_thread_scratch(int threads, int64_t floats) {
  thread_local std::vector<Workspace> workspaces;
  if (workspaces.size() < static_cast<size_t>(threads)) workspaces.resize(threads);
  std::vector<float*> blocks(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) blocks[t] = workspaces[t].reserve(floats);
  return blocks;
}

constexpr int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }
constexpr int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

}  // namespace cpu
}  // namespace hetero
