#include "hetero/attention_args.h"

#include <string>

#include "hetero/view_checks.h"

namespace hetero {
namespace {

Status check_4d(const TensorView& t, const char* name) {
  Status s = check_view(t, name, 4);
  if (s.ok() && t.ndim != 4) return invalid(name, "4 dims", std::to_string(t.ndim));
  return s;
}

Status check_sizes(const TensorView& t, const char* name, const int64_t* want, int32_t n) {
  for (int32_t d = 0; d < n; ++d) {
    if (t.sizes[d] != want[d]) return invalid(name, "sizes " + join(want, n), join(t.sizes, t.ndim));
  }
  return Status::Ok();
}

Status check_dtype(const TensorView& t, const char* name, DType want) {
  if (t.dtype == want) return Status::Ok();
  return Status::Unsupported(std::string(name) + ": expected dtype " + dtype_name(want) + ", got " +
                             dtype_name(t.dtype));
}

}  // namespace

Status validate_attention(const TensorView& q, const TensorView& k, const TensorView& v,
                          const TensorView* mask, const TensorView& out, const TensorView* lse,
                          const TensorView* const grads[4], AttentionShape* shape) {
  Status s;
  if (!(s = check_4d(q, "q")).ok() || !(s = check_4d(k, "k")).ok() || !(s = check_4d(v, "v")).ok() ||
      !(s = check_4d(out, "out")).ok() || (mask && !(s = check_4d(*mask, "mask")).ok())) {
    return s;
  }
  if (q.dtype != DType::float32 && q.dtype != DType::float16 && q.dtype != DType::bfloat16) {
    return Status::Unsupported(std::string("q: expected dtype float32, float16 or bfloat16, got ") +
                               dtype_name(q.dtype));
  }
  if (!(s = check_dtype(k, "k", q.dtype)).ok() || !(s = check_dtype(v, "v", q.dtype)).ok() ||
      !(s = check_dtype(out, "out", q.dtype)).ok()) {
    return s;
  }
  AttentionShape& g = *shape;
  g = {q.sizes[0], q.sizes[1], k.sizes[1], q.sizes[2], k.sizes[2], q.sizes[3], v.sizes[3]};
  if (g.Hkv == 0 || g.Hq % g.Hkv != 0) {
    return invalid("k", "a head count dividing q's " + std::to_string(g.Hq), std::to_string(g.Hkv));
  }
  const int64_t k_want[4] = {g.B, g.Hkv, g.Sk, g.D};
  const int64_t v_want[3] = {g.B, g.Hkv, g.Sk};
  const int64_t out_want[4] = {g.B, g.Hq, g.Sq, g.Dv};
  const int64_t mask_want[4] = {g.B, g.Hq, g.Sq, g.Sk};
  if (!(s = check_sizes(k, "k", k_want, 4)).ok() || !(s = check_sizes(v, "v", v_want, 3)).ok() ||
      !(s = check_sizes(out, "out", out_want, 4)).ok() ||
      (mask && !(s = check_sizes(*mask, "mask", mask_want, 4)).ok())) {
    return s;
  }
  if (mask && mask->dtype != DType::boolean && mask->dtype != DType::float32 &&
      mask->dtype != q.dtype) {
    return Status::Unsupported(std::string("mask: expected dtype bool, float32 or ") +
                               dtype_name(q.dtype) + ", got " + dtype_name(mask->dtype));
  }
  if (lse != nullptr) {
    if (!(s = check_view(*lse, "lse", 3)).ok()) return s;
    if (lse->ndim != 3) return invalid("lse", "3 dims", std::to_string(lse->ndim));
    if (!(s = check_sizes(*lse, "lse", out_want, 3)).ok() ||
        !(s = check_dtype(*lse, "lse", DType::float32)).ok()) {
      return s;
    }
  }
  if (grads != nullptr) {
    const char* names[4] = {"dout", "dq", "dk", "dv"};
    const TensorView* like[4] = {&out, &q, &k, &v};
    for (int i = 0; i < 4; ++i) {
      if (!(s = check_4d(*grads[i], names[i])).ok() ||
          !(s = check_sizes(*grads[i], names[i], like[i]->sizes, 4)).ok() ||
          !(s = check_dtype(*grads[i], names[i], q.dtype)).ok()) {
        return s;
      }
    }
  }
  return Status::Ok();
}

}  // namespace hetero
