"""What machine and software a benchmark ran on: CPU model and cores, memory, GPUs, versions.

Everything here is probed cheaply and never imports an engine's library: versions of
engine libraries are read from the modules a worker has already imported.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

from .._version import __version__

__all__ = ["hardware_info", "gpu_names", "cpu_model", "software_versions", "hardware_summary"]

#: Modules whose versions are recorded when a worker has imported them.
VERSIONED_MODULES = ("numpy", "numba", "brian2", "brian2cuda", "torch", "nestgpu", "nest", "scipy", "pandas",
                     "pyarrow")


def cpu_model() -> str:
    """CPU model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=1)
def gpu_names() -> tuple[str, ...]:
    """Names and memory of the NVIDIA GPUs seen by ``nvidia-smi`` (empty when none or no driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    if out.returncode != 0:
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip())


def _memory_gb() -> float | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
        return round(pages * size / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        return None


def hardware_info() -> dict[str, Any]:
    """Hardware of this machine as a flat dict (CSV-ready).

    Returns
    -------
    dict
        ``cpu_model``, ``cpu_cores`` (logical CPUs), ``cpu_usable`` (CPUs this process may
        use), ``memory_gb``, ``gpu`` (``"; "``-joined names and memory, or ``"none"``),
        ``platform``.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    gpus = gpu_names()
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count() or 1,
        "cpu_usable": usable,
        "memory_gb": _memory_gb(),
        "gpu": "; ".join(gpus) if gpus else "none",
        "platform": platform.platform(terse=True),
    }


def hardware_summary(info: dict[str, Any] | None = None) -> str:
    """One line for logs."""
    h = info or hardware_info()
    return (f"{h['cpu_model']} ({h['cpu_usable']}/{h['cpu_cores']} CPUs usable), "
            f"{h['memory_gb']} GB RAM, GPU: {h['gpu']}")


def software_versions(extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Versions of Python, brainfly and the libraries already imported in this process."""
    out = {"python": platform.python_version(), "brainfly": __version__}
    for name in VERSIONED_MODULES:
        mod = sys.modules.get(name)
        version = getattr(mod, "__version__", None) if mod is not None else None
        if version:
            out[name] = str(version)
    for key, value in (extra or {}).items():
        if value is not None:
            out[str(key)] = str(value)
    return out
