"""``torch.ops.hetero.scaled_gemm(a, b, scale_a, scale_b, bias=None, out_dtype=None) ->
out``: :func:`hetero.scaled_gemm` as a torch operator with a fake impl (see
:mod:`hetero.torch_ops`), for the calls :mod:`.routes` takes over. fp8 and int8 inputs
have no gradient, so it records no autograd."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ...routing import BridgeOp
from ...torch_ops import plain_torch, serve
from .._checks import STAND_IN
from .api import prepare
from .numerics import flops, reference


@torch.library.custom_op("hetero::scaled_gemm", mutates_args=())
def scaled_gemm(a: Tensor, b: Tensor, scale_a: Optional[Tensor], scale_b: Optional[Tensor],
                bias: Optional[Tensor] = None, out_dtype: Optional[torch.dtype] = None
                ) -> Tensor:
    """``(a · scale_a) @ (b · scale_b) + bias`` as :func:`hetero.scaled_gemm` computes
    it, returning a new ``(M, N)`` tensor of ``out_dtype``."""
    with plain_torch():
        key, args = prepare(a, b, scale_a, scale_b, bias, out_dtype, None, None)
        if serve(key, args, flops(args)) is None:
            result = reference(args, torch.float64)
            return (result.round() if args.out.dtype is torch.int32 else result).to(
                args.out.dtype)
        return args.out


@scaled_gemm.register_fake
def _scaled_gemm_fake(a, b, scale_a, scale_b, bias=None, out_dtype=None):
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"b: shape {tuple(b.shape)} does not fit a's {tuple(a.shape)}")
    return a.new_empty((a.shape[0], b.shape[1]), dtype=out_dtype or torch.bfloat16)


def _prepare(a, b, scale_a, scale_b, bias=None, out_dtype=None):
    return prepare(a, b, scale_a, scale_b, bias, out_dtype, STAND_IN, None)


#: ``torch.ops.hetero.scaled_gemm`` for :mod:`.routes`.
SCALED_GEMM = BridgeOp(scaled_gemm, _prepare)
