// hetero._C: the framework-free native module. Bindings only, no logic.
//
// Tensors cross as plain tuples (data_ptr, dtype, sizes, strides), strides in
// elements, so this module never includes a torch header and does not depend
// on libtorch's C++ ABI: one wheel works with any torch build.

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "backends/cpu/attention.h"
#include "backends/cpu/attention_serving.h"
#include "backends/cpu/gemm.h"
#include "backends/cpu/kernels.h"
#include "backends/cpu/scaled_gemm.h"
#include "backends/cpu/thread_pool.h"
#include "py_views.h"
#include "route/bindings.h"
#include "hetero/dtype.h"
#include "hetero/status.h"
#include "hetero/tensor_view.h"

namespace py = pybind11;
using hetero::DType;
using hetero::Status;
using hetero::TensorView;
using namespace hetero::py_views;

namespace {

void gemm(py::handle a, py::handle b, py::handle out, py::handle bias, double alpha, double beta,
          int num_threads) {
  const TensorView av = to_view(a, "a");
  const TensorView bv = to_view(b, "b");
  const TensorView ov = to_view(out, "out");
  TensorView cv;
  if (!bias.is_none()) cv = to_view(bias, "bias");

  Status s;
  {
    py::gil_scoped_release release;
    s = hetero::cpu::gemm(av, bv, ov, bias.is_none() ? nullptr : &cv, alpha, beta, num_threads);
  }
  raise_if_error(s);
}

void scaled_gemm(py::handle a, py::handle b, py::handle scale_a, py::handle scale_b, int recipe,
                 py::handle bias, py::handle out, int num_threads) {
  const TensorView av = to_view(a, "a"), bv = to_view(b, "b"), ov = to_view(out, "out");
  TensorView sa_slot, sb_slot, bias_slot;
  const TensorView* sa = optional_view(scale_a, "scale_a", &sa_slot);
  const TensorView* sb = optional_view(scale_b, "scale_b", &sb_slot);
  const TensorView* cv = optional_view(bias, "bias", &bias_slot);
  if (recipe < 0 || recipe > 2) throw py::value_error("recipe: expected 0 (tensor), 1 (row) or 2 (block)");
  Status s;
  {
    py::gil_scoped_release release;
    s = hetero::cpu::scaled_gemm(av, bv, sa, sb, static_cast<hetero::cpu::ScaleRecipe>(recipe), cv,
                                 ov, num_threads);
  }
  raise_if_error(s);
}

void attention_forward(py::handle q, py::handle k, py::handle v, py::handle mask, bool causal,
                       double scale, py::handle out, py::handle lse, int num_threads) {
  const TensorView qv = to_view(q, "q"), kv = to_view(k, "k"), vv = to_view(v, "v");
  const TensorView ov = to_view(out, "out");
  TensorView mask_slot, lse_slot;
  const TensorView* mv = optional_view(mask, "mask", &mask_slot);
  const TensorView* lv = optional_view(lse, "lse", &lse_slot);
  Status s;
  {
    py::gil_scoped_release release;
    s = hetero::cpu::attention_forward(qv, kv, vv, mv, causal, scale, ov, lv, num_threads);
  }
  raise_if_error(s);
}

void attention_backward(py::handle dout, py::handle q, py::handle k, py::handle v, py::handle out,
                        py::handle lse, py::handle mask, bool causal, double scale, py::handle dq,
                        py::handle dk, py::handle dv, int num_threads, int64_t score_memory_bytes) {
  const TensorView dov = to_view(dout, "dout"), qv = to_view(q, "q"), kv = to_view(k, "k");
  const TensorView vv = to_view(v, "v"), ov = to_view(out, "out"), lv = to_view(lse, "lse");
  const TensorView dqv = to_view(dq, "dq"), dkv = to_view(dk, "dk"), dvv = to_view(dv, "dv");
  TensorView mask_slot;
  const TensorView* mv = optional_view(mask, "mask", &mask_slot);
  Status s;
  {
    py::gil_scoped_release release;
    s = hetero::cpu::attention_backward(dov, qv, kv, vv, ov, lv, mv, causal, scale, dqv, dkv, dvv,
                                        num_threads, score_memory_bytes);
  }
  raise_if_error(s);
}

hetero::cpu::ServingMask serving_mask(double scale, bool causal, int64_t window_left,
                                      int64_t window_right, double softcap) {
  return {scale, causal, window_left, window_right, softcap};
}

void varlen_attention(py::handle q, py::handle k, py::handle v, py::handle cu_q, py::handle cu_k,
                      double scale, bool causal, int64_t window_left, int64_t window_right,
                      double softcap, py::handle out, py::handle lse, int num_threads) {
  const TensorView qv = to_view(q, "q"), kv = to_view(k, "k"), vv = to_view(v, "v");
  const TensorView cqv = to_view(cu_q, "cu_seqlens_q"), ckv = to_view(cu_k, "cu_seqlens_k");
  const TensorView ov = to_view(out, "out");
  TensorView lse_slot;
  const TensorView* lv = optional_view(lse, "lse", &lse_slot);
  const auto mask = serving_mask(scale, causal, window_left, window_right, softcap);
  Status s;
  {
    py::gil_scoped_release release;
    s = hetero::cpu::varlen_attention_forward(qv, kv, vv, cqv, ckv, mask, ov, lv, num_threads);
  }
  raise_if_error(s);
}

void paged_attention(py::handle q, py::handle k_cache, py::handle v_cache, py::handle block_table,
                     py::handle seq_lens, py::handle cu_q, double scale, bool causal,
                     int64_t window_left, int64_t window_right, double softcap, py::handle out,
                     int num_threads) {
  const TensorView qv = to_view(q, "q"), kc = to_view(k_cache, "k_cache");
  const TensorView vc = to_view(v_cache, "v_cache"), bt = to_view(block_table, "block_table");
  const TensorView sl = to_view(seq_lens, "seq_lens"), ov = to_view(out, "out");
  TensorView cu_slot;
  const TensorView* cqv = optional_view(cu_q, "cu_seqlens_q", &cu_slot);
  const auto mask = serving_mask(scale, causal, window_left, window_right, softcap);
  Status s;
  {
    py::gil_scoped_release release;
    s = hetero::cpu::paged_attention_forward(qv, kc, vc, bt, sl, cqv, mask, ov, num_threads);
  }
  raise_if_error(s);
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_FULL_VER);
#else
  return "unknown";
#endif
}

