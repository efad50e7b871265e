"""A real model: a transformers Llama decoder with grouped-query attention (small config,
random weights, no download) with ``hetero.enable()``, forward, training step and
torch.compile, against the same model without hetero.

Tolerance (DESIGN.md, "Numerics"): every compared quantity ``X`` (logits, loss, each
parameter's gradient) is also computed by the same model in float64 (the weights of the
tested dtype, upcast), and hetero must stay within twice PyTorch's own error in the
same dtype, plus a floor of ``FLOOR * max|X_64|``:
``max|X_hetero - X_64| <= 2 max|X_torch - X_64| + FLOOR max|X_64|``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import hetero
from hetero.testing import check_within, flash_rule_bound

CONFIG = dict(vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
              attn_implementation="sdpa")
FLOOR = {torch.float32: 1e-5, torch.bfloat16: 2.0**-8}
DTYPES = [torch.float32, torch.bfloat16]


def make_model(dtype: torch.dtype) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**CONFIG)).to(dtype)


def tokens(batch=2, length=24, seed=1) -> torch.Tensor:
    return torch.randint(0, CONFIG["vocab_size"], (batch, length),
                         generator=torch.Generator().manual_seed(seed))


def train_step(model, ids):
    """Loss and every parameter's gradient after one backward pass."""
    model.zero_grad()
    loss = model(ids, labels=ids).loss
    loss.backward()
    return {"loss": loss.detach(),
            **{name: p.grad.clone() for name, p in model.named_parameters()}}


def assert_within_rule(ours: torch.Tensor, torch_result: torch.Tensor, exact: torch.Tensor,
                       dtype: torch.dtype, what: str) -> None:
    floor = FLOOR[dtype] * exact.abs().max().item()
    check_within(ours, exact, flash_rule_bound(exact, torch_result, floor=floor), what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_matches(dtype):
    model = make_model(dtype).eval()
    exact_model = copy.deepcopy(model).double()
    ids = tokens()
    with torch.no_grad():
        exact = exact_model(ids).logits
        plain = model(ids).logits
        with hetero.enabled():
            ours = model(ids).logits
    assert ours.dtype is dtype
    assert_within_rule(ours, plain, exact, dtype, "logits")
    s = hetero.stats()
    assert set(s.served) == {"gemm", "attention"}
    assert s.served_fraction() >= 0.9, str(s)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_training_step_matches(dtype):
    model = make_model(dtype).train()
    exact_model = copy.deepcopy(model).double()
    ids = tokens()
    exact = train_step(exact_model, ids)
    plain = train_step(model, ids)
    hetero.reset_stats()
    with hetero.enabled():
        ours = train_step(model, ids)
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        model(ids)  # the updated model still runs
    for name in exact:
        assert_within_rule(ours[name], plain[name], exact[name], dtype, name)
    s = hetero.stats()
    assert set(s.served) == {"gemm", "attention", "attention_backward"}
    assert s.served_fraction() >= 0.9, str(s)


def _compile_case():
    """A float32 model, its tokens, and its logits in PyTorch and in float64."""
    model = make_model(torch.float32).eval()
    ids = tokens()
    with torch.no_grad():
        return model, ids, model(ids).logits, copy.deepcopy(model).double()(ids).logits


def test_torch_compile_matches_without_graph_breaks():
    model, ids, plain, exact = _compile_case()
    with torch.no_grad():
        torch._dynamo.reset()
        breaks_without = torch._dynamo.explain(model)(ids).graph_break_count
        torch._dynamo.reset()
        with hetero.enabled(native=False):  # the function mode puts hetero's ops in the graph
            explained = torch._dynamo.explain(model)(ids)
            torch._dynamo.reset()
            hetero.reset_stats()
            ours = torch.compile(model)(ids).logits
    assert explained.graph_break_count == breaks_without
    code = "\n".join(g.code for g in explained.graphs)
    assert "torch.ops.hetero.gemm" in code and "torch.ops.hetero.attention" in code
    assert_within_rule(ours, plain, exact, torch.float32, "compiled logits")
    assert hetero.stats().served_fraction() >= 0.9  # the compiled graph ran hetero's ops


def test_torch_compile_on_the_native_route_is_served_at_run_time():
    """Under the default (native) route the compiled graph is PyTorch's own; its GEMMs and
    attention reach hetero's kernels behind aten when it runs."""
    model, ids, plain, exact = _compile_case()
    with torch.no_grad():
        torch._dynamo.reset()
        with hetero.enabled():
            ours = torch.compile(model)(ids).logits
    assert_within_rule(ours, plain, exact, torch.float32, "compiled logits")
    served = hetero.stats().served
    assert set(served) == {"gemm", "attention"} and set(served["gemm"]) == {"cpu.gemm"}
    assert hetero.stats().served_fraction() >= 0.9
