// GEMM calls served natively:
// - aten::mm, aten::bmm and their .out forms on the CPU, while the native route is
//   installed (route.h): PyTorch's own checks and messages first (these kernels stand where
//   its checks ran), then the cached decision: hetero's cpu::gemm, PyTorch's kernel (called
//   directly, so nothing recurses) or a Python kernel through the op hetero_route::run_gemm;
// - hetero_route::gemm and ::gemm_op, the common case of hetero.gemm and of
//   torch.ops.hetero.gemm (see gemm_call below).
#include "backends/cpu/gemm.h"
#include "route/common.h"

namespace hetero::route {
namespace {

enum class Op { mm, bmm };

std::string shape(const Operand& t) {
  std::string text;
  for (int64_t d = 0; d < t.dim; ++d) text += (d ? "x" : "") + std::to_string(t.sizes[d]);
  return text;
}

// The checks of PyTorch's mm/bmm meta functions, with their messages.
void check_operands(Op op, const Operand& a, const Operand& b) {
  if (op == Op::mm) {
    if (a.dim != 2) throw std::runtime_error("self must be a matrix");
    if (b.dim != 2) throw std::runtime_error("mat2 must be a matrix");
    if (a.sizes[1] != b.sizes[0]) {
      throw std::runtime_error("mat1 and mat2 shapes cannot be multiplied (" + shape(a) + " and " +
                               shape(b) + ")");
    }
  } else {
    if (a.dim != 3) throw std::runtime_error("batch1 must be a 3D tensor");
    if (b.dim != 3) throw std::runtime_error("batch2 must be a 3D tensor");
    if (b.sizes[0] != a.sizes[0] || b.sizes[1] != a.sizes[2]) {
      throw std::runtime_error("Expected size for first two dimensions of batch2 tensor to be: [" +
                               std::to_string(a.sizes[0]) + ", " + std::to_string(a.sizes[2]) +
                               "] but got: [" + std::to_string(b.sizes[0]) + ", " +
                               std::to_string(b.sizes[1]) + "].");
    }
  }
  if (a.dtype != b.dtype) {
    throw std::runtime_error("expected m1 and m2 to have the same dtype, but got: " +
                             dtype_name(a.dtype) + " != " + dtype_name(b.dtype));
  }
}

// A GEMM key (op, batch, M, N, K, ...) with its sizes bucketed: a prefill or a batch of
// sequences brings new sizes often; dispatch sees only their bucket and whether a batch.
Key bucketed(const Key& exact) {
  Key key = exact;
  key[1] = exact[1] > 1;
  for (int field = 2; field <= 4; ++field) key[field] = bucket_of(exact[field]);
  return key;
}

AtenTensorHandle empty_result(Op op, const Operand& a, const Operand& b) {
  const int64_t m = a.size(-2), n = b.size(-1);
  const int64_t sizes[3] = {a.sizes[0], m, n}, strides[3] = {m * n, n, 1};
  const int64_t dims = op == Op::mm ? 2 : 3;
  return empty(dims, sizes + (3 - dims), strides + (3 - dims), a.dtype);
}

// PyTorch's own kernel into `out` (allocated here when null).
AtenTensorHandle torch_kernel(Op op, const Operand& a, const Operand& b, AtenTensorHandle out) {
  if (out == nullptr) out = empty_result(op, a, b);
  const ShimError error = op == Op::mm ? g_shim.cpu_mm_out(out, a.handle, b.handle)
                                       : g_shim.cpu_bmm_out(out, a.handle, b.handle);
  if (error != 0) g_shim.delete_tensor_object(out);
  check(error, op == Op::mm ? "CPU kernel of aten::mm" : "CPU kernel of aten::bmm");
  return out;
}

AtenTensorHandle native_gemm(Op op, const Operand& a, const Operand& b, DType dtype,
                             AtenTensorHandle out) {
  Operand result;
  result.reset(out != nullptr ? out : empty_result(op, a, b));
  const Status status = cpu::gemm(a.view(dtype), b.view(dtype), result.view(dtype), nullptr, 1.0,
                                  0.0, kernel_threads());
  if (!status.ok()) throw std::runtime_error("hetero cpu.gemm: " + status.message);
  return result.release();
}

// The .out forms use `out` as given only when it has exactly the fresh result's layout;
// otherwise PyTorch's kernel resizes or rejects it.
bool plain_out(Op op, const Operand& a, const Operand& b, const Operand& out) {
  const int64_t m = a.size(-2), n = b.size(-1);
  if (out.dtype != a.dtype || out.dim != (op == Op::mm ? 2 : 3)) return false;
  if (op == Op::bmm && (out.sizes[0] != a.sizes[0] || (a.sizes[0] > 1 && out.strides[0] != m * n))) {
    return false;
  }
  return out.size(-2) == m && out.size(-1) == n && (m <= 1 || out.stride(-2) == n) &&
         (n <= 1 || out.stride(-1) == 1);
}

void run(Op op, StableIValue* stack, bool has_out) {
  Operand a(stack[0]), b(stack[1]);
  AtenTensorHandle out = has_out ? reinterpret_cast<AtenTensorHandle>(stack[2]) : nullptr;
  check_operands(op, a, b);
  bool routed = routing(kRouteGemm);
  if (routed && has_out) {
    Operand given(stack[2]);
    routed = plain_out(op, a, b, given);
    given.release();  // still the caller's: returned below
  }
  if (!routed) {
    stack[0] = reinterpret_cast<StableIValue>(torch_kernel(op, a, b, out));
    return;
  }
  const int64_t batch = op == Op::mm ? 1 : a.sizes[0];
  const int64_t m = a.size(-2), n = b.size(-1), k = a.size(-1);
  const Key key{op == Op::mm ? kOpMm : kOpBmm, batch, m, n, k, a.dtype,
                2 * column_major(a) + column_major(b), alignment({a.data, b.data})};
  const int64_t decided = decision(key, bucketed(key), [&] {
    StableIValue args[2] = {a.copy(), b.copy()};
    return ask_python("hetero_route::decide_gemm", args);
  });
  const int64_t action = decided & 3, counter = decided >> 2;
  DType dtype;
  AtenTensorHandle result;
  if (action == kNative && hetero_dtype(a.dtype, &dtype)) {
    result = native_gemm(op, a, b, dtype, out);
  } else if (action == kPython && !has_out) {
    StableIValue args[2] = {a.copy(), b.copy()};
    call_python("hetero_route::run_gemm", args);  // counted in Python
    result = reinterpret_cast<AtenTensorHandle>(args[0]);
  } else {
    result = torch_kernel(op, a, b, out);
  }
  if (action != kPython) count(counter, static_cast<uint64_t>(2 * batch * m * n * k));
  stack[0] = reinterpret_cast<StableIValue>(result);
}

// ---------------------------------------------------------------- hetero.gemm(a, b)
// hetero_route::gemm(Tensor a, Tensor b) -> Tensor: hetero.gemm's common case (two CPU
// matrices of one float dtype, no bias, alpha = 1, a fresh result) without Python. The
// cached decision runs cpu::gemm or PyTorch's kernel. Anything else (other shapes, devices
// or dtypes, bad input, a kernel written in Python) gets an undefined tensor, None in
// Python, and hetero.gemm takes its Python path, which checks, names bad arguments and
// dispatches.
//
// hetero_route::gemm_op(Tensor a, Tensor b) -> Tensor: the same for torch.ops.hetero.gemm's
// CPU kernel (ops/gemm/torch_op.py), whose calls hetero.stats() counts: its decisions (asked
// of hetero_route::decide_gemm_op) carry the counter each call it serves adds to.
AtenTensorHandle gemm_call_result(const Operand& a, const Operand& b, OpCode op,
                                  const char* decide) {
  DType dtype;
  if (a.dim != 2 || b.dim != 2 || a.sizes[1] != b.sizes[0] || a.dtype != b.dtype ||
      !hetero_dtype(a.dtype, &dtype) || !on_cpu(a) || !on_cpu(b)) {
    return declined();
  }
  const int64_t m = a.sizes[0], n = b.sizes[1], k = a.sizes[1];
  const Key key{op, 1, m, n, k, a.dtype, 2 * column_major(a) + column_major(b),
                alignment({a.data, b.data})};
  const int64_t decided = decision(key, bucketed(key), [&] {
    StableIValue args[2] = {a.copy(), b.copy()};
    return ask_python(decide, args);
  });
  AtenTensorHandle result;
  if ((decided & 3) == kNative) result = native_gemm(Op::mm, a, b, dtype, nullptr);
  else if ((decided & 3) == kTorch) result = torch_kernel(Op::mm, a, b, nullptr);
  else return declined();
  count(decided >> 2, static_cast<uint64_t>(2 * m * n * k));  // the entry's decisions: none
  return result;
}

void gemm_call(StableIValue* stack, uint64_t, uint64_t) {
  Operand a(stack[0]), b(stack[1]);
  stack[0] = reinterpret_cast<StableIValue>(
      gemm_call_result(a, b, kOpGemmCall, "hetero_route::decide_gemm_call"));
}

void gemm_op_call(StableIValue* stack, uint64_t, uint64_t) {
  Operand a(stack[0]), b(stack[1]);
  stack[0] = reinterpret_cast<StableIValue>(
      gemm_call_result(a, b, kOpGemmOp, "hetero_route::decide_gemm_op"));
}

void mm(StableIValue* stack, uint64_t, uint64_t) { run(Op::mm, stack, false); }
void mm_out(StableIValue* stack, uint64_t, uint64_t) { run(Op::mm, stack, true); }
void bmm(StableIValue* stack, uint64_t, uint64_t) { run(Op::bmm, stack, false); }
void bmm_out(StableIValue* stack, uint64_t, uint64_t) { run(Op::bmm, stack, true); }

}  // namespace

const Registration kGemmKernels[4] = {{"mm", mm}, {"mm.out", mm_out}, {"bmm", bmm}, {"bmm.out", bmm_out}};
const Registration kGemmCall = {"gemm", gemm_call};
const Registration kGemmOpCall = {"gemm_op", gemm_op_call};

}  // namespace hetero::route
