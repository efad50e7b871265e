// hetero's GPU launchers: the framework-free API of hetero._C_cuda (nvcc),
// hetero._C_rocm (hipcc) and hetero._C_gpu_host (the kernels run by the
// host emulation, for tests). No CUDA, HIP or torch type appears here: the
// stream is the caller's cudaStream_t/hipStream_t as a pointer, and tensors
// are TensorViews of device memory (host memory for the emulation).
//
// Every launcher validates its views, launches on `stream` on the current
// device, and returns a Status: InvalidArgument/Unsupported naming the
// argument, or Internal carrying the runtime's error string. Nothing waits
// for the kernel to finish.
#pragma once

#include <string>

#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace hetero {
namespace gpu {

// How the kernels multiply: tensor cores (nvcuda::wmma; CUDA builds, sm_80+)
// or plain fused multiply-adds on every thread (HIP builds). The host
// emulation has both, so both are tested without a GPU.
enum class MathPath { tensor_cores, simt };

// "cuda", "hip" or "host".
const char* platform();

// Whether this build has `path`.
bool has_path(MathPath path);

// out = alpha * (a @ b) + beta * bias, float32 accumulation.
//   a (..., M, K), b (..., K, N): float16 or bfloat16, one dtype, any strides
//   out (..., M, N): a's dtype or float32; bias: null or (..., M, N), a's
//   dtype or float32, ignored when float32(beta) == 0. Batch dims identical
//   (broadcast first, stride 0 allowed), at most 6 of them.
Status gemm(const TensorView& a, const TensorView& b, const TensorView& out, const TensorView* bias,
            double alpha, double beta, void* stream, MathPath path);

// Flash attention forward: out = softmax(q @ k^T * scale + mask) @ v per
// (batch, query head); query head h reads key/value head h / (Hq / Hkv).
//   q (B, Hq, Sq, D), k (B, Hkv, Sk, D), v (B, Hkv, Sk, D), out (B, Hq, Sq, D):
//     float16 or bfloat16, one dtype, any strides, D = 64 or 128.
//   mask: null, or (B, Hq, Sq, Sk) bool (true = may attend) or additive
//     (float32 or q's dtype), stride 0 where broadcast.
//   causal: query i sees keys j <= i + Sk - Sq (bottom-right aligned).
// Rows that see no key get zeros.
Status attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                         const TensorView* mask, bool causal, double scale, const TensorView& out,
                         void* stream, MathPath path);

// What the runtime says about this machine, for `hetero info` and probes.
struct RuntimeReport {
  int device_count = 0;
  int runtime_version = 0;  // as the runtime encodes it (e.g. 13000)
  int driver_version = 0;   // 0: no driver
  std::string error;        // why device_count could not be read, or empty
};
RuntimeReport runtime_report();

}  // namespace gpu
}  // namespace hetero
