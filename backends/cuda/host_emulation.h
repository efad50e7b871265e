// The CUDA execution model, emulated on the CPU, for the kernels of
// backends/cuda/ compiled by a plain C++ compiler (HETERO_GPU_HOST).
//
// Purpose: test the kernel source's indexing, tiling, masking and epilogues
// on machines without a GPU (hetero's CI), with hetero's conformance suite.
// It says nothing about speed, and nothing about what only real hardware can
// get wrong (races the emulation serialises, memory-model subtleties).
//
// Model: each thread of a block is a fiber (ucontext) on the calling thread.
// Fibers run in turn until each reaches block_sync() or returns, which makes
// a barrier exact and the run deterministic; a block whose threads do not all
// reach the same barriers is reported, not hung. Blocks run one after the
// other, so `__shared__` (static storage here) belongs to the running block.
// wmma fragments hold their whole 16x16 tile in every thread: each thread of
// a warp computes the same tile, which is what the collective means, and
// only lane 0 stores it. Lanes run one after the other, so a lane that
// loads after lane 0 stored (O = O + P @ V in place) computes garbage; not
// storing it keeps the warp's single load-compute-store semantics.
// Blocks are one-dimensional (lane = threadIdx.x % 32), as hetero's are.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "hetero/dtype.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

namespace hetero {
namespace gpu {

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The running fiber's coordinates, set by the scheduler before each switch.
inline dim3 blockIdx, threadIdx, blockDim, gridDim;

using gpuError_t = int;
using gpuStream_t = void*;
constexpr gpuError_t gpuSuccess = 0;
constexpr gpuError_t gpuErrorBarrierDivergence = 1;
inline const char* gpuGetErrorString(gpuError_t e) {
  return e == gpuSuccess ? "no error"
                         : "block_sync() not reached by every thread of a block (emulation)";
}

namespace emulation {

constexpr size_t kFiberStack = 128 * 1024;

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  dim3 index;
  bool done = false;
  int barriers = 0;
};

struct Scheduler {
  ucontext_t main;
  std::vector<Fiber> fibers;
  int current = -1;
  void (*body)(void*) = nullptr;
  void* closure = nullptr;
};

inline Scheduler*& active() {
  static Scheduler* scheduler = nullptr;
  return scheduler;
}

inline void fiber_entry() {
  Scheduler& s = *active();
  s.body(s.closure);
  s.fibers[static_cast<size_t>(s.current)].done = true;
  // returning resumes uc_link, the scheduler
}

// Runs one block of fibers to completion; false if its barriers diverged.
inline bool run_block(Scheduler& s) {
  for (Fiber& f : s.fibers) {
    f.done = false;
    f.barriers = 0;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.get();
    f.context.uc_stack.ss_size = kFiberStack;
    f.context.uc_link = &s.main;
    makecontext(&f.context, fiber_entry, 0);
  }
  for (;;) {  // one round: every live fiber runs to its next barrier or its end
    for (size_t i = 0; i < s.fibers.size(); ++i) {
      if (s.fibers[i].done) continue;
      s.current = static_cast<int>(i);
      threadIdx = s.fibers[i].index;
      swapcontext(&s.main, &s.fibers[i].context);
    }
    int live = 0, waiting_at = -1;
    bool diverged = false;
    for (const Fiber& f : s.fibers) {
      if (f.done) continue;
      ++live;
      diverged = diverged || (waiting_at >= 0 && f.barriers != waiting_at);
      waiting_at = f.barriers;
    }
    if (live == 0) return true;
    if (diverged || live != static_cast<int>(s.fibers.size())) return false;
  }
}

}  // namespace emulation

inline void block_sync() {
  emulation::Scheduler& s = *emulation::active();
  emulation::Fiber& f = s.fibers[static_cast<size_t>(s.current)];
  ++f.barriers;
  swapcontext(&f.context, &s.main);
}

// Runs kernel(args...) over the grid, block after block. One launch at a time
// per process (shared memory is static storage).
template <typename... Params, typename... Args>
gpuError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, void* /*stream*/,
                  Args&&... args) {
  static std::mutex one_launch_at_a_time;
  std::lock_guard<std::mutex> lock(one_launch_at_a_time);

  auto call = [&] { kernel(args...); };
  emulation::Scheduler s;
  s.body = [](void* c) { (*static_cast<decltype(call)*>(c))(); };
  s.closure = &call;
  for (unsigned z = 0; z < block.z; ++z) {
    for (unsigned y = 0; y < block.y; ++y) {
      for (unsigned x = 0; x < block.x; ++x) {
        emulation::Fiber f;
        f.stack.reset(new char[emulation::kFiberStack]);
        f.index = dim3(x, y, z);
        s.fibers.push_back(std::move(f));
      }
    }
  }
  emulation::active() = &s;
  blockDim = block;
  gridDim = grid;
  gpuError_t status = gpuSuccess;
  for (unsigned z = 0; z < grid.z && status == gpuSuccess; ++z) {
    for (unsigned y = 0; y < grid.y && status == gpuSuccess; ++y) {
      for (unsigned x = 0; x < grid.x && status == gpuSuccess; ++x) {
        blockIdx = dim3(x, y, z);
        if (!emulation::run_block(s)) status = gpuErrorBarrierDivergence;
      }
    }
  }
  emulation::active() = nullptr;
  return status;
}

// nvcuda::wmma's surface, 16x16x16 only, each fragment a whole tile.
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulation has 16x16x16 tiles only");
  float v[16][16];  // logical (row, col) of the operand or accumulator
};

template <typename Use, typename T, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  constexpr bool kRowMajor = std::is_same<Layout, row_major>::value;
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) f.v[r][c] = to_float(kRowMajor ? p[r * ldm + c] : p[c * ldm + r]);
  }
}

template <typename T>
void load_matrix_sync(fragment<accumulator, 16, 16, 16, T>& f, const float* p, unsigned ldm,
                      layout_t layout) {
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) f.v[r][c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  }
}

template <typename T>
void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm,
                       layout_t layout) {
  if (threadIdx.x % 32 != 0) return;
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.v[r][c];
  }
}

template <typename Use, typename T, typename Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float value) {
  for (auto& row : f.v) {
    for (float& x : row) x = value;
  }
}

// d = a @ b + c with float accumulation (tensor cores: exact products of
// 16-bit inputs, float sums).
template <typename T, typename LA, typename LB, typename TC>
void mma_sync(fragment<accumulator, 16, 16, 16, TC>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b,
              const fragment<accumulator, 16, 16, 16, TC>& c) {
  float result[16][16];
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      float sum = c.v[i][j];
      for (int k = 0; k < 16; ++k) sum += a.v[i][k] * b.v[k][j];
      result[i][j] = sum;
    }
  }
  std::memcpy(d.v, result, sizeof result);
}

}  // namespace wmma

// Host stand-ins for the runtime queries a launcher makes.
inline gpuError_t gpuGetLastError() { return gpuSuccess; }

}  // namespace gpu
}  // namespace hetero
