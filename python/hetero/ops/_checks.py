"""Input checks shared by the ops, and the oracle's compute dtype. Every message names
the argument and what was expected, and every check runs before any kernel (native code
never sees bad input)."""

from __future__ import annotations

import functools
import numbers

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class _StandIn:
    """The type of :data:`STAND_IN`."""

    def __repr__(self) -> str:
        return "STAND_IN"


#: ``out=`` for an op's ``prepare`` when the call may not run on a hetero kernel (the
#: routing mode decides first, and PyTorch may serve the call): the record's ``out`` is
#: then a one-element stand-in expanded to the output's shape, dtype and device, and
#: whoever runs a kernel on the record first swaps in a real one (:func:`real_out`).
#: Allocating a real output that PyTorch then does not use costs fresh pages per call.
STAND_IN = _StandIn()


@functools.lru_cache(maxsize=None)
def _stand_in_element(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The one element every stand-in of ``dtype`` on ``device`` expands (never written:
    kernels run on :func:`real_out`'s records)."""
    return torch.empty((), dtype=dtype, device=device)


def stand_in(shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return _stand_in_element(dtype, device).expand(shape)


def real_out(record):
    """``record`` with a new output tensor in place of its stand-in (:data:`STAND_IN`)."""
    out = record.out
    return record._replace(out=out.new_empty(out.shape))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    return x


def float_dtype(t: torch.Tensor, name: str) -> torch.dtype:
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: dtype {dtype_name(t.dtype)} is not supported "
                        f"(expected one of {', '.join(map(dtype_name, FLOAT_DTYPES))})")
    return t.dtype


def same_dtype(t: torch.Tensor, name: str, dtype: torch.dtype, ref: str) -> None:
    if t.dtype is not dtype:
        raise TypeError(f"{name}: dtype {dtype_name(t.dtype)} does not match {ref}'s "
                        f"{dtype_name(dtype)}")


def same_device(t: torch.Tensor, name: str, device: torch.device, ref: str) -> None:
    if t.device != device:
        raise ValueError(f"{name}: on device {t.device}, but {ref} is on {device}")


def real_scalar(x, name: str) -> float:
    if type(x) is float or type(x) is int:  # the common case, cheaply
        return float(x)
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(x).__name__}")
    return float(x)


def no_autograd(op: str, *tensors) -> None:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError(
            f"hetero.{op} does not record autograd; call it under torch.no_grad() or "
            f"pass detached tensors")


def check_out(out, shape: tuple, dtypes: tuple, device: torch.device, inputs) -> None:
    tensor(out, "out")
    if tuple(out.shape) != shape:
        raise ValueError(f"out: expected shape {shape}, got {tuple(out.shape)}")
    if out.dtype not in dtypes:
        raise TypeError(f"out: expected dtype {' or '.join(map(dtype_name, dtypes))}, "
                        f"got {dtype_name(out.dtype)}")
    same_device(out, "out", device, "the inputs")
    if out.numel():
        storage = out.untyped_storage().data_ptr()
        for name, t in inputs:
            if t is not None and t.numel() and t.untyped_storage().data_ptr() == storage:
                raise ValueError(f"out: shares memory with {name}; hetero does not "
                                 f"compute in place")


def output(out, shape: tuple, dtype: torch.dtype, device: torch.device, inputs):
    """The call's output: a new tensor for ``out=None``, a stand-in for :data:`STAND_IN`,
    else the given ``out`` checked against ``shape``, ``dtype``, ``device`` and the
    ``(name, tensor)`` ``inputs`` it must not share memory with."""
    if out is None:
        return torch.empty(shape, dtype=dtype, device=device)
    if out is STAND_IN:
        return stand_in(shape, dtype, device)
    check_out(out, shape, (dtype,), device, inputs)
    return out


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the oracle (the ``reference`` backend) computes ``dtype`` inputs in: float64
    for float64, else float32."""
    return torch.float64 if dtype is torch.float64 else torch.float32


def alignment(*tensors) -> int:
    """Largest power of two (at most 16) dividing every data pointer, in bytes."""
    bits = 16
    for t in tensors:
        if t is not None:
            bits |= t.data_ptr()
    return bits & -bits
