"""``hetero new-backend``: the package it writes is the template example, installs as a
wheel holding only its own package, and passes its own tests and the conformance suite —
also after its declaration is narrowed."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hetero.cli import main
from hetero.scaffold import new_backend, render

EXAMPLE = Path(__file__).parents[2] / "examples" / "hetero-backend-template"


def test_the_example_in_the_repository_is_the_template_for_its_name():
    written = render("template")
    on_disk = {str(p.relative_to(EXAMPLE)): p.read_text() for p in EXAMPLE.rglob("*")
               if p.is_file() and "egg-info" not in str(p) and "__pycache__" not in p.parts
               and p.parts[len(EXAMPLE.parts)] not in ("build", "dist")}
    assert on_disk == written  # regenerate it with scaffold.render("template") if not


def test_bad_names_taken_names_and_existing_directories_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="^name: expected a lower-case Python identifier"):
        new_backend("My-Chip", tmp_path)
    with pytest.raises(ValueError, match="^name: a backend named 'cpu' is installed"):
        new_backend("cpu", tmp_path)
    new_backend("acme", tmp_path)
    with pytest.raises(ValueError, match="^into: .*hetero-backend-acme exists"):
        new_backend("acme", tmp_path)
    assert main(["new-backend", "class", "--into", str(tmp_path)]) == 2
    assert "name: expected" in capsys.readouterr().err


def _narrow(package: Path) -> None:
    """Declare less, as a vendor whose chip lacks things would: bf16 only, head dims
    16..128 in steps of 16, no Dv != D, and K at most 4096."""
    init = package / "__init__.py"
    text = init.read_text()
    for old, new in (
            ("frozenset({torch.float32, torch.float16, torch.bfloat16})",
             "frozenset({torch.bfloat16})"),
            ("limits=head_dims(1, 256)", "limits=head_dims(16, 128, multiple=16)"),
            ('"mask_additive",\n                                    "head_dim_v"}',
             '"mask_additive"}'),
            ('features=frozenset({"bias", "batch", "float32_out"})',
             'features=frozenset({"bias", "batch", "float32_out"}),\n'
             '                limits={"K": hetero.Range(0, 4096)}')):
        assert old in text, old
        text = text.replace(old, new)
    init.write_text(text)


@pytest.mark.parametrize("narrowed", [False, True], ids=["as-written", "narrowed"])
def test_a_new_backend_builds_installs_and_passes_its_tests_and_the_suite(tmp_path, narrowed):
    pytest.importorskip("setuptools")
    root = new_backend("acme", tmp_path)
    if narrowed:
        _narrow(root / "src" / "hetero_backend_acme")
    (root / "src" / "leftover.egg-info").mkdir()  # build output must not ship
    dist, site = tmp_path / "dist", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(root)], check=True, capture_output=True)
    (wheel,) = dist.glob("*.whl")
    members = zipfile.ZipFile(wheel).namelist()
    assert all(m.startswith(("hetero_backend_acme/", "hetero_backend_acme-0.1.0.dist-info/"))
               for m in members), members
    assert "hetero_backend_acme/kernels.py" in members
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(root / "tests")], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout.splitlines()[-1]
