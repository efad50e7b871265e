"""Routed calls on CUDA inside CUDA graphs (needs a CUDA GPU; skipped elsewhere).

A call ``hetero.enable()`` routes on CUDA does no host synchronisation and allocates only
through PyTorch's caching allocator, so a ``torch.cuda.CUDAGraph`` can capture it and
``torch.compile(mode="reduce-overhead")`` can run it. The first calls (outside any
capture) make the decisions, tune the Triton kernels and calibrate; a graph replays the
kernels those calls chose, without Python, so its replays are not counted in
``hetero.stats()``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import hetero

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _inputs(seed: int):
    """A decode step's operands: x (4, 256) @ w (512, 256)^T and q (2, 8, 1, 64) against
    a 200-key cache, float16 on the GPU."""
    g = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device="cuda", dtype=torch.float16)
    return randn(4, 256), randn(512, 256), randn(2, 8, 1, 64), randn(2, 8, 200, 64), \
        randn(2, 8, 200, 64)


def _step(x, w, q, k, v):
    return F.linear(x, w), F.scaled_dot_product_attention(q, k, v)


def _served_by_triton():
    served = hetero.stats().served
    return {op: sorted(served.get(op, {})) for op in ("gemm", "attention")}


def test_routed_calls_are_captured_and_replayed():
    inputs = _inputs(1)
    with hetero.use("triton"), hetero.enabled():
        hetero.reset_stats()
        _step(*inputs)  # decides, tunes and calibrates, outside the capture
        torch.cuda.synchronize()
        assert _served_by_triton() == {"gemm": ["triton.tiled"], "attention": ["triton.flash"]}
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # a host synchronisation here raises
            captured = _step(*inputs)
        for seed in (2, 3):  # new values in the captured inputs, then a replay
            for placed, new in zip(inputs, _inputs(seed)):
                placed.copy_(new)
            graph.replay()
            eager = _step(*inputs)
            torch.cuda.synchronize()
            for replayed, expected in zip(captured, eager):
                assert torch.equal(replayed, expected)


def test_reduce_overhead_compile_runs_the_routed_kernels():
    from torch._dynamo.utils import counters

    inputs = _inputs(4)
    torch._dynamo.reset()
    counters.clear()
    with hetero.use("triton"), hetero.enabled():
        eager = _step(*inputs)
        compiled = torch.compile(_step, mode="reduce-overhead")
        hetero.reset_stats()
        for _ in range(3):  # warm-up, recording, replay
            outputs = [t.clone() for t in compiled(*inputs)]
        torch.cuda.synchronize()
        assert _served_by_triton() == {"gemm": ["triton.tiled"], "attention": ["triton.flash"]}
    assert not counters["inductor"].get("cudagraph_skips"), dict(counters["inductor"])
    for ours, expected in zip(outputs, eager):
        torch.testing.assert_close(ours, expected, rtol=2e-3, atol=2e-3)
