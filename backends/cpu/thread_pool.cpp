// With OpenMP (the usual build), parallel_run is one `omp parallel` region.
// torch's CPU wheels load their own libgomp (SONAME libgomp.so.1) before
// hetero._C, so the loader hands this module that same runtime: hetero and
// torch share one set of worker threads instead of two pools fighting for the
// cores (a second pool loses whenever torch's workers are still spin-waiting
// after a torch op, which on 2 cores cost 20% of an attention call).
//
// Without OpenMP, a small pool: workers wait on a condition variable for a new
// generation number; each runs fn(index) if its index is below the requested
// count, then decrements `remaining`. The caller takes part as index 0 and
// then waits for remaining == 0. One mutex serialises whole calls.

#include "thread_pool.h"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#elif defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace hetero {
namespace cpu {

int threads_for_work(int requested, int64_t work, int64_t min_work_per_thread) {
  const int64_t useful = std::max<int64_t>(1, work / min_work_per_thread);
  return static_cast<int>(std::min<int64_t>(usable_threads(requested), useful));
}

#if defined(_OPENMP)

int usable_threads(int requested) {
  if (requested <= 1 || omp_in_parallel()) return 1;  // nested: stay on this thread
  return std::min(requested, omp_get_thread_limit());
}

void parallel_run(int num_threads, const std::function<void(int)>& fn) {
  if (num_threads <= 1) {
    fn(0);
    return;
  }
  // fn's barriers need exactly num_threads threads: no dynamic adjustment.
  const int dynamic = omp_get_dynamic();
  omp_set_dynamic(0);
#pragma omp parallel num_threads(num_threads)
  fn(omp_get_thread_num());
  omp_set_dynamic(dynamic);
}

#else  // no OpenMP: the portable pool

namespace {

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  void run(int num_threads, const std::function<void(int)>& fn) {
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    grow(num_threads - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      active_ = num_threads - 1;
      remaining_ = num_threads - 1;
      ++generation_;
    }
    wake_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return remaining_ == 0; });
    job_ = nullptr;
  }

 private:
  // A new worker is told the current generation rather than reading it when
  // it starts: by then the job it was created for may already be posted.
  void grow(int count) {
    while (static_cast<int>(workers_.size()) < count) {
      const int index = static_cast<int>(workers_.size()) + 1;
      const uint64_t now = generation_;  // only run() (under call_mutex_) changes it
      workers_.emplace_back([this, index, now] { work(index, now); });
    }
  }

  void work(int index, uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stopping_) return;
        if (index > active_) continue;
        job = job_;
      }
      (*job)(index);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--remaining_ == 0) done_.notify_one();
    }
  }

  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int active_ = 0, remaining_ = 0;
  bool stopping_ = false;
};

Pool* pool_instance = nullptr;
std::once_flag pool_once;

// A forked child has the parent's memory but none of its threads: start a
// fresh pool there (the old object is leaked on purpose; joining threads that
// do not exist would hang).
void forget_pool_in_child() { pool_instance = new Pool(); }

Pool& pool() {
  std::call_once(pool_once, [] {
    pool_instance = new Pool();  // never destroyed: workers may outlive static teardown
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
#endif
  });
  return *pool_instance;
}

}  // namespace

int usable_threads(int requested) { return requested < 1 ? 1 : requested; }

void parallel_run(int num_threads, const std::function<void(int)>& fn) {
  if (num_threads <= 1) {
    fn(0);
    return;
  }
  pool().run(num_threads, fn);
}

#endif  // _OPENMP

void Barrier::wait() {
  const uint32_t gen = generation_.load(std::memory_order_acquire);
  if (waiting_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
    waiting_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    return;
  }
  for (int spins = 0; generation_.load(std::memory_order_acquire) == gen; ++spins) {
    if (spins > 2000) std::this_thread::yield();
  }
}

}  // namespace cpu
}  // namespace hetero
