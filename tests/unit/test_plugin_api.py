"""The plugin API is versioned: a backend built for another version is refused whole,
with a message saying what to install, and none of its kernels are looked at."""

from __future__ import annotations

import re
import sys
import textwrap

import pytest

import hetero
from hetero import registry
from hetero.testing import randn


class Versioned(hetero.Backend):
    device_type = "cpu"
    default = False
    kernels_asked = 0

    def __init__(self, name, api_version):
        self.name, self.api_version = name, api_version

    def kernels(self):
        Versioned.kernels_asked += 1
        return []


@pytest.mark.parametrize("version, message", [
    ("3.0", "was built for hetero plugin API 3.0; this hetero speaks 2.1 (install a hetero "
            "that speaks it"),
    ("2.9", "was built for hetero plugin API 2.9; this hetero speaks 2.1"),
    ("1.0", "install a build of the backend for plugin API 2.x); in 2.0 kernels take the "
            "op's argument record"),
    ("0.3", "install a build of the backend for plugin API 2.x"),
    (None, "declares no api_version; set api_version = \"2.1\""),
    ("one", "has api_version 'one'; expected \"major.minor\""),
])
def test_incompatible_backends_are_refused_whole(version, message):
    Versioned.kernels_asked = 0
    with pytest.raises(ValueError, match=re.escape(message)):
        hetero.register_backend(Versioned("future", version))
    assert registry.get("future") is None and Versioned.kernels_asked == 0


def test_a_compatible_backend_loads():
    assert hetero.PLUGIN_API == "2.1"
    for version in ("2.1", "2.0"):  # 2.0 backends load: 2.1 only added Backend.peaks
        hetero.register_backend(Versioned("current", version))
        try:
            assert Versioned.kernels_asked >= 1
            assert not registry.get("current").reasons_unavailable()
        finally:
            hetero.unregister_backend("current")


def test_an_incompatible_entry_point_is_reported_not_loaded(tmp_path):
    (tmp_path / "future_backend.py").write_text(textwrap.dedent('''
        import hetero
        asked = []

        class Future(hetero.Backend):
            name, device_type, api_version = "future", "cpu", "3.0"

            def kernels(self):
                asked.append(1)
                return []

        backend = Future()
    '''))
    info = tmp_path / "future_backend-3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: future-backend\nVersion: 3.0\n")
    (info / "entry_points.txt").write_text("[hetero.backends]\nfuture = future_backend:backend\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.warns(hetero.HeteroConfigWarning, match="built for hetero plugin API 3.0"):
            registry.rediscover()
            entry = registry.get("future")
        assert entry.kernels == {} and sys.modules["future_backend"].asked == []
        assert "this hetero speaks 2.1" in entry.reasons_unavailable()[0]
        shown = next(b for b in hetero.info()["backends"] if b["name"] == "future")
        assert not shown["available"] and shown["source"] == "future-backend 3.0"
        a = randn(2, 2)
        assert hetero.explain("gemm", a, a, backend=["future", "*"]).chosen.backend == "cpu"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("future_backend", None)
        registry.rediscover()
