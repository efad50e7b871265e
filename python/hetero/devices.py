"""Peak dense throughput and memory bandwidth of accelerators, for rooflines and
"% of peak" columns. Vendor datasheet figures, dense (no sparsity), 16-bit matrix math.

Sources: NVIDIA H100 datasheet (SXM5: 989.4 TFLOP/s bf16/fp16 dense, 3.35 TB/s;
PCIe: 756 TFLOP/s, 2.0 TB/s); NVIDIA H200 datasheet (989 TFLOP/s, 4.8 TB/s); NVIDIA
A100 datasheet (312 TFLOP/s, 2.0 TB/s for 80 GB SXM); NVIDIA H20 (148 TFLOP/s,
4.0 TB/s); AMD Instinct MI300X datasheet (1307 TFLOP/s, 5.3 TB/s). On the CPU, measure
rather than trust a table (a later benchmark harness does).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    tflops_16bit: float  # dense fp16/bf16 matrix throughput, TFLOP/s
    tbytes_per_s: float  # memory bandwidth, TB/s


# Matched in order against the name torch reports; the first substring found wins.
SPECS = (
    ("H100 PCIe", DeviceSpec("NVIDIA H100 PCIe", 756.0, 2.0)),
    ("H100", DeviceSpec("NVIDIA H100 SXM", 989.4, 3.35)),
    ("H200", DeviceSpec("NVIDIA H200", 989.4, 4.8)),
    ("H20", DeviceSpec("NVIDIA H20", 148.0, 4.0)),
    ("A100", DeviceSpec("NVIDIA A100", 312.0, 2.0)),
    ("MI300X", DeviceSpec("AMD Instinct MI300X", 1307.4, 5.3)),
)


def lookup(device_name: str) -> DeviceSpec | None:
    """The spec for a device name such as ``torch.cuda.get_device_name()``, or None."""
    for key, spec in SPECS:
        if key in device_name:
            return spec
    return None
