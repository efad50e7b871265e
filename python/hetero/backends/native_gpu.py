"""The native GPU backends: the kernels of ``backends/cuda/`` (C++), four ways.

========================  ==================  ========  =============================
backend                   module              tensors   math
========================  ==================  ========  =============================
``cuda``                  ``hetero._C_cuda``  CUDA      tensor cores (wmma), sm_80+
``rocm``                  ``hetero._C_rocm``  ROCm      SIMT (fused multiply-adds)
``cuda_emulated``         ``_C_gpu_host``     CPU       the ``cuda`` kernels, emulated
``rocm_emulated``         ``_C_gpu_host``     CPU       the ``rocm`` kernels, emulated
========================  ==================  ========  =============================

One kernel source serves all four (``backends/cuda/runtime.h`` is the portability
header). The emulated pair runs the very same kernels on the CPU through a host model
of the GPU's execution (``backends/cuda/host_emulation.h``): slow, opt-in, and there so
that the kernels' indexing, masking and epilogues meet hetero's conformance suite on
machines without a GPU. They say nothing about speed.

GEMM: float16/bfloat16 inputs, float32 accumulation, any strides, batch, bias, float32
output. Attention forward: float16/bfloat16, head dims 64 and 128 (v's equal to q's),
causal (bottom-right), GQA, bool and additive masks. Everything else is declared
unsupported, so dispatch passes it on with the reason.

Kernels launch on the current torch stream of the tensors' device; the Python side
passes ``data_ptr()``\\ s and the stream handle, the C++ launchers never see torch.
"""

from __future__ import annotations

import contextlib
import importlib

import torch

from ..kernel import Kernel, Support
from ..ops.attention.api import head_dims
from .base import Backend
from .views import optional_view, view

_DTYPES = frozenset({torch.float16, torch.bfloat16})
_GEMM_FEATURES = frozenset({"bias", "batch", "float32_out"})
_ATTENTION_FEATURES = frozenset({"causal", "gqa", "mask_bool", "mask_additive"})


def build_status(module: str) -> str:
    """What CMake recorded about ``module`` when hetero was built ("built ..." or
    "not built: <why>")."""
    try:
        from .._native_build import STATUS
    except ImportError:
        return "not built: hetero/_native_build.py is missing (hetero was not built by CMake)"
    return STATUS.get(module, "not built: unknown to this build")


def _load(module: str):
    """``(module, None)`` or ``(None, why it cannot be used)``."""
    status = build_status(module)
    if not status.startswith("built"):
        return None, f"hetero.{module} {status}"
    try:
        return importlib.import_module(f"hetero.{module}"), None
    except ImportError as exc:
        return None, f"hetero.{module} ({status}) failed to load: {exc}"


