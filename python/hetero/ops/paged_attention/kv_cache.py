"""``hetero.write_kv_cache``: new keys and values into a paged cache, the companion of
:func:`hetero.paged_attention`.

It is a scatter, not a kernel to choose, so it is not dispatched to backends: on CPU
tensors of a float dtype a native copy (``csrc/route/paged_route.cpp``, after the same
checks), elsewhere one indexed copy in PyTorch on the caches' device.
"""

from __future__ import annotations

import torch
from torch.autograd.graph import increment_version as _increment_version

from .. import _checks
from .api import check_cache

#: ``hetero_route::write_kv_cache``: the write on CPU tensors done natively, ``False`` for
#: a call it leaves to the Python path (:func:`hetero.native_entries.write_kv_cache_entry`,
#: set at import).
native_write_kv_cache = None


def write_kv_cache(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                   v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Write packed new keys and values into the cache, in place.

    Args:
        k: ``(T, Hkv, D)`` new keys; ``v``: ``(T, Hkv, Dv)`` new values; the caches'
            dtype and device.
        k_cache: ``(num_blocks, block_size, Hkv, D)``; ``v_cache``: ``(num_blocks,
            block_size, Hkv, Dv)``; written in place, any strides.
        slot_mapping: int64 ``(T,)``: row ``t`` goes to slot
            ``block * block_size + offset``; ``-1`` skips the row (padding).

    Raises:
        TypeError, ValueError: bad input, naming the argument (slots out of range or
        written twice included), before anything is written.
    """
    if native_write_kv_cache is not None:
        try:
            if not (k_cache.requires_grad or v_cache.requires_grad or torch.is_grad_enabled()
                    and (k.requires_grad or v.requires_grad)) \
                    and native_write_kv_cache(k, v, k_cache, v_cache, slot_mapping):
                _increment_version(k_cache)  # written in place, as index_put_ marks them
                _increment_version(v_cache)
                return
        except Exception:  # noqa: BLE001 - the Python path below reports it, naming the argument
            pass
    for t, name in ((k, "k"), (v, "v")):
        _checks.tensor(t, name)
        if t.dim() != 3:
            raise ValueError(f"{name}: expected 3 dims (T, Hkv, D), got shape {tuple(t.shape)}")
    check_cache(k_cache, "k_cache", k.dtype, k.device)
    check_cache(v_cache, "v_cache", k.dtype, k.device)
    _checks.same_dtype(v, "v", k.dtype, "k")
    _checks.same_device(v, "v", k.device, "k")
    num_blocks, block_size = k_cache.shape[:2]
    if tuple(v_cache.shape[:2]) != (num_blocks, block_size):
        raise ValueError(f"v_cache: blocks {tuple(v_cache.shape[:2])} must match k_cache's "
                         f"{(num_blocks, block_size)}")
    if tuple(k.shape[1:]) != tuple(k_cache.shape[2:]):
        raise ValueError(f"k: rows {tuple(k.shape[1:])} must match k_cache's (Hkv, D) "
                         f"{tuple(k_cache.shape[2:])}")
    if tuple(v.shape) != (k.shape[0], *v_cache.shape[2:]):
        raise ValueError(f"v: shape {tuple(v.shape)} must be ({k.shape[0]}, "
                         f"{', '.join(map(str, v_cache.shape[2:]))}) for k and v_cache")
    _checks.tensor(slot_mapping, "slot_mapping")
    if slot_mapping.dtype is not torch.int64:
        raise TypeError(f"slot_mapping: expected dtype int64, got "
                        f"{_checks.dtype_name(slot_mapping.dtype)}")
    _checks.same_device(slot_mapping, "slot_mapping", k.device, "k")
    if tuple(slot_mapping.shape) != (k.shape[0],):
        raise ValueError(f"slot_mapping: expected shape ({k.shape[0]},), got "
                         f"{tuple(slot_mapping.shape)}")
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]
    if slot_mapping.numel() and int(slot_mapping.min()) < -1:
        raise ValueError(f"slot_mapping: slots are >= 0, or -1 to skip; got "
                         f"{int(slot_mapping.min())}")
    if slots.numel() and int(slots.max()) >= num_blocks * block_size:
        raise ValueError(f"slot_mapping: slot {int(slots.max())} is beyond the caches' "
                         f"{num_blocks * block_size} ({num_blocks} blocks of {block_size})")
    if slots.numel() != slots.unique().numel():
        raise ValueError("slot_mapping: a slot is written twice")
    if k_cache.requires_grad or v_cache.requires_grad:
        raise ValueError("k_cache: a cache that requires grad cannot be written in place")
    blocks, offsets = slots // block_size, slots % block_size
    with torch.no_grad():
        k_cache[blocks, offsets] = k[keep]
        v_cache[blocks, offsets] = v[keep]
