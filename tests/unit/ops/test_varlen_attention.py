"""hetero.varlen_attention's call: the mask semantics against a direct definition, the
log-sum-exp kernels fill for PyTorch's varlen_attn, and that call under enabled()."""

from __future__ import annotations

import math

import pytest
import torch

import hetero
from hetero.ops.varlen_attention.conformance import offsets
from hetero.ops.varlen_attention.numerics import sequence_attention, varlen_reference
from hetero.ops.varlen_attention.torch_op import VARLEN_ATTENTION
from hetero.testing import check_within, randn


def test_the_window_and_softcap_mean_what_the_docs_say():
    """Query i of Sq = 3 over Sk = 7 keys is aligned to key i + 4; window (2, 1) lets it
    see keys i + 2 .. i + 5 (clipped); softcap bends scores by tanh."""
    q, k, v = randn(3, 1, 8, seed=1), randn(7, 1, 8, seed=2), randn(7, 1, 8, seed=3)
    out, _ = sequence_attention(q, k, v, causal=False, scale=0.5, window=(2, 1), softcap=1.5)
    for i in range(3):
        keys = list(range(max(0, i + 2), min(7, i + 6)))
        scores = (q[i, 0].double() @ k[keys, 0].double().T) * 0.5
        weights = torch.softmax(1.5 * torch.tanh(scores / 1.5), 0)
        torch.testing.assert_close(out[i, 0], weights @ v[keys, 0].double())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_the_log_sum_exp_is_filled_when_asked(backend):
    q, k = randn(9, 4, 16, seed=4), randn(12, 2, 16, seed=5)
    cu_q, cu_k = offsets([4, 0, 5]), offsets([6, 2, 4])
    _, record = hetero.ops.spec("varlen_attention").prepare(
        q, k, k, cu_q, cu_k, 5, 6, True, None, (-1, -1), 0.0, None, backend, lse=True)
    hetero.registry.get(backend).kernels["varlen_attention"][0].fn(record)
    _, want = varlen_reference(q, k, k, cu_q.tolist(), cu_k.tolist(), causal=True,
                               scale=1 / math.sqrt(16))
    assert record.lse.dtype is torch.float32 and record.lse.shape == (4, 9)
    check_within(record.lse, want, 1e-5 * want[want.isfinite()].abs().max().item() + 1e-6)
    assert torch.equal(record.lse.isinf(), want.isinf())  # rows that see no key: +inf


def test_varlen_attn_is_served_under_enabled():
    from torch.nn.attention.varlen import varlen_attn

    q, k, v = randn(10, 4, 64, seed=6), randn(12, 2, 64, seed=7), randn(12, 2, 64, seed=8)
    cu_q, cu_k = offsets([4, 6]), offsets([5, 7])
    with pytest.raises(NotImplementedError):  # PyTorch 2.13 runs it on CUDA only
        varlen_attn(q, k, v, cu_q, cu_k, 6, 7, enable_gqa=True)
    hetero.reset_stats()
    with hetero.enabled(native=False):  # varlen_attn is routed by the function mode
        got = varlen_attn(q, k, v, cu_q, cu_k, 6, 7, enable_gqa=True, window_size=(-1, 0))
        out, lse = varlen_attn(q, k, v, cu_q, cu_k, 6, 7, enable_gqa=True,
                               return_aux=torch.nn.attention.varlen.AuxRequest(lse=True))
    served = hetero.stats().served["varlen_attention"]
    assert sum(c.calls for c in served.values()) == 2
    want, _ = varlen_reference(q, k, v, cu_q.tolist(), cu_k.tolist(), causal=True,
                               scale=1 / math.sqrt(64))
    check_within(got, want, 1e-5)
    want_full, want_lse = varlen_reference(q, k, v, cu_q.tolist(), cu_k.tolist(), causal=False,
                                           scale=1 / math.sqrt(64))
    check_within(out, want_full, 1e-5)
    check_within(lse, want_lse, 1e-4)


def test_the_torch_operator_has_a_fake_for_compile():
    q, k = randn(5, 2, 16, seed=9), randn(5, 2, 16, seed=10)
    cu = offsets([2, 3])
    torch.library.opcheck(VARLEN_ATTENTION.run, (q, k, k, cu, cu, 3, 3, True, None, -1, -1, 0.0),
                          test_utils=("test_schema", "test_faketensor"))
