"""Build the event engine's kernel ahead of time: ``python -m brainfly.engines._event_build``.

The child process of :mod:`brainfly.engines._event_aot` (in the background after a first
run, or in the foreground for ``brainfly install event-kernel``): it compiles
:func:`~brainfly.engines._event_kernels.run_trial` for the argument types of an empty
trial (:meth:`EventEngine.warm_up_args`, the types of every run with 4-byte connection
records) into the module's folder. A process of its own, so that numba's compiler (and
its flags, set for the build) never touch the process that asked for it.
"""

from __future__ import annotations

import os
import sys

from ._event_aot import build_here
from .event import EventEngine

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Build (``--force``: even if it is built; ``--background``: at a low CPU priority, so
    that it yields to the run that started it); exit status 0 on success."""
    args = sys.argv[1:] if argv is None else argv
    if not set(args) <= {"--force", "--background"}:
        print("usage: python -m brainfly.engines._event_build [--force] [--background]", file=sys.stderr)
        return 2
    if "--background" in args and hasattr(os, "nice"):
        os.nice(10)
    try:
        path = build_here(EventEngine().warm_up_args(), force="--force" in args)
    except Exception as exc:  # noqa: BLE001 - recorded in failed.txt beside the key
        print(f"event kernel: build failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"event kernel: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
