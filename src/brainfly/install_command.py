"""``brainfly install WHAT``: build what brainfly compiles once per machine.

- ``event-kernel``: the event engine's kernel compiled ahead of time
  (:mod:`brainfly.engines._event_aot`). The first run starts its build in the background
  by itself; this command builds it now (beforehand, or again after a failure;
  ``--force`` rebuilds a working one) and shows the compiler's output.
- ``nestgpu``: NEST GPU with brainfly's model (:mod:`brainfly.nestgpu_install`; its options).
"""

from __future__ import annotations

import argparse

from .engines._event_aot import build, kernel_dir
from .nestgpu_install import add_install_arguments as add_nestgpu_arguments
from .nestgpu_install import run_install_from_args as run_nestgpu_install

__all__ = ["add_install_arguments", "run_install_from_args"]


def add_install_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``brainfly install`` (NEST GPU's options apply to ``nestgpu`` only)."""
    parser.add_argument("what", choices=("event-kernel", "nestgpu"), help="what to build")
    return add_nestgpu_arguments(parser)


def run_install_from_args(args: argparse.Namespace) -> int:
    """Build what *args* names; exit status 0 when it is built."""
    if args.what == "event-kernel":
        path = build(force=args.force, echo=True)
        print(f"event engine's kernel: {path} (kernels of other versions or machines in {kernel_dir()} can be "
              "deleted)")
        return 0
    return run_nestgpu_install(args)
