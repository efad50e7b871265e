"""hetero under torch.distributed with 2 real processes on the CPU (gloo): a Llama
parallelised with PyTorch's tensor-parallel plan, and an FSDP2 training step, each
under hetero.enable() — same results as one process, with hetero's kernels serving
(counted on both ranks)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

pytest.importorskip("transformers")
if not dist.is_available():
    pytest.skip("torch.distributed is not built in", allow_module_level=True)

FIXTURES = Path(__file__).parent.parent / "fixtures"
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(name: str, tmp_path) -> list[dict]:
    sys.path.insert(0, str(FIXTURES))
    try:
        import distributed_workers

        torch.multiprocessing.spawn(getattr(distributed_workers, name),
                                    args=(WORLD, _free_port(), str(tmp_path)), nprocs=WORLD)
    finally:
        sys.path.remove(str(FIXTURES))
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(autouse=True)
def _native_kernels(monkeypatch):
    monkeypatch.setenv("HETERO_TUNED", "off")  # the cpu kernels, not a measured choice


def test_tensor_parallel_llama_matches_one_process_on_hetero_kernels(tmp_path):
    for rank in _spawn("tensor_parallel", tmp_path):
        assert "cpu.gemm" in rank["served"]["gemm"]
        assert "cpu.flash" in rank["served"]["attention"]
        assert rank["sharded_gradients"] >= 14  # 7 projections × 2 layers
        assert not any("sharding rule" in r for rs in rank["fallbacks"].values() for r in rs)


def test_an_fsdp2_step_matches_the_unsharded_step_on_hetero_kernels(tmp_path):
    for rank in _spawn("fsdp_step", tmp_path):
        assert "cpu.gemm" in rank["served"]["gemm"]
        assert "cpu.flash" in rank["served"]["attention"]


def test_every_declared_placement_gives_the_single_device_result(tmp_path):
    ranks = _spawn("op_placements", tmp_path)
    checked = ranks[0]["checked"]
    assert any("Partial" in c for c in checked)  # the contraction split
    assert sum("attention_backward" in c for c in checked) >= 3
    assert len(checked) >= 15 and ranks[1]["checked"] == checked


def test_a_dtensor_call_of_an_op_without_rules_stays_with_pytorch(tmp_path):
    for rank in _spawn("without_rules", tmp_path):
        assert rank["served"] == {}
        assert rank["fallbacks"]["gemm"] == ["linear: DTensor arguments: gemm has no sharding rule"]
