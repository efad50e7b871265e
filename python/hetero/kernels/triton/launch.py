"""The launcher every Triton kernel of hetero runs through: :func:`run`.

A kernel's launch is ``kernel[grid](*args, **meta, **config)``: ``args`` and ``meta``
(the constexprs that follow from the call) come from the kernel's module, ``config``
(the tuned constexprs, warps, stages and backend compile options) from here, picked
the same way for every kernel:

* under ``TRITON_INTERPRET=1`` (CPU, tests): one of the kernel's small interpreter
  configs, never tuned (each program is simulated in numpy);
* a fixed config, when the caller has one (a test, a benchmark, or the one the
  launcher returned for this call signature before);
* ``tune=False`` (tuning switched off, or a problem too small to repay it): the first
  config of the platform's table that fits the problem;
* otherwise ``triton.autotune`` over the platform's table, pruned per problem, keyed
  on the kernel's tuning keys. For a kernel whose tuning is ``never_fatal`` (GEMM), a
  config that fails to build or run while tuning is skipped with a
  ``RuntimeWarning``, and if the tuned launch fails anyway the kernel's safe config
  runs instead (a warning again); for the others a failure raises, as any kernel
  error does.

What the launcher needs of a kernel is data, a :class:`Tuning`: its config tables,
the prune rule that says which configs fit a call, its tuning keys. A config is any
hashable row (GEMM's ``TileConfig``, attention's ``BlockConfig``) with the fields of
:class:`Config`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from typing import Callable, Mapping, Protocol, Sequence

import torch
import triton

from . import gpu_platform, interpreting


class Config(Protocol):
    """One row of a config table (hashable: tables map back from triton's configs).
    ``meta()``: the kernel's tuned constexprs; ``options``: extra backend compile
    options as ``(name, value)`` pairs (AMD: ``waves_per_eu``, ``matrix_instr_nonkdim``)."""

    num_warps: int
    num_stages: int
    options: tuple

    def meta(self) -> dict: ...


def launch_options(config: Config) -> dict:
    """The compile options of a fixed-config launch."""
    return {"num_warps": config.num_warps, "num_stages": config.num_stages,
            **dict(config.options)}


def triton_config(config: Config) -> triton.Config:
    """``config`` for ``triton.autotune`` (compile options travel with the constexprs:
    triton.Config has no field for backend-specific ones)."""
    return triton.Config({**config.meta(), **dict(config.options)},
                         num_warps=config.num_warps, num_stages=config.num_stages)


def first(configs: Sequence[Config], args: dict) -> Config:
    """The default :attr:`Tuning.pick`: the first of the fitting configs (tables list
    the usual winners first)."""
    return configs[0]


@dataclasses.dataclass(frozen=True, eq=False)
class Tuning:
    """How one kernel's config is picked. ``args`` below: the launch's arguments by
    name (positional ones under the kernel's parameter names, and ``meta``)."""

    name: str  #: in warnings: "hetero triton <name>: ..."
    tables: Mapping[str, Sequence[Config]]  #: "cuda" / "hip" -> configs, best first
    interpreter: Sequence[Config]  #: the small configs the interpreter runs
    keys: Sequence[str]  #: autotuning keys: names of kernel arguments
    #: ``(table, args) -> the configs worth trying``, in table order, never empty.
    prune: Callable[[Sequence[Config], dict], Sequence[Config]]
    #: ``(fitting configs, args) -> the one to run untuned`` (also under the interpreter,
    #: from :attr:`interpreter`).
    pick: Callable[[Sequence[Config], dict], Config] = first
    #: Whether a config that fails while tuning is skipped (and a failed tuned launch
    #: falls back to :attr:`safe`) rather than raised.
    never_fatal: bool = False
    #: What runs when tuning fails (``never_fatal``); None: the config ``pick`` chooses.
    safe: Config | None = None
    #: ``(config, positional args) -> constexprs`` that the kernel's ``@triton.heuristics``
    #: would compute: a fixed config then launches the bare JIT function with them
    #: (the wrapper builds a dict of every argument per call: more than a small launch
    #: costs). None: launch ``kernel`` as given.
    heuristics: Callable[[Config, tuple], dict] | None = None


# -- Running a kernel ---------------------------------------------------------------------

def run(kernel, grid, args: tuple, meta: dict, tuning: Tuning | None = None, *,
        config: Config | None = None, tune: bool = True,
        allocator: bool = False) -> Config | None:
    """Launch ``kernel[grid](*args, **meta)`` with a config picked as the module
    docstring says; ``tuning=None``: a kernel with nothing to tune (``meta`` says it
    all, the backend's default warps and stages). ``args[0]`` is a tensor on the device
    to run on. ``allocator``: the kernel may build TMA descriptors on the device (in
    global scratch memory, which needs an allocator set with ``triton.set_allocator``).

    Returns the config it picked (untuned, tuned or the fallback), for the caller to
    pass as ``config`` next time; None when it was given one."""
    picked = None
    if interpreting():
        interpreter_numpy_fix()
        if config is None and tuning is not None:
            config = picked = tuning.pick(tuning.interpreter, named_args(kernel, args, meta))
        _launch(kernel, grid, args, meta, config, tuning)
        return picked
    with device_context(args[0]):
        if allocator:
            ensure_allocator()
        if config is None and tuning is not None and not tune:
            config = picked = first_fitting(kernel, tuning, args, meta)
        if config is not None or tuning is None:
            _launch(kernel, grid, args, meta, config, tuning)
            return picked
        tuner, rows = autotuner(kernel, tuning, gpu_platform())
        if not tuning.never_fatal:
            tuner[grid](*args, **meta)
            return rows[tuner.best_config]
        try:
            tuner[grid](*args, **meta)
            return rows[tuner.best_config]
        except Exception as exc:  # a config that does not build or run
            safe = tuning.safe if tuning.safe is not None else \
                first_fitting(kernel, tuning, args, meta)
            warnings.warn(f"hetero triton {tuning.name}: tuning failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); running the fallback config {safe}",
                          RuntimeWarning, stacklevel=3)
            _launch(kernel, grid, args, meta, safe, tuning)
            return safe


def first_fitting(kernel, tuning: Tuning, args: tuple, meta: dict) -> Config:
    """The untuned choice on this GPU: ``tuning.pick`` among the configs of the
    platform's table that fit the call."""
    named = named_args(kernel, args, meta)
    return tuning.pick(tuning.prune(tuning.tables[gpu_platform()], named), named)


def named_args(kernel, args: tuple, meta: dict) -> dict:
    """The launch's arguments by name, as ``triton.autotune`` hands them to a pruner."""
    return {**dict(zip(kernel.arg_names, args)), **meta}


def _launch(kernel, grid, args, meta, config, tuning) -> None:
    if config is None:
        kernel[grid](*args, **meta)
        return
    if tuning is not None and tuning.heuristics is not None:
        kernel, meta = kernel.fn, {**meta, **tuning.heuristics(config, args)}
    kernel[grid](*args, **meta, **config.meta(), **launch_options(config))


# -- Autotuning ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def autotuner(kernel, tuning: Tuning, platform: str):
    """``(tuner, rows)``: ``kernel`` under ``triton.autotune`` over ``tuning``'s table for
    ``platform`` (built once; it caches the best config per key), and the table row of
    each of its triton.Configs."""
    rows = {triton_config(row): row for row in tuning.tables[platform]}

    def prune(configs, named_args, **kwargs):
        keep = set(tuning.prune([rows[c] for c in configs], {**named_args, **kwargs}))
        return [c for c in configs if rows[c] in keep]

    tuner = triton.autotune(configs=list(rows), key=list(tuning.keys),
                            prune_configs_by={"early_config_prune": prune})(kernel)
    if tuning.never_fatal:
        tuner._bench = skipping_failures(tuner._bench, tuning.name, rows)
    return tuner, rows


def skipping_failures(bench, name: str, rows: Mapping):
    """Wrap an Autotuner's ``_bench``: Triton skips configs that run out of resources;
    one that fails any other way (a compiler error on some tile shape) is skipped too,
    with a warning, instead of ending the tuning run."""

    def robust_bench(*args, config, **meta):
        try:
            return bench(*args, config=config, **meta)
        except Exception as exc:
            warnings.warn(f"hetero triton {name}: config {rows.get(config, config)} failed "
                          f"while tuning ({type(exc).__name__}: {str(exc)[:200]})",
                          RuntimeWarning, stacklevel=2)
            return [float("inf")] * 3

    return robust_bench


# -- The device ---------------------------------------------------------------------------

_NO_CONTEXT = contextlib.nullcontext()


def device_context(t: torch.Tensor):
    """Triton launches on the current device: make it ``t``'s (nothing to do, and
    nothing to pay, when it already is)."""
    index = t.device.index
    if not t.is_cuda or index == torch.cuda.current_device():
        return _NO_CONTEXT
    return torch.cuda.device(index)


@functools.lru_cache(maxsize=None)
def device_limits(index: int) -> tuple[int | None, int | None, bool]:
    """(max shared memory per block, SM count, TMA available) of a GPU."""
    smem = sms = None
    try:
        props = triton.runtime.driver.active.utils.get_device_properties(index)
        smem, sms = props.get("max_shared_mem"), props.get("multiprocessor_count")
    except Exception:  # unknown: no shared-memory or occupancy pruning
        pass
    if not sms:
        sms = torch.cuda.get_device_properties(index).multi_processor_count
    tma = gpu_platform() == "cuda" and torch.cuda.get_device_capability(index) >= (9, 0)
    return smem, sms, tma


def ensure_allocator() -> None:
    """Device-side TMA descriptors live in a per-launch global scratch buffer that Triton
    gets from the allocator set with ``triton.set_allocator``; set one if nobody has."""
    try:
        from triton.runtime import _allocation

        unset = isinstance(_allocation._allocator.get(), _allocation.NullAllocator)
    except (ImportError, AttributeError):  # another triton layout: assume unset
        unset = True
    if unset:
        triton.set_allocator(_torch_allocator)


def _torch_allocator(size: int, alignment: int, stream):
    return torch.empty(size, dtype=torch.int8, device="cuda")


# -- The interpreter ----------------------------------------------------------------------

def interpreter_numpy_fix() -> None:
    """Backport of triton PR #9172 (issue #9171) for the interpreter of triton <= 3.6
    under numpy >= 2.4: a scalar is a 1-element array there, and ``int()`` of one now
    raises, so every loop with run-time bounds (``range(0, tl.cdiv(K, BLOCK_K))``)
    fails. :func:`run` calls it before each interpreted launch; it patches once, only
    where that numpy needs it, and changes nothing else."""
    import numpy as np
    from triton.runtime import interpreter as ti

    original = ti._patch_lang_tensor
    if getattr(original, "hetero_fixed", False):
        return
    try:
        int(np.zeros(1, dtype=np.int32))
        return  # this numpy still converts 1-element arrays
    except TypeError:
        pass

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched.hetero_fixed = True
    ti._patch_lang_tensor = patched