class NativeGpuBackend(Backend):
    """One build of the ``backends/cuda/`` kernels.

    ``module``: the extension's name; ``path``: ``"tensor_cores"`` or ``"simt"``;
    ``runtime``: ``"cuda"``, ``"hip"`` or ``"host"`` (emulated, CPU tensors)."""

    api_version = "2.0"

    def __init__(self, name: str, module: str, path: str, runtime: str, priority: int,
                 description: str):
        self.name, self.module_name, self.path, self.runtime = name, module, path, runtime
        self.priority, self.description = priority, description
        self.device_type = "cpu" if runtime == "host" else "cuda"
        self.default = runtime != "host"  # the emulation is for testing, never a default
        self._module, self._load_error = None, None
        self._loaded = False

    # -------------------------------------------------------------- discovery

    @property
    def module(self):
        if not self._loaded:
            self._module, self._load_error = _load(self.module_name)
            self._loaded = True
        return self._module

    def probe(self) -> list[str]:
        if self.module is None:
            return [self._load_error]
        if self.runtime == "host":
            return []
        reasons = []
        torch_runtime = torch.version.cuda if self.runtime == "cuda" else torch.version.hip
        if torch_runtime is None:
            wanted = "CUDA" if self.runtime == "cuda" else "ROCm"
            reasons.append(f"torch {torch.__version__} is not a {wanted} build, so it has no "
                           f"{wanted} tensors to give these kernels")
        report = self.module.runtime_report()
        if report["device_count"] == 0:
            reasons.append(f"hetero.{self.module_name} is built ({report.get('archs', '')}) but "
                           f"the {self.runtime.upper()} runtime finds no device: "
                           f"{report['error'] or 'device count is 0'}")
        return reasons

    @property
    def details(self) -> dict:
        out = {"module": f"hetero.{self.module_name}: {build_status(self.module_name)}",
               "math": "tensor cores (wmma 16x16x16)" if self.path == "tensor_cores"
               else "SIMT (per-thread fused multiply-adds)"}
        if self.runtime == "host":
            out["runs"] = ("the GPU kernel source on the CPU, emulated: tests correctness, "
                           "not speed")
        return out

    # ---------------------------------------------------------------- kernels

    def _on_device(self, device: torch.device):
        """``(stream handle or None, context)``: launches go to the current stream of
        ``device``, with ``device`` made current for the launch if it is not."""
        if self.runtime == "host":
            return None, contextlib.nullcontext()
        guard = contextlib.nullcontext() if device.index in (None, torch.cuda.current_device()) \
            else torch.cuda.device(device)
        return torch.cuda.current_stream(device).cuda_stream, guard

    def _gemm(self, args):
        stream, guard = self._on_device(args.a.device)
        with guard:
            self.module.gemm(view(args.a), view(args.b), view(args.out), optional_view(args.bias),
                             args.alpha, args.beta, stream, self.path)

    def _attention(self, args):
        stream, guard = self._on_device(args.q.device)
        with guard:
            self.module.attention_forward(view(args.q), view(args.k), view(args.v),
                                          optional_view(args.mask), args.causal, args.scale,
                                          view(args.out), stream, self.path)

    def _arch_reasons(self, traits) -> list[str]:
        """ROCm code objects run only on the architectures they were built for."""
        arch = torch.cuda.get_device_properties(traits.device).gcnArchName.split(":")[0]
        built = self.module.runtime_report().get("archs", "").split(",")
        if arch not in built:
            return [f"device architecture {arch} is not among hetero._C_rocm's "
                    f"{', '.join(built)} (rebuild with HETERO_ROCM_ARCHS={arch})"]
        return []

    def kernels(self):
        devices = frozenset({self.device_type})
        capability = (8, 0) if self.runtime == "cuda" else None
        arch_check = self._arch_reasons if self.runtime == "hip" else None
        return (
            Kernel("gemm", "tiled", self._gemm, Support(
                dtypes=_DTYPES, device_types=devices, features=_GEMM_FEATURES,
                min_compute_capability=capability, predicate=arch_check)),
            Kernel("attention", "flash", self._attention, Support(
                dtypes=_DTYPES, device_types=devices, features=_ATTENTION_FEATURES,
                limits=head_dims(64, 128, multiple=64),
                min_compute_capability=capability, predicate=arch_check)),
        )


cuda = NativeGpuBackend(
    "cuda", "_C_cuda", "tensor_cores", "cuda", priority=40,
    description="native CUDA kernels (hetero._C_cuda, tensor cores)")
rocm = NativeGpuBackend(
    "rocm", "_C_rocm", "simt", "hip", priority=40,
    description="native HIP kernels for AMD GPUs (hetero._C_rocm)")
cuda_emulated = NativeGpuBackend(
    "cuda_emulated", "_C_gpu_host", "tensor_cores", "host", priority=1,
    description="the cuda backend's kernels on the CPU, by an emulated GPU (tests only)")
rocm_emulated = NativeGpuBackend(
    "rocm_emulated", "_C_gpu_host", "simt", "host", priority=1,
    description="the rocm backend's kernels on the CPU, by an emulated GPU (tests only)")