py::dict build_info() {
  py::dict info;
  info["compiler"] = compiler();
  info["cxx_standard"] = static_cast<long>(__cplusplus);
#ifdef HETERO_BUILD_TYPE
  info["build_type"] = HETERO_BUILD_TYPE;
#endif
#ifdef NDEBUG
  info["assertions"] = false;
#else
  info["assertions"] = true;
#endif
  info["pybind11"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." +
                     std::to_string(PYBIND11_VERSION_MINOR) + "." +
                     std::to_string(PYBIND11_VERSION_PATCH);
  info["max_dims"] = hetero::kMaxDims;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "hetero native kernels (framework-free; tensors passed as raw views)";

  py::enum_<DType>(m, "DType", py::arithmetic())
      .value("float32", DType::float32)
      .value("float16", DType::float16)
      .value("bfloat16", DType::bfloat16)
      .value("float64", DType::float64)
      .value("bool", DType::boolean)
      .value("float8_e4m3fn", DType::float8_e4m3fn)
      .value("float8_e5m2", DType::float8_e5m2)
      .value("float8_e4m3fnuz", DType::float8_e4m3fnuz)
      .value("float8_e5m2fnuz", DType::float8_e5m2fnuz)
      .value("int8", DType::int8)
      .value("int32", DType::int32);

  m.attr("MAX_DIMS") = hetero::kMaxDims;

  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("bias") = py::none(),
        py::arg("alpha") = 1.0, py::arg("beta") = 1.0, py::arg("num_threads") = 1,
        "out = alpha * (a @ b) + beta * bias, in place into out.\n\n"
        "Each tensor is (data_ptr, dtype_code, sizes, strides), strides in elements.\n"
        "bias may be None; it is ignored when float32(beta) == 0. All four share one ndim\n"
        "(2..MAX_DIMS) and identical batch sizes (broadcast first; batch strides may be 0).\n"
        "Raises ValueError for malformed or inconsistent views, TypeError for\n"
        "unsupported dtypes. Runs on up to num_threads threads with the GIL released.");

  m.def("scaled_gemm", &scaled_gemm, py::arg("a"), py::arg("b"), py::arg("scale_a"),
        py::arg("scale_b"), py::arg("recipe"), py::arg("bias"), py::arg("out"),
        py::arg("num_threads") = 1,
        "out = (a * scale_a) @ (b * scale_b) + bias, in place into out, for float8 or int8\n"
        "a (M, K) and b (K, N). recipe: 0 tensor-wise, 1 row-wise, 2 block-wise scales\n"
        "(backends/cpu/scaled_gemm.h gives the shapes); scale_a and scale_b both None for\n"
        "an int8 call with an int32 out. Tensors as for gemm.");
  m.def("attention_forward", &attention_forward, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("mask"), py::arg("causal"), py::arg("scale"), py::arg("out"),
        py::arg("lse") = py::none(), py::arg("num_threads") = 1,
        "Flash attention: out = softmax(q @ k^T * scale + mask) @ v, in place into out.\n\n"
        "q (B, Hq, Sq, D), k (B, Hkv, Sk, D), v (B, Hkv, Sk, Dv), out (B, Hq, Sq, Dv) as views;\n"
        "mask None or a (B, Hq, Sq, Sk) bool/additive view; causal is bottom-right aligned;\n"
        "lse None or a (B, Hq, Sq) float32 view receiving the natural-log log-sum-exp\n"
        "(+inf for rows that see no key; such rows get zeros).");
  m.def("attention_backward", &attention_backward, py::arg("dout"), py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("mask"), py::arg("causal"),
        py::arg("scale"), py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("num_threads") = 1,
        py::arg("score_memory_bytes") = hetero::cpu::kDefaultScoreMemoryBytes,
        "Gradients of attention_forward into dq, dk, dv (views shaped like q, k, v), from the\n"
        "saved out and lse; dk/dv sum over the query heads of each key/value head. The score\n"
        "gradients are kept between its two sweeps when B*Hq*Sq*Sk floats fit in\n"
        "score_memory_bytes, else recomputed.");

  m.def("varlen_attention", &varlen_attention, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("cu_seqlens_q"), py::arg("cu_seqlens_k"), py::arg("scale"), py::arg("causal"),
        py::arg("window_left"), py::arg("window_right"), py::arg("softcap"), py::arg("out"),
        py::arg("lse"), py::arg("num_threads"),
        "Attention over packed sequences q (Tq, Hq, D), k (Tk, Hkv, D), v (Tk, Hkv, Dv) split by\n"
        "int32 cu_seqlens_q/k (B + 1,), into out (Tq, Hq, Dv) and, unless None, the float32\n"
        "(Hq, Tq) log-sum-exp lse; window -1 = unbounded, softcap 0 = off.");
  m.def("paged_attention", &paged_attention, py::arg("q"), py::arg("k_cache"), py::arg("v_cache"),
        py::arg("block_table"), py::arg("seq_lens"), py::arg("cu_seqlens_q"), py::arg("scale"),
        py::arg("causal"), py::arg("window_left"), py::arg("window_right"), py::arg("softcap"),
        py::arg("out"), py::arg("num_threads"),
        "Attention of q (Tq, Hq, D) over caches (num_blocks, block_size, Hkv, D) addressed by an\n"
        "int32 block_table (B, max_blocks) and seq_lens (B,); cu_seqlens_q None = one query per\n"
        "sequence. Into out (Tq, Hq, Dv).");
  m.def("fma_peak_gflops", [](int num_threads, double seconds) {
        if (num_threads < 1) throw py::value_error("num_threads: expected >= 1");
        py::gil_scoped_release release;
        return hetero::cpu::measure_fma_peak(num_threads, seconds);
      }, py::arg("num_threads"), py::arg("seconds") = 0.2,
      "Measured float32 multiply-add peak (GFLOP/s) of the active kernel set on\n"
      "num_threads threads, running for about `seconds`.");

  m.def("bf16_dot_peak_gflops", [](int num_threads, double seconds) {
        if (num_threads < 1) throw py::value_error("num_threads: expected >= 1");
        py::gil_scoped_release release;
        return hetero::cpu::measure_bf16_dot_peak(num_threads, seconds);
      }, py::arg("num_threads"), py::arg("seconds") = 0.2,
      "Measured bf16 pair-dot peak (GFLOP/s, vdpbf16ps) of the active kernel set on\n"
      "num_threads threads; 0.0 where the set (or the CPU) has no bf16 dot.");

  m.def("amx_bf16_peak_gflops", [](int num_threads, double seconds) {
        if (num_threads < 1) throw py::value_error("num_threads: expected >= 1");
        py::gil_scoped_release release;
        return hetero::cpu::measure_amx_bf16_peak(num_threads, seconds);
      }, py::arg("num_threads"), py::arg("seconds") = 0.2,
      "Measured AMX bf16 peak (GFLOP/s, tdpbf16ps tile products) on num_threads threads;\n"
      "0.0 where the CPU, the OS or the compiler gives no AMX.");

  m.def("cpu_isa", [] { return std::string(hetero::cpu::active_kernels().isa); },
        "Name of the CPU kernel set in use: 'avx512', 'avx2' or 'portable'.");
  m.def("cpu_bf16_pair_dot", [] { return hetero::cpu::active_kernels().bf16_gemm != nullptr; },
        "Whether the active CPU kernel set multiplies bf16 x bf16 GEMMs in bf16 pairs\n"
        "(vdpbf16ps), as PyTorch's oneDNN does: subnormal bf16 inputs and subnormal\n"
        "float32 partial sums read as zero. Otherwise bf16 is widened to float32.");
  m.def("cpu_amx_attention", [] { return hetero::cpu::active_kernels().amx_paged_rows != nullptr; },
        "Whether the active CPU kernel set runs bf16 paged attention on AMX tiles (a CPU with\n"
        "AMX-BF16 the OS lets this process use, and a build with AMX).");
  m.def("cpu_vector_paged_attention", [] { return hetero::cpu::active_kernels().vector_paged_rows != nullptr; },
        "Whether the active CPU kernel set runs paged attention on its AVX-512 vector kernel\n"
        "(the avx512 set; bf16 by vdpbf16ps where the CPU has AVX512_BF16).");
  m.def("cpu_isas", [] { return std::string(hetero::cpu::available_kernels()); },
        "The CPU kernel sets this build and CPU run, comma-separated, best last.");
  m.def("set_cpu_isa", [](const std::string& isa) {
        const std::string previous = hetero::cpu::active_kernels().isa;
        if (!hetero::cpu::select_kernels(isa.c_str())) {
          throw py::value_error("isa: expected 'auto' or a kernel set this CPU and build "
                                "support (" + std::string(hetero::cpu::available_kernels()) +
                                "), got '" + isa + "'");
        }
        return previous;
      }, py::arg("isa"),
      "Select the CPU kernel set ('auto', 'avx512', 'avx2', 'portable'); returns the previous\n"
      "name.\n"
      "For tests and benchmarks: 'auto' picks the best this CPU runs.");

  hetero::route::bind(m);

  m.def("build_info", &build_info, "Compiler and build settings of this extension, as a dict.");
}
