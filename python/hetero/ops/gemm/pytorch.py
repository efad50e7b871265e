"""PyTorch's own gemm, as a kernel of the ``torch`` backend (:mod:`hetero.backends.pytorch`):
``torch.addmm``/``baddbmm`` where the call fits them (one fused call, as PyTorch's
``nn.Linear`` runs), else ``torch.matmul`` and the scaling and bias in place.

A float32 output for 16-bit inputs is not served: PyTorch rounds the product to the
inputs' dtype first, which that output's bound does not allow.
"""

from __future__ import annotations

import torch

from ...kernel import Kernel, Support
from ...torch_ops import unrouted
from .api import GemmArgs

_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16, torch.float64})


def matmul(args: GemmArgs) -> None:
    with unrouted():  # PyTorch's own kernels, even where the native route serves matmuls
        _matmul(args)


def _matmul(args: GemmArgs) -> None:
    a, b, out, bias = args.a, args.b, args.out, args.bias
    if bias is not None and args.beta != 0 and bias.dtype is a.dtype:
        if a.dim() == 2:
            torch.addmm(bias, a, b, beta=args.beta, alpha=args.alpha, out=out)
            return
        if a.dim() == 3:
            torch.baddbmm(bias, a, b, beta=args.beta, alpha=args.alpha, out=out)
            return
    torch.matmul(a, b, out=out)
    if args.alpha != 1:
        out.mul_(args.alpha)
    if bias is not None and args.beta != 0:
        out.add_(bias, alpha=args.beta)


KERNELS = (Kernel("gemm", "matmul", matmul,
                  Support(dtypes=_DTYPES, features=frozenset({"bias", "batch"}))),)
