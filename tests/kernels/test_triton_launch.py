"""The launcher every Triton kernel runs through (``hetero/kernels/triton/launch.py``),
and no launch outside the launcher (tests/unit/test_import_graph.py checks the imports).

The launcher's GPU paths (first fitting config, autotuning that skips a failing
config, the fallback when tuning fails) run here without a GPU: a toy kernel, then the
GEMM and attention kernels, under Triton's interpreter, with the launcher told it is
not interpreting, no device switch, and the autotuner timing each config by running it
once (the kernels' own planning still sees the interpreter: there is no device to ask).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

import hetero
import hetero.kernels.triton as package
from hetero.kernels.triton import interpreting
from hetero.ops.attention.checks import (attention_inputs, check_attention_backward,
    check_attention_forward)
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, poison_, randn

HAVE_TRITON = importlib.util.find_spec("triton") is not None
GPU = torch.cuda.is_available()
PACKAGE = "hetero.kernels.triton"
SOURCES = Path(package.__file__).parent


# ---------------------------------------------------------------------------------------
# Module layout (ast only: no triton needed)
# ---------------------------------------------------------------------------------------
def _modules() -> dict[str, ast.Module]:
    return {(PACKAGE if p.stem == "__init__" else f"{PACKAGE}.{p.stem}"):
            ast.parse(p.read_text()) for p in sorted(SOURCES.glob("*.py"))}


def test_every_launch_goes_through_the_launcher():
    """``kernel[grid](...)`` appears in launch.py only."""
    for name, tree in _modules().items():
        launches = [node.lineno for node in ast.walk(tree)
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript)]
        if name == f"{PACKAGE}.launch":
            assert launches
        else:
            assert not launches, f"{name} launches a kernel itself (lines {launches})"


# ---------------------------------------------------------------------------------------
# The launcher, on a toy kernel
# ---------------------------------------------------------------------------------------
needs_interpreter = pytest.mark.skipif(
    not HAVE_TRITON or GPU or not interpreting(),
    reason="runs the launcher's GPU paths on the interpreter (no GPU, TRITON_INTERPRET)")

if HAVE_TRITON:
    import triton
    import triton.language as tl

    from hetero.kernels.triton import attention_configs as A
    from hetero.kernels.triton import gemm as G
    from hetero.kernels.triton import gemm_configs as C
    from hetero.kernels.triton import gemm_plan as P
    from hetero.kernels.triton import launch as L
    from hetero.kernels.triton.attention import attention_forward
    from hetero.kernels.triton.attention_backward import attention_backward

    @triton.heuristics({"MASKED": lambda args: args["n"] % args["BLOCK"] != 0})
    @triton.jit
    def _scale(X, Y, n, alpha, N_KEY, MASKED: tl.constexpr, BLOCK: tl.constexpr):
        """``Y = alpha * X`` over ``n`` elements, ``BLOCK`` per program (a power of two:
        ``tl.arange`` fails on any other size, which makes failing configs here)."""
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        if MASKED:
            tl.store(Y + offs, tl.load(X + offs, mask=offs < n) * alpha, mask=offs < n)
        else:
            tl.store(Y + offs, tl.load(X + offs) * alpha)


class Cfg(NamedTuple):
    """A config of the toy kernel (the launcher's Config protocol)."""

    block: int
    num_warps: int = 4
    num_stages: int = 1
    options: tuple = ()

    def meta(self) -> dict:
        return {"BLOCK": self.block}


def _tuning(table, safe=None, seen=None, interpreter=(Cfg(16),), never_fatal=True):
    def prune(configs, args):  # tiles no larger than the problem's next power of two
        if seen is not None:
            seen.append(args)
        cap = max(16, 1 << max(0, args["n"] - 1).bit_length())
        return [c for c in configs if c.block <= cap] or [configs[-1]]

    return L.Tuning(name="toy", tables={"cuda": table, "hip": table}, interpreter=interpreter,
                    keys=("N_KEY",), prune=prune, never_fatal=never_fatal, safe=safe,
                    heuristics=lambda c, args: {"MASKED": args[2] % c.block != 0})


def _launch(tuning, n=37, **kw):
    x = torch.arange(n, dtype=torch.float32)
    y = torch.full((n,), float("nan"))

    def grid(meta):
        return (triton.cdiv(n, meta["BLOCK"]),)

    picked = L.run(_scale, grid, (x, y, n, 2.0, n), {}, tuning, **kw)
    assert torch.equal(y, 2 * x)
    return picked


@pytest.fixture
def gpu_paths(monkeypatch):
    """The launcher's GPU paths, on the interpreter: no device switch, and autotuners
    that time a config by running it once (all equally fast: the first that runs wins).
    Returns the list that each ``ensure_allocator`` call appends to."""
    monkeypatch.setattr(L, "interpreting", lambda: False)
    monkeypatch.setattr(L, "device_context", lambda t: contextlib.nullcontext())
    allocations = []
    monkeypatch.setattr(L, "ensure_allocator", lambda: allocations.append(True))
    build = L.autotuner

    def autotuner(kernel, tuning, platform):
        tuner, rows = build(kernel, tuning, platform)
        tuner.do_bench = lambda call, quantiles: (call(), [1.0, 1.0, 1.0])[1]
        return tuner, rows

    monkeypatch.setattr(L, "autotuner", autotuner)
    yield allocations
    build.cache_clear()  # no tuner with this bench outlives the test


@needs_interpreter
def test_under_the_interpreter_the_interpreter_config_runs():
    tuning = _tuning([Cfg(24)], interpreter=(Cfg(64), Cfg(32)))
    assert _launch(tuning) == Cfg(64)  # the first, by the default pick
    assert _launch(tuning, config=Cfg(8)) is None  # a given config runs as given


@needs_interpreter
def test_untuned_runs_the_first_config_that_fits(gpu_paths):
    seen = []
    tuning = _tuning([Cfg(128), Cfg(64), Cfg(32), Cfg(16)], seen=seen)
    assert _launch(tuning, n=37, tune=False) == Cfg(64)  # 128 > next_pow2(37)
    assert seen[-1]["n"] == 37 and seen[-1]["N_KEY"] == 37  # the arguments, by name
    assert _launch(tuning, n=5, tune=False) == Cfg(16)
    assert _launch(tuning, config=Cfg(32), allocator=True) is None
    assert gpu_paths == [True]


@needs_interpreter
def test_a_config_that_fails_while_tuning_is_skipped(gpu_paths):
    tuning = _tuning([Cfg(24), Cfg(32), Cfg(16)])
    with pytest.warns(RuntimeWarning, match=r"hetero triton toy: config Cfg\(block=24.*"
                                            r"failed while tuning"):
        assert _launch(tuning) == Cfg(32)
    assert _launch(tuning) == Cfg(32)  # tuned once per key


@needs_interpreter
def test_a_failed_tuning_run_falls_back_to_the_safe_config(gpu_paths):
    tuning = _tuning([Cfg(24), Cfg(48)], safe=Cfg(16))
    with pytest.warns(RuntimeWarning) as record:
        assert _launch(tuning) == Cfg(16)
    messages = [str(w.message) for w in record]
    assert sum("failed while tuning" in m for m in messages) == 2
    assert any("tuning failed" in m and "fallback config Cfg(block=16" in m
               for m in messages)


@needs_interpreter
def test_a_config_failure_raises_unless_tuning_is_never_fatal(gpu_paths):
    with pytest.raises(Exception):
        _launch(_tuning([Cfg(24), Cfg(48)], safe=Cfg(16), never_fatal=False))


@needs_interpreter
def test_a_kernel_without_configs_runs_as_given(gpu_paths):
    x, y = torch.arange(5.0), torch.empty(5)
    assert L.run(_scale, (1,), (x, y, 5, 3.0, 5), {"BLOCK": 8}) is None
    assert torch.equal(y, 3 * x)


# -- the kernels on the launcher's GPU paths ---------------------------------------------

@needs_interpreter
def test_gemm_on_the_gpu_paths(gpu_paths, monkeypatch):
    """Small problems run the first fitting config, larger ones are autotuned; the
    config picked is kept for the call signature."""
    monkeypatch.setattr(P, "device_limits", lambda index: (232448, 132, True))  # an H100
    monkeypatch.setattr(G, "_LAUNCHES", {})

    def check(m, n, k, dtype, **kw):
        a = randn(m, k, dtype=dtype, seed=1)
        w = randn(n, k, dtype=dtype, seed=2)
        out = poison_(torch.empty(m, n, dtype=dtype))
        G.gemm(a, w.t(), None, 1.0, 1.0, out, **kw)
        check_within(out, hetero.reference_gemm(a, w.t()),
                     gemm_error_bound(a, w.t(), out_dtype=dtype))
        (launch,) = G._LAUNCHES.values()
        G._LAUNCHES.clear()
        assert launch.config in C.CUDA_CONFIGS
        return launch.config

    assert not check(40, 72, 72, torch.float16).tma  # TMA possible, not worth it
    assert gpu_paths  # the descriptor allocator is there all the same
    assert check(40, 72, 72, torch.float16, tma=True).tma  # required
    exact = check(40, 72, 72, torch.float32)
    assert exact.block_k <= 32 and not exact.tma
    check(512, 256, 256, torch.float16)  # 2**25 multiply-adds: tuned


@needs_interpreter
@pytest.mark.parametrize("autotune", [False, True])
def test_attention_on_the_gpu_paths(gpu_paths, monkeypatch, autotune):
    monkeypatch.setattr(A, "AUTOTUNE", autotune)
    q, k, v = attention_inputs(1, 4, 2, 33, 17, 24, 16, dtype=torch.float16, device="cpu")
    check_attention_forward(attention_forward, q, k, v, None, True, None, None)
    check_attention_backward(attention_forward, attention_backward, q, k, v, None, True,
                             None, None)


# -- the kernels' selection rules, as pure functions --------------------------------------

@pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")
def test_gemm_picks_pointer_loads_unless_tma_is_required(monkeypatch):
    monkeypatch.setattr(P, "device_limits", lambda index: (232448, 132, True))
    a = torch.empty(16, 4096, dtype=torch.float16)

    def args(tma_mode, m=16, n=4096, k=4096):
        return {"a_ptr": a, "M": m, "N": n, "K": k, "BATCH": 1, "DOT_PRECISION": None,
                "LAYOUT_KEY": 16 * tma_mode}

    for tma_mode in (0, 1, 2):
        fitting = P.fitting(C.CUDA_CONFIGS, args(tma_mode))
        assert fitting and all(c in C.CUDA_CONFIGS for c in fitting)
        assert [c for c in C.CUDA_CONFIGS if c in fitting] == fitting  # table order
        assert tma_mode > 0 or not any(c.tma for c in fitting)
        assert tma_mode < 2 or all(c.tma for c in fitting)
        picked = P.pick(fitting, args(tma_mode))
        assert picked.tma == (tma_mode == 2)
    # The interpreter's pair: the pointer tile, or its TMA twin where TMA is required.
    assert P.pick(C.INTERPRETER_CONFIGS, args(1)) == C.INTERPRETER_CONFIGS[0]
    assert P.pick(C.INTERPRETER_CONFIGS, args(2)).tma
    # MASK_* as the kernel's heuristics compute them, from the positional arguments.
    cfg = C.TileConfig(64, 32, 16, 8, 4, 3)
    assert P.masks(cfg, (None,) * 5 + (128, 33, 48)) == \
        {"MASK_M": False, "MASK_N": True, "MASK_K": False}


@pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")
def test_attention_prunes_by_resources_and_keeps_the_smallest_tile_when_none_fit():
    q = torch.empty(1, dtype=torch.float32)
    for tuning in (A.FWD, A.BWD_DKDV, A.BWD_DQ):
        for platform, table in tuning.tables.items():
            small = tuning.prune(table, {"Q": q, "BLOCK_D": 16, "BLOCK_DV": 16})
            assert small and [c for c in table if c in small] == small
            huge = tuning.prune(table, {"Q": q, "BLOCK_D": 8192, "BLOCK_DV": 8192})
            assert huge == [min(table, key=lambda c: c.block_m * c.block_n)]
    # D = 256 in float32: the forward's first config (128 rows of q resident) does not fit.
    big = A.FWD.prune(A.FWD_CONFIGS["cuda"], {"Q": q, "BLOCK_D": 256, "BLOCK_DV": 256})
    assert A.FWD_CONFIGS["cuda"][0] not in big


@pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")
def test_config_tables_have_distinct_rows_and_convert_for_triton():
    tables = [C.CUDA_CONFIGS, C.HIP_CONFIGS] + [t for tuning in (A.FWD, A.BWD_DKDV, A.BWD_DQ)
                                                for t in tuning.tables.values()]
    for table in tables:
        assert len(set(table)) == len(table)
        converted = [L.triton_config(c) for c in table]
        assert len(set(converted)) == len(table)  # the autotuner maps them back by value
        for c, t in zip(table, converted):
            assert t.kwargs == {**c.meta(), **dict(c.options)}
            assert (t.num_warps, t.num_stages) == (c.num_warps, c.num_stages)
            assert L.launch_options(c) == {"num_warps": c.num_warps,
                                           "num_stages": c.num_stages, **dict(c.options)}


def test_the_package_module_imports_neither_triton_nor_its_modules():
    """hetero.backends.triton imports ``interpreting`` from it without importing triton."""
    tree = _modules()[PACKAGE]
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)]
    assert not [m for m in imported if m.split(".")[0] in ("triton", "")], imported
    assert {"interpreting", "gpu_platform", "next_pow2", "refuse_interpreter_bfloat16"} \
        <= set(vars(package))
