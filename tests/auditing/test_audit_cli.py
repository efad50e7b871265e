"""``hetero audit MODEL_SPEC``: every preset audited, with JSON, Markdown and a PNG;
bad specs and options exit 2 with the argument named."""

from __future__ import annotations

import json

import pytest

import hetero
from hetero.auditing.presets import PRESETS
from hetero.cli import main

pytest.importorskip("transformers")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_is_audited_with_json_markdown_and_plot(preset, tmp_path, capsys):
    files = {kind: tmp_path / f"audit.{kind}" for kind in ("json", "md", "png")}
    status = main(["audit", preset, "--backend", "cpu", "--tokens", "12", "--quiet",
                   "--json", str(files["json"]), "--markdown", str(files["md"]),
                   "--plot", str(files["png"])])
    assert status == 0, capsys.readouterr().out
    data = json.loads(files["json"].read_text())
    assert data["format"] == "hetero-audit/1" and data["model"] == preset
    assert data["backend"] == "cpu" and data["dtype"] == "float32"
    assert {"max_error", "rms_error", "top1_agreement"} <= set(data["drift"]["hetero"])
    assert data["verdict"].startswith("all ") and data["calls"]
    call = data["calls"][0]
    assert {"module", "op", "index", "served_by", "reason", "shapes", "dtype", "error",
            "bound", "ratio"} <= set(call)
    assert any(c["module"].startswith(("model.layers.", "transformer.h.", "encoder.layer."))
               for c in data["calls"])
    assert "**Verdict**" in files["md"].read_text()
    assert files["png"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv, message", [
    (["audit", "nope"], "model: 'nope' is not a preset"),
    (["audit", "llama", "--backend", "nope"], "backend: no backend named 'nope'"),
    (["audit", "llama", "--tokens", "0"], "--tokens: expected a positive int"),
    (["audit", "llama", "--sample", "0"], "sample: expected a positive int"),
])
def test_bad_specs_and_options_exit_2_naming_the_argument(argv, message, capsys):
    assert main([*argv, "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not hetero.is_enabled()


def test_a_local_model_directory_is_a_model_spec(tmp_path, capsys):
    from hetero.auditing import presets

    presets.build("qwen2").save_pretrained(tmp_path / "qwen2-tiny")
    status = main(["audit", str(tmp_path / "qwen2-tiny"), "--backend", "cpu", "--tokens", "8",
                   "--quiet", "--json", str(tmp_path / "a.json")])
    assert status == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["model"] == str(tmp_path / "qwen2-tiny") and data["calls"]
