"""Backends: one small module each. Discovered through the ``hetero.backends``
entry-point group, built-in and third-party alike (see :mod:`hetero.registry`)."""

from .base import Backend

__all__ = ["Backend"]
