"""Errors raised by brainfly.

Every error is a :class:`BrainflyError` and also subclasses the builtin exception it
refines, so ``except ValueError`` keeps working for callers that do not know brainfly.
A message names the owner and field, what it got, what was expected, and a hint.
"""

from __future__ import annotations

from collections.abc import Iterable
import difflib

__all__ = [
    "BrainflyError",
    "ValidationError",
    "DataError",
    "ChecksumError",
    "DataNotFoundError",
    "DownloadError",
    "UnknownNeuronError",
    "UnknownEngineError",
    "UnsupportedFeature",
    "EngineUnavailable",
    "OutputExistsError",
    "suggest",
]


class BrainflyError(Exception):
    """Base class of every error brainfly raises on purpose."""


class ValidationError(BrainflyError, ValueError):
    """A value given by the user is impossible (negative rate, zero trials, ...)."""


class DataError(BrainflyError, ValueError):
    """A data file is corrupt, truncated or inconsistent; the message names file and problem."""


class ChecksumError(DataError):
    """A file's SHA-256 or size differs from the pinned value."""


class DataNotFoundError(BrainflyError, FileNotFoundError):
    """The connectome files are neither cached, nor in the given folder, nor downloadable."""


class DownloadError(BrainflyError, OSError):
    """A download failed (no network, HTTP error); the message says what to fetch by hand."""


class UnknownNeuronError(BrainflyError, KeyError):
    """A FlyWire ID or neuron name is not in the connectome; the message suggests matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownEngineError(BrainflyError, KeyError):
    """No engine is registered under that name; the message lists the registered ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsupportedFeature(BrainflyError, NotImplementedError):
    """The engine cannot run this experiment as asked (raised by ``validate``, before work)."""


class EngineUnavailable(BrainflyError, RuntimeError):
    """The engine's library or hardware is missing here (no GPU, package not installed)."""


class OutputExistsError(BrainflyError, FileExistsError):
    """A finished result is already at the output path (replace it only when asked to)."""


def suggest(word: str, choices: Iterable[str], n: int = 5) -> str:
    """Return a ``" Did you mean ...?"`` hint with the closest of *choices*, or ``""``.

    >>> suggest("MN8", ["MN9", "P9", "aDN1"])
    " Did you mean 'MN9'?"
    """
    word = str(word)
    # short names differ by one character in a larger share of their letters (P8 / P9)
    cutoff = 0.5 if len(word) <= 4 else 0.6
    matches = difflib.get_close_matches(word, [str(c) for c in choices], n=n, cutoff=cutoff)
    if not matches:
        return ""
    return " Did you mean " + ", ".join(repr(m) for m in matches) + "?"
