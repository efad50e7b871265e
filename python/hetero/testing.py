"""Helpers for checking kernels against the float64 oracle — used by hetero's own tests
and meant for backend authors' tests too (``docs/new_backend.md``):

- :func:`check_against_oracle`: run an op on a backend into a poisoned output and check
  it against the op's float64 reference within the op's own bound — one line per test;
- :func:`randn`, :func:`poison_`: inputs that are never zero, outputs that show every
  element a kernel forgot to write;
- :func:`check_within`, :func:`flash_rule_bound`, :func:`unit_roundoff`: the comparison
  and the error bounds, for checks of your own.

Each op's own helpers (awkward operands, its error bound) are in its folder:
:func:`hetero.ops.gemm.checks.gemm_operands` (transposed, sliced and offset views),
:func:`hetero.ops.attention.checks.attention_inputs` (q, k, v of given sizes).

The rules (DESIGN.md, "Numerics"): a float32-accumulating op's error grows with its
reduction length (gemm's K-aware bound); low-precision results follow the
FlashAttention rule, ``max|out - ref| <= 2 max|baseline - ref| + floor``, where
``baseline`` is PyTorch computing the same thing in the input dtype.
"""

from __future__ import annotations

import torch

_UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24,
                  torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half the distance from 1 to the next number of ``dtype``."""
    return _UNIT_ROUNDOFF[dtype]


def randn(*shape: int, dtype: torch.dtype = torch.float32, device="cpu",
          seed: int | None = None) -> torch.Tensor:
    """Standard normal data (never zeros: zeros hide unwritten outputs and bad indexing),
    drawn in float32 then rounded to ``dtype``."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def poison_(t: torch.Tensor) -> torch.Tensor:
    """Fill ``t`` with NaN (an integer tensor with its most negative value) so that any
    element a kernel forgets to write is caught."""
    return t.fill_(float("nan") if t.is_floating_point() else torch.iinfo(t.dtype).min)


def check_within(out: torch.Tensor, ref: torch.Tensor, bound, what: str = "out") -> None:
    """Raise ``AssertionError`` unless every element of ``out`` is within ``bound`` of
    ``ref`` (NaN in ``out`` where ``ref`` is finite fails: it is an unwritten element or
    a numerical failure). ``bound`` is a tensor or a number."""
    if out.shape != ref.shape:
        raise AssertionError(f"{what}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if out.numel() == 0:
        return
    err = (out.double() - ref.double()).abs()
    bad = ~(err <= bound)  # NaN compares False, so NaN is bad
    bad &= ~(torch.isnan(out.double()) & torch.isnan(ref.double()))
    bad &= ~(out.double() == ref.double())  # equal infinities
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        b = bound[index] if isinstance(bound, torch.Tensor) else bound
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {out.numel()} elements out of bound; first at "
            f"{index}: got {out[index].item()!r}, reference {ref[index].item()!r}, "
            f"error {err[index].item():.3g} > bound {float(b):.3g}")


def check_against_oracle(op: str, *args, backend: str, **kwargs) -> torch.Tensor:
    """Run ``op(*args, **kwargs)`` (an op's name, its public arguments) on ``backend``
    into a NaN-poisoned output and check it against the op's float64 reference within
    the op's error bound — the conformance suite's rule for values. Returns the output;
    raises ``AssertionError`` naming the first element out of bound, or the op's own
    exceptions for bad input or a call the backend declares it cannot serve."""
    from .ops import registry

    spec = registry.spec(op)
    _, record = spec.bind(*args, **kwargs)  # checked inputs and an output of the right kind
    given = kwargs.pop("out", None)
    out = poison_(given if given is not None else torch.empty_like(record.out))
    result = spec.function(*args, **kwargs, out=out, backend=backend)
    exact = spec.reference(record, torch.float64)
    check_within(result, exact, spec.error_bound(record, exact), what=f"{op} on {backend}")
    return result


def flash_rule_bound(ref: torch.Tensor, baseline: torch.Tensor, *, factor: float = 2.0,
                     floor: float | None = None) -> float:
    """``factor * max|baseline - ref| + floor``: the error a reasonable implementation in
    ``baseline``'s dtype incurs, with slack. ``floor`` defaults to a few units of
    roundoff of ``baseline``'s dtype at the reference's scale."""
    if ref.numel() == 0:
        return 0.0
    scale = max(1.0, ref.abs().max().item())
    floor = 4 * unit_roundoff(baseline.dtype) * scale if floor is None else floor
    return factor * (baseline.double() - ref.double()).abs().max().item() + floor
