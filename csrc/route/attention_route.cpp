// aten::_scaled_dot_product_flash_attention_for_cpu and its backward, while the native
// route is installed (route.h): the CPU flash kernels F.scaled_dot_product_attention
// reaches once PyTorch has checked its arguments and turned a bool mask additive. The
// cached decision runs hetero's cpu attention (writing out and the log-sum-exp in
// PyTorch's layouts, so either side's backward takes either side's forward) or PyTorch's
// kernel, called directly.
//
// Layouts, as PyTorch's CPU kernel allocates them (and its meta function promises, which
// torch.compile checks): out dense in the dim order of q, as empty_like; lse (B, Hq, Sq)
// float32 over (B, Sq, Hq) storage; the gradients (B, H, S, D) over (B, S, H, D) storage.
//
// Also hetero_route::attention and ::attention_op, the common case of hetero.attention and
// of torch.ops.hetero.attention_forward (see attention_call below).
#include <algorithm>
#include <cmath>

#include "backends/cpu/attention.h"
#include "route/common.h"

namespace hetero::route {
namespace {

// The arguments both kernels share (after their leading tensors).
struct Arguments {
  double dropout_p = 0.0;
  bool causal = false;
  Operand mask;  // no handle: no mask
  std::optional<double> scale;

  Arguments(const StableIValue* stack) {
    dropout_p = unboxed<double>(stack[0]);
    causal = unboxed<bool>(stack[1]);
    take_optional_tensor(stack[2], &mask);
    if (auto s = optional_arg(stack[3])) scale = unboxed<double>(*s);
  }
  AtenTensorHandle* mask_handle() { return mask.handle != nullptr ? &mask.handle : nullptr; }
  double* scale_ptr() { return scale ? &*scale : nullptr; }
};

// The mask as the (B, Hq, Sq, Sk) view hetero's kernels take: PyTorch broadcasts it from
// the right, so a missing or size-1 dim gets stride 0. Its dtype is bool, q's (`dtype`) or
// float32: the decisions leave any other to PyTorch or the Python path.
TensorView expanded_mask(const Operand& mask, const Operand& q, const Operand& k, DType dtype) {
  const int64_t target[4] = {q.sizes[0], q.sizes[1], q.sizes[2], k.sizes[2]};
  TensorView v;
  v.data = mask.data;
  if (mask.dtype == g_shim.boolean) v.dtype = DType::boolean;
  else if (!hetero_dtype(mask.dtype, &v.dtype)) v.dtype = dtype;
  v.ndim = 4;
  for (int d = 0; d < 4; ++d) {
    const int64_t source = d - (4 - mask.dim);
    const bool present = source >= 0 && mask.sizes[source] != 1;
    v.sizes[d] = target[d];
    v.strides[d] = present ? mask.strides[source] : 0;
  }
  return v;
}

// Which dims of the mask broadcast, its rank and dtype: what the decision may depend on.
int64_t mask_code(const Operand& mask) {
  if (mask.handle == nullptr) return 0;
  int64_t code = 1 + (mask.dim << 1) + (int64_t{mask.dtype} << 8);
  for (int64_t d = 0; d < mask.dim; ++d) code += int64_t{mask.sizes[d] == 1} << (16 + d);
  return code;
}

// A fresh 4-D tensor of `t`'s dtype and sizes (the last one `last`), dense with its dims
// in the order of t's strides (outermost first), as empty_like lays out a view.
AtenTensorHandle empty_like(const Operand& t, int64_t last) {
  int order[4] = {0, 1, 2, 3};
  std::stable_sort(order, order + 4, [&](int x, int y) { return t.strides[x] > t.strides[y]; });
  const int64_t sizes[4] = {t.sizes[0], t.sizes[1], t.sizes[2], last};
  int64_t strides[4], step = 1;
  for (int i = 3; i >= 0; --i) {
    strides[order[i]] = step;
    step *= sizes[order[i]] > 1 ? sizes[order[i]] : 1;
  }
  return empty(4, sizes, strides, t.dtype);
}

AtenTensorHandle empty_bshd(const Operand& t) {
  const int64_t S = t.sizes[2], H = t.sizes[1], D = t.sizes[3];
  const int64_t strides[4] = {S * H * D, D, H * D, 1};
  return empty(4, t.sizes, strides, t.dtype);
}

double flops(const Operand& q, const Operand& k, const Operand& v, bool causal) {
  const double sq = static_cast<double>(q.sizes[2]), sk = static_cast<double>(k.sizes[2]);
  double pairs = sq * sk;  // hetero's attention_flops: bottom-right causal pairs
  if (causal) pairs = sq <= sk ? sq * sk - sq * (sq - 1) / 2 : sk * (sk + 1) / 2;
  return 2.0 * static_cast<double>(q.sizes[0] * q.sizes[1]) * pairs *
         static_cast<double>(q.sizes[3] + v.sizes[3]);
}

// The decision for the forward or the backward, asked of Python on a miss. A decode step
// brings a new key length every token, so a decision Python marks bucket-wide is kept
// under the lengths' bucket (and whether Sq == Sk, which causal alignment depends on).
int64_t decide(OpCode op, const Operand& q, const Operand& k, const Operand& v, Arguments& args) {
  const int64_t sq = q.sizes[2], sk = k.sizes[2];
  const Key exact{op, q.sizes[0], q.sizes[1], k.sizes[1], sq, sk, q.sizes[3], v.sizes[3], q.dtype,
                  int64_t{args.causal} | int64_t{args.dropout_p != 0} << 1 | int64_t{bool(args.scale)} << 2,
                  mask_code(args.mask), alignment({q.data, k.data, v.data, args.mask.data})};
  Key bucketed = exact;
  bucketed[4] = bucket_of(sq);
  bucketed[5] = bucket_of(sk);
  bucketed[12] = sq == sk;
  return decision(exact, bucketed, [&] {
    StableIValue stack[10] = {q.copy(), k.copy(), v.copy(),
                              args.mask.handle != nullptr ? args.mask.copy() : q.copy(),
                              boxed(args.mask.handle != nullptr), boxed(args.dropout_p),
                              boxed(args.causal), boxed(args.scale.value_or(0.0)),
                              boxed(bool(args.scale)), boxed(op == kOpAttentionBackward)};
    return ask_python("hetero_route::decide_attention", stack);
  });
}

double softmax_scale(const Arguments& args, const Operand& q) {
  return args.scale ? *args.scale : 1.0 / std::sqrt(static_cast<double>(q.sizes[3]));
}

void forward(StableIValue* stack, uint64_t, uint64_t) {
  Operand q(stack[0]), k(stack[1]), v(stack[2]);
  Arguments args(stack + 3);
  DType dtype;
  const int64_t decided = routing(kRouteAttention) && q.dim == 4 && k.dim == 4 && v.dim == 4
                              ? decide(kOpAttention, q, k, v, args)
                              : int64_t{-1} * 4 + kTorch;  // not counted
  AtenTensorHandle out = nullptr, lse = nullptr;
  if ((decided & 3) == kNative && hetero_dtype(q.dtype, &dtype)) {
    const int64_t B = q.sizes[0], H = q.sizes[1], S = q.sizes[2];
    const int64_t lse_sizes[3] = {B, H, S}, lse_strides[3] = {S * H, 1, H};
    Operand o, l;
    o.reset(empty_like(q, v.sizes[3]));
    l.reset(empty(3, lse_sizes, lse_strides, g_shim.float32));
    TensorView mask_view;
    if (args.mask.handle != nullptr) mask_view = expanded_mask(args.mask, q, k, dtype);
    const TensorView lse_view = l.view(DType::float32);
    const Status status = cpu::attention_forward(
        q.view(dtype), k.view(dtype), v.view(dtype),
        args.mask.handle != nullptr ? &mask_view : nullptr, args.causal, softmax_scale(args, q),
        o.view(dtype), &lse_view, kernel_threads());
    if (!status.ok()) throw std::runtime_error("hetero cpu.flash: " + status.message);
    out = o.release();
    lse = l.release();
  } else {
    check(g_shim.cpu_flash_attention(q.handle, k.handle, v.handle, args.dropout_p, args.causal,
                                     args.mask_handle(), args.scale_ptr(), &out, &lse),
          "CPU kernel of aten::_scaled_dot_product_flash_attention_for_cpu");
  }
  count(decided >> 2, static_cast<uint64_t>(flops(q, k, v, args.causal)));
  stack[0] = reinterpret_cast<StableIValue>(out);
  stack[1] = reinterpret_cast<StableIValue>(lse);
}


void backward(StableIValue* stack, uint64_t, uint64_t) {
  Operand dout(stack[0]), q(stack[1]), k(stack[2]), v(stack[3]), out(stack[4]), lse(stack[5]);
  Arguments args(stack + 6);
  DType dtype;
  const int64_t decided = routing(kRouteAttention) && q.dim == 4 && k.dim == 4 && v.dim == 4 && lse.dim == 3
                              ? decide(kOpAttentionBackward, q, k, v, args)
                              : int64_t{-1} * 4 + kTorch;
  AtenTensorHandle dq = nullptr, dk = nullptr, dv = nullptr;
  if ((decided & 3) == kNative && hetero_dtype(q.dtype, &dtype) && lse.dtype == g_shim.float32) {
    Operand gq, gk, gv;
    gq.reset(empty_bshd(q));
    gk.reset(empty_bshd(k));
    gv.reset(empty_bshd(v));
    TensorView mask_view;
    if (args.mask.handle != nullptr) mask_view = expanded_mask(args.mask, q, k, dtype);
    const Status status = cpu::attention_backward(
        dout.view(dtype), q.view(dtype), k.view(dtype), v.view(dtype), out.view(dtype),
        lse.view(DType::float32), args.mask.handle != nullptr ? &mask_view : nullptr, args.causal,
        softmax_scale(args, q), gq.view(dtype), gk.view(dtype), gv.view(dtype), kernel_threads(),
        cpu::kDefaultScoreMemoryBytes);
    if (!status.ok()) throw std::runtime_error("hetero cpu.flash backward: " + status.message);
    dq = gq.release();
    dk = gk.release();
    dv = gv.release();
  } else {
    check(g_shim.cpu_flash_attention_backward(dout.handle, q.handle, k.handle, v.handle,
                                              out.handle, lse.handle, args.dropout_p, args.causal,
                                              args.mask_handle(), args.scale_ptr(), &dq, &dk, &dv),
          "CPU kernel of aten::_scaled_dot_product_flash_attention_for_cpu_backward");
  }
  // The backward's five products against the forward's two, as hetero counts it.
  count(decided >> 2, static_cast<uint64_t>(2.5 * flops(q, k, v, args.causal)));
  stack[0] = reinterpret_cast<StableIValue>(dq);
  stack[1] = reinterpret_cast<StableIValue>(dk);
  stack[2] = reinterpret_cast<StableIValue>(dv);
}

// ---------------------------------------------------------------- hetero.attention(q, k, v)
// hetero_route::attention(Tensor q, Tensor k, Tensor v, bool causal, float? scale,
// Tensor? attn_mask) -> Tensor: hetero.attention without out or backend, on CPU tensors,
// after the Python path's checks (ops/attention/api.py prepare), made natively. The cached
// decision (hetero's dispatcher's) runs cpu's flash kernel, or, for a decode step (one
// query row, no mask) where dispatch chose the torch backend, PyTorch's CPU flash kernel as
// that backend's sdpa calls it. Anything else gets an undefined tensor (None in Python),
// and hetero.attention takes its Python path.

bool plain_attention_call(const Operand& q, const Operand& k, const Operand& v, DType* dtype) {
  if (q.dim != 4 || k.dim != 4 || v.dim != 4 || !hetero_dtype(q.dtype, dtype) ||
      k.dtype != q.dtype || v.dtype != q.dtype || !on_cpu(q) || !on_cpu(k) || !on_cpu(v)) {
    return false;
  }
  const int64_t Hq = q.sizes[1], Hkv = k.sizes[1];
  return k.sizes[0] == q.sizes[0] && v.sizes[0] == q.sizes[0] && k.sizes[3] == q.sizes[3] &&
         v.sizes[1] == Hkv && v.sizes[2] == k.sizes[2] && Hkv > 0 && Hq % Hkv == 0 &&
         q.sizes[3] > 0 && q.sizes[0] * Hq * q.sizes[2] > 0;
}

// A mask the Python path takes (api.py _check_mask): bool, or additive in q's dtype or
// float32, on the CPU, broadcasting to (B, Hq, Sq, Sk) from the right.
bool plain_mask(const Operand& mask, const Operand& q, const Operand& k) {
  if (mask.dim > 4 || !on_cpu(mask) ||
      !(mask.dtype == g_shim.boolean || mask.dtype == q.dtype || mask.dtype == g_shim.float32)) {
    return false;
  }
  const int64_t target[4] = {q.sizes[0], q.sizes[1], q.sizes[2], k.sizes[2]};
  for (int64_t d = 0; d < mask.dim; ++d) {
    const int64_t size = mask.sizes[d], wanted = target[d + 4 - mask.dim];
    if (size != 1 && size != wanted) return false;
  }
  return true;
}

// Whether any element of q (B, Hq, 1, D) is NaN: the torch backend gives such a row NaN,
// where PyTorch's CPU kernel may not, so those calls take the Python path.
bool has_nan_row(const Operand& q, DType dtype) {
  const auto* base = static_cast<const char*>(q.data);
  const int64_t bytes = dtype == DType::float32 ? 4 : 2;
  for (int64_t b = 0; b < q.sizes[0]; ++b) {
    for (int64_t h = 0; h < q.sizes[1]; ++h) {
      for (int64_t d = 0; d < q.sizes[3]; ++d) {
        const char* at = base + (b * q.strides[0] + h * q.strides[1] + d * q.strides[3]) * bytes;
        if (dtype == DType::float32) {
          float x;
          std::memcpy(&x, at, 4);
          if (std::isnan(x)) return true;
        } else {
          uint16_t bits;
          std::memcpy(&bits, at, 2);
          const uint16_t infinity = dtype == DType::bfloat16 ? 0x7f80 : 0x7c00;
          if ((bits & 0x7fff) > infinity) return true;
        }
      }
    }
  }
  return false;
}

// The call's decision (counter * 4 + action), asked of the Python op `decide` on a miss.
int64_t call_decision(const Operand& q, const Operand& k, const Operand& v, const Operand& mask,
                      bool causal, double scale, OpCode op, const char* decide) {
  const int64_t Sq = q.sizes[2], Sk = k.sizes[2];
  const Key exact{op, q.sizes[0], q.sizes[1], k.sizes[1], Sq, Sk, q.sizes[3], v.sizes[3], q.dtype,
                  causal, mask_code(mask), alignment({q.data, k.data, v.data, mask.data})};
  Key bucketed = exact;
  bucketed[4] = bucket_of(Sq);
  bucketed[5] = bucket_of(Sk);
  bucketed[12] = Sq == Sk;
  return decision(exact, bucketed, [&] {
    const bool masked = mask.handle != nullptr;
    StableIValue args[7] = {q.copy(), k.copy(), v.copy(), masked ? mask.copy() : q.copy(),
                            boxed(masked), boxed(causal), boxed(scale)};
    return ask_python(decide, args);
  });
}

// cpu's flash kernel into a fresh (B, Hq, Sq, Dv) `out` and, given `lse`, a fresh (B, Hq, Sq)
// float32 log-sum-exp, as the Python path allocates them; false if the kernel refuses.
bool run_flash(const Operand& q, const Operand& k, const Operand& v, const Operand& mask,
               bool causal, double scale, DType dtype, Operand* out, Operand* lse) {
  const int64_t B = q.sizes[0], Hq = q.sizes[1], Sq = q.sizes[2], Dv = v.sizes[3];
  const int64_t sizes[4] = {B, Hq, Sq, Dv}, strides[4] = {Hq * Sq * Dv, Sq * Dv, Dv, 1};
  out->reset(empty(4, sizes, strides, q.dtype));
  TensorView lse_view;
  if (lse != nullptr) {
    const int64_t lse_strides[3] = {Hq * Sq, Sq, 1};
    lse->reset(empty(3, sizes, lse_strides, g_shim.float32));
    lse_view = lse->view(DType::float32);
  }
  TensorView mask_view;
  if (mask.handle != nullptr) mask_view = expanded_mask(mask, q, k, dtype);
  return cpu::attention_forward(q.view(dtype), k.view(dtype), v.view(dtype),
                                mask.handle != nullptr ? &mask_view : nullptr, causal, scale,
                                out->view(dtype), lse != nullptr ? &lse_view : nullptr,
                                kernel_threads())
      .ok();
}

AtenTensorHandle attention_call_result(const Operand& q, const Operand& k, const Operand& v,
                                       const Operand& mask, bool causal, double scale) {
  DType dtype;
  const bool masked = mask.handle != nullptr;
  if (!plain_attention_call(q, k, v, &dtype) || (masked && !plain_mask(mask, q, k))) {
    return declined();
  }
  const int64_t action = call_decision(q, k, v, mask, causal, scale, kOpAttentionCall,
                                       "hetero_route::decide_attention_call") & 3;
  Operand out;
  if (action == kNative) {
    const bool ran = run_flash(q, k, v, mask, causal, scale, dtype, &out, nullptr);
    return ran ? out.release() : declined();
  }
  // One query row sees every key, causal or not: the torch backend calls SDPA unmasked,
  // which runs this kernel (for head dims equal and at least one key) on rows it has made
  // contiguous along the head dim, as the kernel requires.
  const int64_t B = q.sizes[0], Hq = q.sizes[1], Sq = q.sizes[2], Sk = k.sizes[2];
  const int64_t D = q.sizes[3], Dv = v.sizes[3];
  const bool rows_contiguous = q.strides[3] == 1 && k.strides[3] == 1 && v.strides[3] == 1;
  if (action != kTorch || masked || Sq != 1 || Sk == 0 || Dv != D || !rows_contiguous ||
      has_nan_row(q, dtype)) {
    return declined();
  }
  AtenTensorHandle result = nullptr, lse = nullptr;
  check(g_shim.cpu_flash_attention(q.handle, k.handle, v.handle, 0.0, false, nullptr, &scale,
                                   &result, &lse),
        "CPU kernel of aten::_scaled_dot_product_flash_attention_for_cpu");
  g_shim.delete_tensor_object(lse);
  out.reset(result);
  const int64_t sizes[4] = {B, Hq, Sq, Dv}, strides[4] = {Hq * Sq * Dv, Sq * Dv, Dv, 1};
  if (std::equal(strides, strides + 4, out.strides)) return out.release();
  Operand dense;  // the Python path copies into a fresh (B, Hq, 1, Dv) tensor: its strides
  dense.reset(empty(4, sizes, strides, q.dtype));
  check(g_shim.copy_(dense.handle, out.handle, 0), "aten::copy_");
  return dense.release();
}

void attention_call(StableIValue* stack, uint64_t, uint64_t) {
  Operand q(stack[0]), k(stack[1]), v(stack[2]), mask;
  const bool causal = unboxed<bool>(stack[3]);
  const auto given = optional_arg(stack[4]);
  take_optional_tensor(stack[5], &mask);
  const double scale = given ? unboxed<double>(*given)
                             : 1.0 / std::sqrt(static_cast<double>(q.dim == 4 ? q.sizes[3] : 1));
  stack[0] = reinterpret_cast<StableIValue>(attention_call_result(q, k, v, mask, causal, scale));
}

// hetero_route::attention_op(Tensor q, Tensor k, Tensor v, bool causal, float? scale,
// Tensor? attn_mask) -> (Tensor, Tensor): the same call for torch.ops.hetero.attention_forward's
// CPU kernel (ops/attention/torch_op.py): (out, lse) from cpu's flash kernel where dispatch
// picks it, counted in hetero.stats(); two undefined tensors (None) for anything else.
void attention_op_call(StableIValue* stack, uint64_t, uint64_t) {
  Operand q(stack[0]), k(stack[1]), v(stack[2]), mask, out, lse;
  const bool causal = unboxed<bool>(stack[3]);
  const auto given = optional_arg(stack[4]);
  take_optional_tensor(stack[5], &mask);
  DType dtype;
  stack[0] = reinterpret_cast<StableIValue>(declined());
  stack[1] = reinterpret_cast<StableIValue>(declined());
  const bool masked = mask.handle != nullptr;
  if (!plain_attention_call(q, k, v, &dtype) || (masked && !plain_mask(mask, q, k))) return;
  const double scale =
      given ? unboxed<double>(*given) : 1.0 / std::sqrt(static_cast<double>(q.sizes[3]));
  const int64_t decided = call_decision(q, k, v, mask, causal, scale, kOpAttentionOp,
                                        "hetero_route::decide_attention_op");
  if ((decided & 3) != kNative || !run_flash(q, k, v, mask, causal, scale, dtype, &out, &lse)) {
    return;
  }
  count(decided >> 2, static_cast<uint64_t>(flops(q, k, v, causal)));
  g_shim.delete_tensor_object(reinterpret_cast<AtenTensorHandle>(stack[0]));
  g_shim.delete_tensor_object(reinterpret_cast<AtenTensorHandle>(stack[1]));
  stack[0] = out.take();
  stack[1] = lse.take();
}

}  // namespace

const Registration kAttentionKernels[2] = {
    {"_scaled_dot_product_flash_attention_for_cpu", forward},
    {"_scaled_dot_product_flash_attention_for_cpu_backward", backward}};
const Registration kAttentionCall = {"attention", attention_call};
const Registration kAttentionOpCall = {"attention_op", attention_op_call};

}  // namespace hetero::route
