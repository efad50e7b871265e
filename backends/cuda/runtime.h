// The portability header: one kernel source, three ways to run it.
//
//   nvcc   (HETERO_GPU_CUDA)  CUDA runtime; tensor cores through nvcuda::wmma
//   hipcc  (HETERO_GPU_HIP)   HIP runtime; the generic SIMT path
//   g++    (HETERO_GPU_HOST)  the execution model emulated on the CPU
//                             (host_emulation.h), so the kernel logic is tested
//                             where no GPU exists
//
// Kernels spell the execution model the CUDA way (blockIdx, threadIdx,
// __shared__), synchronise with block_sync() only (no warp intrinsics, so
// AMD's 64-wide wavefronts need nothing different) and are started with
// launch(). Everything runtime-specific a launcher needs is named gpu_* here.
#pragma once

#include <cstdint>

#if defined(HETERO_GPU_HOST)
#include "backends/cuda/host_emulation.h"
#define HETERO_GPU_PLATFORM "host"
#define HETERO_HAS_WMMA 1

#elif defined(__HIPCC__)
#include <hip/hip_runtime.h>
#define HETERO_GPU_HIP 1
#define HETERO_GPU_PLATFORM "hip"
#define HETERO_HAS_WMMA 0  // rocWMMA is not part of a plain HIP install
using gpuError_t = hipError_t;
using gpuStream_t = hipStream_t;
using gpuDeviceProp = hipDeviceProp_t;
#define gpuSuccess hipSuccess
#define gpuGetErrorString hipGetErrorString
#define gpuGetLastError hipGetLastError
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuGetDevice hipGetDevice
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuRuntimeGetVersion hipRuntimeGetVersion
#define gpuDriverGetVersion hipDriverGetVersion

#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#define HETERO_GPU_CUDA 1
#define HETERO_GPU_PLATFORM "cuda"
#define HETERO_HAS_WMMA 1  // the module is built for sm_80 and newer only
using gpuError_t = cudaError_t;
using gpuStream_t = cudaStream_t;
using gpuDeviceProp = cudaDeviceProp;
#define gpuSuccess cudaSuccess
#define gpuGetErrorString cudaGetErrorString
#define gpuGetLastError cudaGetLastError
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuGetDevice cudaGetDevice
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuRuntimeGetVersion cudaRuntimeGetVersion
#define gpuDriverGetVersion cudaDriverGetVersion
#endif

#include "hetero/dtype.h"

// Fully unrolled loops keep fragment and accumulator arrays in registers
// (indexing them at run time would put them in local memory).
#if defined(HETERO_GPU_HOST)
#define HETERO_UNROLL
#else
#define HETERO_UNROLL _Pragma("unroll")
#endif

namespace hetero {
namespace gpu {

#if !defined(HETERO_GPU_HOST)
__device__ __forceinline__ void block_sync() { __syncthreads(); }

// kernel<<<grid, block, 0, stream>>>(args...), then the launch error, if any.
template <typename... Params, typename... Args>
gpuError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, void* stream,
                  Args&&... args) {
  kernel<<<grid, block, 0, static_cast<gpuStream_t>(stream)>>>(static_cast<Args&&>(args)...);
  return gpuGetLastError();
}
#endif

#if HETERO_HAS_WMMA && !defined(HETERO_GPU_HOST)
namespace wmma = nvcuda::wmma;
#endif

// Input element types as the kernels see them: raw 16-bit storage, moved
// between global and shared memory as bits and widened only to compute.
// wmma_t is the type tensor-core fragments are declared with.
struct F16 {
#if defined(HETERO_GPU_CUDA)
  using wmma_t = __half;
#else
  using wmma_t = Half;
#endif
  static HETERO_HOST_DEVICE float widen(uint16_t bits) { return half_to_float(Half{bits}); }
  static HETERO_HOST_DEVICE uint16_t narrow(float v) { return float_to_half(v).bits; }
};

struct BF16 {
#if defined(HETERO_GPU_CUDA)
  using wmma_t = __nv_bfloat16;
#else
  using wmma_t = BFloat16;
#endif
  static HETERO_HOST_DEVICE float widen(uint16_t bits) { return bfloat16_to_float(BFloat16{bits}); }
  static HETERO_HOST_DEVICE uint16_t narrow(float v) { return float_to_bfloat16(v).bits; }
};

}  // namespace gpu
}  // namespace hetero
