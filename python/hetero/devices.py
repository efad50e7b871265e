"""Peak dense throughput and memory bandwidth of accelerators, for rooflines and
"% of peak" columns. Vendor datasheet figures, dense (no sparsity).

Sources (16-bit matrix / fp32 / bandwidth):
- NVIDIA H100 datasheet: SXM5 989.4 TFLOP/s bf16/fp16, 66.9 fp32, 3.35 TB/s; PCIe 756,
  51.2, 2.0 TB/s.
- NVIDIA H200 datasheet: 989.4, 66.9 fp32, 4.8 TB/s.
- NVIDIA A100 datasheet (80 GB SXM): 312, 19.5 fp32, 2.0 TB/s.
- NVIDIA H20 (product brief): 148, 44 fp32, 4.0 TB/s.
- AMD Instinct MI300X datasheet: 1307.4, 163.4 fp32 (matrix), 5.3 TB/s.
- Huawei Ascend 910B: ~320 TFLOP/s fp16, 1.6 TB/s HBM (vendor material; fp32 not given).
- Cambricon MLU370-X8: ~96 TFLOP/s fp16, 614 GB/s (vendor material).
- Moore Threads MTT S4000: ~100 TFLOP/s fp16, 768 GB/s (vendor material).

On the CPU, measure rather than trust a table (:mod:`hetero.bench.machine` does). A
backend declares its own device's peaks through ``Backend.peaks`` (no edit here);
this table serves the devices whose backends do not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    tflops_16bit: float  # dense fp16/bf16 matrix throughput, TFLOP/s
    tbytes_per_s: float  # memory bandwidth, TB/s
    tflops_fp32: float | None = None  # dense fp32 (no tf32), TFLOP/s; None = not published


# Matched in order against the name torch reports; the first substring found wins.
SPECS = (
    ("H100 PCIe", DeviceSpec("NVIDIA H100 PCIe", 756.0, 2.0, 51.2)),
    ("H100", DeviceSpec("NVIDIA H100 SXM", 989.4, 3.35, 66.9)),
    ("H200", DeviceSpec("NVIDIA H200", 989.4, 4.8, 66.9)),
    ("H20", DeviceSpec("NVIDIA H20", 148.0, 4.0, 44.0)),
    ("A100", DeviceSpec("NVIDIA A100", 312.0, 2.0, 19.5)),
    ("MI300X", DeviceSpec("AMD Instinct MI300X", 1307.4, 5.3, 163.4)),
    ("910B", DeviceSpec("Huawei Ascend 910B", 320.0, 1.6)),
    ("MLU370", DeviceSpec("Cambricon MLU370-X8", 96.0, 0.614)),
    ("S4000", DeviceSpec("Moore Threads MTT S4000", 100.0, 0.768)),
)


def lookup(device_name: str) -> DeviceSpec | None:
    """The spec for a device name such as ``torch.cuda.get_device_name()``, or None."""
    for key, spec in SPECS:
        if key in device_name:
            return spec
    return None
