"""Shared fixtures: every test starts from hetero's default dispatch state."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

# Without a GPU, run the Triton kernels through Triton's CPU interpreter. Must be set
# before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# A tuned table measured on this machine must not steer the tests' dispatch, and the
# tests' calls must not be measured (tests/unit/test_calibration.py turns both on).
os.environ.setdefault("HETERO_TUNED", "off")
os.environ.setdefault("HETERO_CALIBRATE", "off")

import pytest  # noqa: E402

import hetero  # noqa: E402
from hetero import dispatch, registry  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _default_dispatch_state():
    hetero.reset_stats()
    yield
    leaked = hetero.is_enabled()
    while hetero.is_enabled():
        hetero.disable()
    hetero.set_fallback_policy(None)
    dispatch.clear_cache()
    assert not leaked, "the test left hetero.enable() on"


@pytest.fixture
def hetero_env():
    """``hetero_env(HETERO_X="...")`` replaces every HETERO_* variable and reloads;
    the original environment is restored (and reloaded) afterwards."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("HETERO_")}

    def replace(**values: str) -> None:
        for name in [n for n in os.environ if n.startswith("HETERO_")]:
            del os.environ[name]
        values.setdefault("HETERO_TUNED", "off")  # as at the top of this file
        values.setdefault("HETERO_CALIBRATE", "off")
        os.environ.update(values)
        hetero.reload()

    yield replace
    replace(**saved)


@pytest.fixture
def without_the_torch_backend():
    """PyTorch's own kernels out of dispatch (the ``torch`` backend unregistered) for one
    test: then nothing serves what hetero's kernels cannot, and PyTorch's call is the
    bridge's last resort."""
    hetero.unregister_backend("torch")
    yield
    registry.rediscover()


@pytest.fixture
def plugin_site():
    """Puts tests/fixtures/plugin_site (a real installed distribution: dist-info with
    an entry_points.txt) on sys.path and rediscovers backends."""
    import sys

    path = str(FIXTURES / "plugin_site")
    sys.path.insert(0, path)
    registry.rediscover()
    yield path
    sys.path.remove(path)
    for name in [m for m in sys.modules if m.startswith("hetero_toy_backend")]:
        del sys.modules[name]
    registry.rediscover()


@pytest.fixture
def bench_backends():
    """Registers ``sleepy``, ``fastwrong``, ``gemmonly`` and ``broken``
    (tests/fixtures/bench_backends.py) for one test."""
    sys.path.insert(0, str(FIXTURES))
    try:
        import bench_backends as module
        made = module.backends()
        for backend in made:
            registry.register(backend)
        yield {b.name: b for b in made}
    finally:
        for backend in made:
            registry.unregister(backend.name)
        sys.path.remove(str(FIXTURES))
