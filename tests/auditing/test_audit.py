"""hetero.audit on transformers models: a planted precision bug is found, ranked first,
named by module and confirmed by moving its calls to the reference; a simulated
target's reduced fp32 mode shows as GEMM drift; unservable calls come with reasons; bad
input is refused and leaves nothing enabled."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero.auditing import presets
from hetero.backends.simulated import fp32_mode

transformers = pytest.importorskip("transformers")


def _exact_gemm(args):
    args.out.copy_(hetero.reference_gemm(args.a, args.b, args.bias, args.alpha, args.beta,
                                         compute_dtype=torch.float64))


def _bf16_sums_beyond_k_500(args):
    """Exact, except that for K > 500 the running sum is kept in bf16 (every 32 of K)."""
    K = args.a.shape[-1]
    if K <= 500:
        return _exact_gemm(args)
    acc = torch.zeros(args.out.shape, dtype=torch.float32)
    for k0 in range(0, K, 32):
        acc = (acc + args.a[..., k0:k0 + 32].float() @ args.b[..., k0:k0 + 32, :].float())
        acc = acc.bfloat16().float()
    if args.bias is not None and args.beta != 0:
        acc = args.alpha * acc + args.beta * args.bias.float()
    else:
        acc = args.alpha * acc
    args.out.copy_(acc)


def _exact_attention(args):
    args.out.copy_(hetero.reference_attention(
        args.q, args.k, args.v, causal=args.causal, scale=args.scale, attn_mask=args.mask,
        compute_dtype=torch.float64))


class _Lossy(hetero.Backend):
    name, device_type, api_version, default = "lossy_k", "cpu", hetero.PLUGIN_API, False

    def kernels(self):
        dtypes = frozenset({torch.float32})
        return [hetero.Kernel("gemm", "k", _bf16_sums_beyond_k_500, hetero.Support(
                    dtypes=dtypes, features=frozenset({"bias", "batch"}))),
                hetero.Kernel("attention", "k", _exact_attention, hetero.Support(
                    dtypes=dtypes, features=frozenset({"causal", "gqa", "mask_bool",
                                                       "mask_additive"})))]


@pytest.fixture(scope="module")
def llama():
    model = presets.build("llama")  # intermediate 704: only down_proj has K > 500
    return model, presets.example_inputs(model, 24)


@pytest.fixture
def lossy():
    hetero.register_backend(_Lossy())
    yield "lossy_k"
    hetero.unregister_backend("lossy_k")


def test_a_planted_precision_bug_is_ranked_first_named_and_confirmed(llama, lossy):
    model, inputs = llama
    before = {n: p.clone() for n, p in model.state_dict().items()}
    report = hetero.audit(model, inputs, backend=lossy, dtype="float32", progress=False)
    bad = report.out_of_bound()
    layers = model.config.num_hidden_layers
    assert [c.module for c in bad] and all(c.module.endswith("mlp.down_proj") for c in bad)
    assert sorted(c.module for c in bad) == [f"model.layers.{i}.mlp.down_proj"
                                              for i in range(layers)]
    assert report.checked()[:layers] == bad  # ranked first
    moved = next(a for a in report.attribution if len(a["moved"]) == layers)
    assert moved["removed"] >= 0.9, report.attribution
    assert report.drift["hetero"]["rms_error"] > 10 * report.drift["torch"]["rms_error"]
    assert f"worst {bad[0].module} (gemm)" in report.verdict and "removes" in report.verdict
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    assert not hetero.is_enabled()


def test_reduced_fp32_on_a_simulated_target_drifts_more_and_the_gemms_carry_it(llama):
    model, inputs = llama
    with fp32_mode("exact"):
        exact = hetero.audit(model, inputs, backend="ascend_sim", progress=False)
    with fp32_mode("reduced"):
        reduced = hetero.audit(model, inputs, backend="ascend_sim", progress=False)
    drift = lambda r: r.drift["hetero"]["rms_error"]  # noqa: E731
    assert drift(reduced) > 10 * drift(exact)
    assert exact.out_of_bound() == [] and reduced.out_of_bound()
    by_op = {o["op"]: o["removed"] for o in reduced.by_op}
    assert by_op["gemm"] > 0.5 and by_op["gemm"] > 2 * by_op.get("attention", 0.0), by_op
    assert "by op: gemm calls" in reduced.verdict


def test_calls_a_target_cannot_serve_are_listed_with_the_reason():
    model = presets.build("gemma")  # head dim 32: mlu_sim serves multiples of 64 only
    report = hetero.audit(model, presets.example_inputs(model, 16), backend="mlu_sim",
                          progress=False)
    unserved = [c for c in report.unserved() if c.op == "attention"]
    assert len(unserved) == model.config.num_hidden_layers
    assert all(c.module.endswith("self_attn") for c in unserved)
    assert all("head dim 32" in c.reason for c in unserved), unserved[0].reason
    assert all(c.served_by == "torch.sdpa" for c in unserved)  # the model still ran
    assert "not served by mlu_sim" in report.verdict
    assert "## Calls mlu_sim did not serve" in report.markdown()


def test_training_compares_every_gradient(llama, lossy):
    model, inputs = llama
    report = hetero.audit(model, inputs, backend=lossy, dtype="float32", train=True,
                          progress=False, steps=[])
    names = {g["name"] for g in report.gradients}
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}
    assert report.gradients[0]["relative_error"] > 1e-3  # bf16 sums show in the gradients
    assert all(p.grad is None for p in model.parameters())  # the user's model untouched


def test_sampling_checks_one_call_in_n(llama):
    model, inputs = llama
    every = hetero.audit(model, inputs, backend="cpu", progress=False)
    third = hetero.audit(model, inputs, backend="cpu", sample=3, progress=False)
    assert len(third.calls) == len(every.calls)
    assert len(third.checked()) == -(-len(every.checked()) // 3)


class _Raises(torch.nn.Module):
    def forward(self, input_ids):
        raise RuntimeError("broken layer")


@pytest.mark.parametrize("call, error, match", [
    (lambda m, x: hetero.audit(_Raises(), x, progress=False), RuntimeError,
     "^model: raised RuntimeError on these inputs: broken layer"),
    (lambda m, x: hetero.audit("llama", x, progress=False), TypeError, "^model: expected"),
    (lambda m, x: hetero.audit(m, [1, 2], progress=False), TypeError, "^inputs: expected"),
    (lambda m, x: hetero.audit(m, x, backend="nope", progress=False), ValueError,
     "^backend: no backend named 'nope'"),
    (lambda m, x: hetero.audit(m, x, dtype="int8", progress=False), ValueError, "^dtype:"),
    (lambda m, x: hetero.audit(m, x, sample=0, progress=False), ValueError, "^sample:"),
    (lambda m, x: hetero.audit(m, x, ops=["conv"], progress=False), ValueError, "^ops:"),
])
def test_bad_input_is_refused_naming_the_argument(llama, call, error, match):
    model, inputs = llama
    with pytest.raises(error, match=match):
        call(model, inputs)
    assert not hetero.is_enabled()
    assert not hetero.counters.observers
