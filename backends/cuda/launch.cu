// Launchers for the kernels of gemm.cuh and attention.cuh: validate the
// views, describe them to the kernel, pick the instantiation, launch.
// Compiled by nvcc as is, by hipcc through backends/rocm/launch.hip, and by a
// C++ compiler for the host emulation through launch_host.cpp.

#include "backends/cuda/launch.h"

#include <string>

#include "backends/cuda/attention.cuh"
#include "backends/cuda/gemm.cuh"
#include "backends/cuda/runtime.h"
#include "hetero/attention_args.h"
#include "hetero/gemm_args.h"

namespace hetero {
namespace gpu {
namespace {

#if defined(HETERO_GPU_CUDA)
constexpr const char* kRuntime = "CUDA";
constexpr bool kHasSimt = false;  // sm_80+ always has tensor cores: one path, fewer kernels
#elif defined(HETERO_GPU_HIP)
constexpr const char* kRuntime = "HIP";
constexpr bool kHasSimt = true;
#else
constexpr const char* kRuntime = "emulated GPU";
constexpr bool kHasSimt = true;
#endif

constexpr unsigned kMaxGridYZ = 65535;

Status runtime_error(const char* kernel, gpuError_t e) {
  return Status::Internal(std::string(kRuntime) + " error launching " + kernel + ": " +
                          gpuGetErrorString(e));
}

Status missing_path(MathPath path) {
  return Status::Unsupported(std::string("this ") + kRuntime + " build has no " +
                             (path == MathPath::tensor_cores ? "tensor-core" : "SIMT") + " path");
}

bool is_16bit_float(DType dt) { return dt == DType::float16 || dt == DType::bfloat16; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ------------------------------------------------------------------- GEMM

template <typename T, bool kTensorCores>
Status run_gemm(GemmArgs g, bool a_k_fast, bool b_k_fast, int64_t batches, void* stream) {
  using Kernel = void (*)(GemmArgs);
  const Kernel kernels[2][2] = {
      {gemm_kernel<T, kTensorCores, false, false>, gemm_kernel<T, kTensorCores, false, true>},
      {gemm_kernel<T, kTensorCores, true, false>, gemm_kernel<T, kTensorCores, true, true>}};
  const Kernel kernel = kernels[a_k_fast][b_k_fast];
  const unsigned n_tiles = static_cast<unsigned>(ceil_div(g.N, GemmTile::BN));
  const unsigned m_tiles = static_cast<unsigned>(ceil_div(g.M, GemmTile::BM));
  for (int64_t b0 = 0; b0 < batches; b0 += kMaxGridYZ) {
    g.batch0 = b0;
    const int64_t count = batches - b0 < kMaxGridYZ ? batches - b0 : kMaxGridYZ;
    const gpuError_t e = launch(kernel, dim3(n_tiles, m_tiles, static_cast<unsigned>(count)),
                                dim3(GemmTile::kThreads), stream, g);
    if (e != gpuSuccess) return runtime_error("gemm", e);
  }
  return Status::Ok();
}

template <typename T>
Status run_gemm_on(MathPath path, const GemmArgs& g, bool a_k_fast, bool b_k_fast, int64_t batches,
                   void* stream) {
#if HETERO_HAS_WMMA
  if (path == MathPath::tensor_cores) return run_gemm<T, true>(g, a_k_fast, b_k_fast, batches, stream);
#endif
  if constexpr (kHasSimt) {
    if (path == MathPath::simt) return run_gemm<T, false>(g, a_k_fast, b_k_fast, batches, stream);
  }
  return missing_path(path);
}

// ------------------------------------------------------------------ attention

template <typename T, int D, bool kTensorCores>
Status run_attention(const AttentionArgs& g, const AttentionShape& s, void* stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(s.Sq, AttentionTile<D>::BQ)),
                  static_cast<unsigned>(s.Hq), static_cast<unsigned>(s.B));
  const gpuError_t e = launch(attention_kernel<T, D, kTensorCores>, grid, dim3(kAttentionThreads),
                              stream, g);
  return e == gpuSuccess ? Status::Ok() : runtime_error("attention", e);
}

template <typename T, bool kTensorCores>
Status run_attention_d(const AttentionArgs& g, const AttentionShape& s, void* stream) {
  return s.D == 64 ? run_attention<T, 64, kTensorCores>(g, s, stream)
                   : run_attention<T, 128, kTensorCores>(g, s, stream);
}

template <typename T>
Status run_attention_on(MathPath path, const AttentionArgs& g, const AttentionShape& s,
                        void* stream) {
#if HETERO_HAS_WMMA
  if (path == MathPath::tensor_cores) return run_attention_d<T, true>(g, s, stream);
#endif
  if constexpr (kHasSimt) {
    if (path == MathPath::simt) return run_attention_d<T, false>(g, s, stream);
  }
  return missing_path(path);
}

void copy_strides(int64_t (&dst)[4], const TensorView& t) {
  for (int d = 0; d < 4; ++d) dst[d] = t.strides[d];
}

}  // namespace

const char* platform() { return HETERO_GPU_PLATFORM; }

bool has_path(MathPath path) {
  return path == MathPath::tensor_cores ? HETERO_HAS_WMMA != 0 : kHasSimt;
}

Status gemm(const TensorView& a, const TensorView& b, const TensorView& out, const TensorView* bias,
            double alpha, double beta, void* stream, MathPath path) {
  Status s = validate_gemm(a, b, out, bias);
  if (!s.ok()) return s;
  if (!is_16bit_float(a.dtype)) {
    return Status::Unsupported(std::string("a: hetero's GPU GEMM takes float16 or bfloat16, got ") +
                               dtype_name(a.dtype));
  }
  const int nb = a.ndim - 2;
  if (nb > kMaxBatchDims) {
    return Status::Unsupported("a: at most " + std::to_string(kMaxBatchDims) +
                               " batch dims, got " + std::to_string(nb));
  }
  if (out.numel() == 0) return Status::Ok();

  GemmArgs g = {};
  g.a = static_cast<const uint16_t*>(a.data);
  g.b = static_cast<const uint16_t*>(b.data);
  g.out = out.data;
  g.out_dtype = out.dtype;
  g.alpha = static_cast<float>(alpha);
  g.beta = static_cast<float>(beta);
  // The contract is float32 arithmetic: beta == 0 drops the bias as used.
  const TensorView* used_bias = g.beta != 0.0f ? bias : nullptr;
  g.bias = used_bias ? used_bias->data : nullptr;
  g.bias_dtype = used_bias ? used_bias->dtype : DType::float32;
  g.M = a.sizes[nb], g.K = a.sizes[nb + 1], g.N = b.sizes[nb + 1];
  g.a_rs = a.strides[nb], g.a_cs = a.strides[nb + 1];
  g.b_rs = b.strides[nb], g.b_cs = b.strides[nb + 1];
  g.out_rs = out.strides[nb], g.out_cs = out.strides[nb + 1];
  g.bias_rs = used_bias ? used_bias->strides[nb] : 0;
  g.bias_cs = used_bias ? used_bias->strides[nb + 1] : 0;
  g.batch_dims = nb;
  int64_t batches = 1;
  for (int d = 0; d < nb; ++d) {
    g.batch_sizes[d] = a.sizes[d];
    g.a_bs[d] = a.strides[d], g.b_bs[d] = b.strides[d], g.out_bs[d] = out.strides[d];
    g.bias_bs[d] = used_bias ? used_bias->strides[d] : 0;
    batches *= a.sizes[d];
  }
  if (ceil_div(g.M, GemmTile::BM) > kMaxGridYZ) {
    return Status::Unsupported("a: M = " + std::to_string(g.M) + " rows exceed the launch grid (at most " +
                               std::to_string(kMaxGridYZ * GemmTile::BM) + ")");
  }

  // Tiles follow each operand's contiguous dimension (see gemm.cuh).
  const bool a_k_fast = !(g.a_rs == 1 && g.a_cs != 1);
  const bool b_k_fast = g.b_rs == 1 && g.b_cs != 1;
  int64_t a_other[kMaxBatchDims + 1] = {a_k_fast ? g.a_rs : g.a_cs};
  int64_t b_other[kMaxBatchDims + 1] = {b_k_fast ? g.b_cs : g.b_rs};
  for (int d = 0; d < nb; ++d) a_other[d + 1] = g.a_bs[d], b_other[d + 1] = g.b_bs[d];
  g.a_vectors = vector_loads_ok(a.data, a_k_fast ? g.a_cs : g.a_rs, a_other, nb + 1);
  g.b_vectors = vector_loads_ok(b.data, b_k_fast ? g.b_rs : g.b_cs, b_other, nb + 1);

  return a.dtype == DType::float16
             ? run_gemm_on<F16>(path, g, a_k_fast, b_k_fast, batches, stream)
             : run_gemm_on<BF16>(path, g, a_k_fast, b_k_fast, batches, stream);
}

Status attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                         const TensorView* mask, bool causal, double scale, const TensorView& out,
                         void* stream, MathPath path) {
  AttentionShape shape;
  Status s = validate_attention(q, k, v, mask, out, nullptr, nullptr, &shape);
  if (!s.ok()) return s;
  if (!is_16bit_float(q.dtype)) {
    return Status::Unsupported(
        std::string("q: hetero's GPU attention takes float16 or bfloat16, got ") + dtype_name(q.dtype));
  }
  if ((shape.D != 64 && shape.D != 128) || shape.Dv != shape.D) {
    return Status::Unsupported("q: hetero's GPU attention takes head dims 64 or 128 (v's equal to q's), "
                               "got D = " + std::to_string(shape.D) + ", Dv = " + std::to_string(shape.Dv));
  }
  if (shape.B > kMaxGridYZ || shape.Hq > kMaxGridYZ) {
    return Status::Unsupported("q: batch and head counts must be at most " +
                               std::to_string(kMaxGridYZ) + " for the launch grid");
  }
  if (out.numel() == 0) return Status::Ok();

  AttentionArgs g = {};
  g.q = static_cast<const uint16_t*>(q.data);
  g.k = static_cast<const uint16_t*>(k.data);
  g.v = static_cast<const uint16_t*>(v.data);
  g.out = out.data;
  g.mask = mask ? mask->data : nullptr;
  g.mask_dtype = mask ? mask->dtype : DType::boolean;
  g.Sq = shape.Sq, g.Sk = shape.Sk, g.group = shape.group();
  copy_strides(g.q_s, q), copy_strides(g.k_s, k), copy_strides(g.v_s, v), copy_strides(g.out_s, out);
  if (mask) copy_strides(g.mask_s, *mask);
  g.scale_log2 = static_cast<float>(scale * 1.4426950408889634);
  g.causal = causal;
  g.q_vectors = vector_loads_ok(q.data, q.strides[3], q.strides, 3);
  g.k_vectors = vector_loads_ok(k.data, k.strides[3], k.strides, 3);
  g.v_vectors = vector_loads_ok(v.data, v.strides[3], v.strides, 3);

  return q.dtype == DType::float16 ? run_attention_on<F16>(path, g, shape, stream)
                                   : run_attention_on<BF16>(path, g, shape, stream);
}

RuntimeReport runtime_report() {
  RuntimeReport r;
#if defined(HETERO_GPU_HOST)
  r.device_count = 1;  // the emulation runs wherever the module loads
#else
  const gpuError_t e = gpuGetDeviceCount(&r.device_count);
  if (e != gpuSuccess) {
    r.device_count = 0;
    r.error = gpuGetErrorString(e);
    (void)gpuGetLastError();  // clear it, so the next launch does not report it
  }
  (void)gpuRuntimeGetVersion(&r.runtime_version);
  (void)gpuDriverGetVersion(&r.driver_version);
#endif
  return r;
}

}  // namespace gpu
}  // namespace hetero
