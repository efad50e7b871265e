"""Exceptions and warnings raised by hetero.

Input errors are plain ``TypeError``/``ValueError`` (what a torch user expects); the
classes here are for dispatch outcomes and configuration.
"""

from __future__ import annotations


class HeteroError(RuntimeError):
    """Base class of hetero's own runtime errors."""


class DispatchError(HeteroError):
    """No candidate kernel could serve a call.

    ``decision`` holds the full :class:`hetero.dispatch.Decision`: every candidate
    that was tried and why it was rejected.
    """

    def __init__(self, decision):
        self.decision = decision
        super().__init__(str(decision))


class FallbackError(DispatchError):
    """Raised under the ``error`` fallback policy when the first candidate could not
    serve the call and a later one would have."""


class HeteroWarning(UserWarning):
    """Base class of hetero's warnings."""


class HeteroFallbackWarning(HeteroWarning):
    """A call ran on a later candidate because earlier ones could not serve it."""


class HeteroConfigWarning(HeteroWarning):
    """An unknown or malformed ``HETERO_*`` environment variable, or a backend that
    failed to load."""
