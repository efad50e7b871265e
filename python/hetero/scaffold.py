"""``hetero new-backend NAME``: a new out-of-tree backend package, ready to install.

The package is written from the files in ``plugin_template/`` (shipped with hetero, so
an installed hetero can do this), each listed in :data:`FILES`, with the names
substituted — nothing else is copied: no build output, no caches. What it contains:
one GEMM and one attention kernel in plain torch with their declared support, the
``hetero.backends`` entry point, and tests that read the declared support (so they keep
passing as the declaration narrows). ``examples/hetero-backend-template`` in hetero's
repository is this output for the name ``template``.
"""

from __future__ import annotations

import keyword
from pathlib import Path

from . import registry
from .backends.base import PLUGIN_API

TEMPLATE = Path(__file__).parent / "plugin_template"

#: file written -> template it comes from (paths with ``{package}`` substituted).
FILES = {
    "pyproject.toml": "pyproject.toml.in",
    "README.md": "README.md.in",
    "src/{package}/__init__.py": "__init__.py.in",
    "src/{package}/kernels.py": "kernels.py.in",
    "tests/test_{name}.py": "test_backend.py.in",
}


def names(name: str) -> dict[str, str]:
    """The names a backend called ``name`` gets: distribution, package, class."""
    if not name.isidentifier() or keyword.iskeyword(name) or name != name.lower():
        raise ValueError(f"name: expected a lower-case Python identifier (it names the "
                         f"backend and its package), got {name!r}")
    return {"name": name, "dist": f"hetero-backend-{name.replace('_', '-')}",
            "package": f"hetero_backend_{name}",
            "class": "".join(p.capitalize() for p in name.split("_")) + "Backend",
            "api": PLUGIN_API, "description": f"{name}: an out-of-tree hetero backend"}


def render(name: str) -> dict[str, str]:
    """``{relative path: text}`` of the package for backend ``name``."""
    subs = names(name)
    files = {}
    for target, source in FILES.items():
        text = (TEMPLATE / source).read_text()
        for key, value in subs.items():
            text = text.replace("{{" + key + "}}", value)
        files[target.format(**subs)] = text
    return files


def new_backend(name: str, into: str | Path = ".", *, allow_taken: bool = False) -> Path:
    """Write the package for backend ``name`` under ``into`` (as
    ``hetero-backend-NAME/``) and return its directory. ``ValueError`` if the name is
    not an identifier, is taken by an installed backend (unless ``allow_taken``), or the
    directory exists."""
    subs = names(name)
    if not allow_taken and registry.get(name) is not None:
        raise ValueError(f"name: a backend named {name!r} is installed already "
                         f"({registry.get(name).source}); backend names are unique")
    root = Path(into) / subs["dist"]
    if root.exists():
        raise ValueError(f"into: {root} exists; choose another directory or name")
    for path, text in render(name).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root
