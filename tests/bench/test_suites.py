"""Benchmark cases: suite shapes from the model data, FLOP and byte formulas, shape files."""

from __future__ import annotations

import json

import pytest

from hetero.bench import suites
from hetero.ops.attention.bench import AttentionCase
from hetero.ops.gemm.bench import GemmCase


def test_gemm_formulas():
    case = GemmCase(3, 5, 7, batch=2)
    assert case.flops == 2 * 2 * 3 * 5 * 7
    assert case.min_bytes(2) == 2 * 2 * (3 * 7 + 7 * 5 + 3 * 5)
    assert case.bucket == (4, 8, 8, 1)  # x @ w.t(): b column-major
    assert case.shape == "2×3×5×7"


def test_attention_flops_count_visible_pairs():
    full = AttentionCase(2, 4, 2, 8, 8, 16, causal=False)
    assert full.flops == 4 * 2 * 4 * 16 * 8 * 8
    causal = AttentionCase(2, 4, 2, 8, 8, 16, causal=True)
    assert causal.flops == 4 * 2 * 4 * 16 * (8 * 9 // 2)  # about half: S(S+1)/2 pairs
    decode = AttentionCase(1, 4, 2, 1, 100, 16, causal=True)  # bottom-right: sees every key
    assert decode.flops == AttentionCase(1, 4, 2, 1, 100, 16).flops == 4 * 4 * 16 * 100
    # q and out per query head, k and v per key/value head
    assert full.min_bytes(4) == 4 * 2 * 16 * (2 * 4 * 8 + 2 * 2 * 8)
    assert full.bucket == (8, 8, 8, 16)  # (B·Hq, Sq, Sk, D)


def test_llm_suite_follows_the_model_configs():
    cases = suites.cases("all", "llm", "cpu", quick=False)
    gemms = {c.name: c for c in cases if c.op == "gemm"}
    llama_qkv = gemms["llama3-8b prefill qkv"]
    assert (llama_qkv.m, llama_qkv.n, llama_qkv.k) == (64, (32 + 2 * 8) * 128, 4096)
    assert (gemms["llama3-8b decode gate_up"].n, gemms["llama3-8b decode down"].k) == \
        (2 * 14336, 14336)
    assert gemms["qwen-7b prefill qkv"].n == 3 * 4096  # no GQA
    # the o projection has one shape in both models: measured once, named for both
    assert "llama3-8b prefill o, qwen-7b prefill o" in gemms
    attention = [c for c in cases if c.op == "attention"]
    assert {(c.sq, c.sk, c.hq, c.hkv) for c in attention} >= {(64, 64, 32, 8), (1, 1024, 32, 8)}
    assert all(c.causal for c in attention)
    assert len({c.key() for c in cases}) == len(cases)


def test_quick_and_device_sizes():
    assert len(suites.cases("all", "llm", "cpu", True)) < len(suites.cases("all", "llm", "cpu", False))
    gpu = suites.cases("gemm", "llm", "cuda", False)
    assert max(c.m for c in gpu) == 4096
    assert {c.op for c in suites.cases("attention", "square", "cpu", False)} == {"attention"}


def test_shape_file_json_and_yaml(tmp_path):
    spec = {"gemm": [{"m": 4, "n": 5, "k": 6}, {"m": 1, "n": 2, "k": 3, "batch": 2,
                                                 "layout": "x @ w", "name": "tiny"}],
            "attention": [{"hq": 4, "hkv": 2, "sq": 3, "d": 8, "causal": True}]}
    path = tmp_path / "shapes.json"
    path.write_text(json.dumps(spec))
    cases = suites.cases("all", str(path), "cpu", False)
    assert cases == [GemmCase(4, 5, 6), GemmCase(1, 2, 3, 2, "x @ w", "tiny"),
                     AttentionCase(1, 4, 2, 3, 3, 8, True)]
    yaml = tmp_path / "shapes.yaml"
    yaml.write_text("gemm:\n  - {m: 4, n: 5, k: 6}\n")
    assert suites.cases("gemm", str(yaml), "cpu", False) == [GemmCase(4, 5, 6)]


@pytest.mark.parametrize("spec, message", [
    ({"gemm": [{"m": 4, "n": 5}]}, r"gemm\[0\]: 'k' is required"),
    ({"gemm": [{"m": 4, "n": 5, "k": -1}]}, r"gemm\[0\]: k must be an integer >= 0"),
    ({"gemm": [{"m": 4, "n": 5, "k": 6, "bias": 1}]}, r"gemm\[0\]: unexpected \['bias'\]"),
    ({"attention": [{"hq": 3, "hkv": 2, "sq": 4, "d": 8}]}, r"attention\[0\]: hkv 2 must divide hq 3"),
    ({"conv": []}, r"expected a mapping with keys among \['attention', 'gemm', 'scaled_gemm'\]"),
])
def test_bad_shape_files_name_the_entry(tmp_path, spec, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=message):
        suites.from_file(path)


def test_unknown_suite():
    with pytest.raises(ValueError, match="--shapes: expected one of"):
        suites.cases("all", "nonesuch", "cpu", False)
