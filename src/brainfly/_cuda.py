"""Where the CUDA toolkit's pieces are: nvcc, and cuRAND (from the toolkit or pip's wheel).

Brian2CUDA and NEST GPU both need cuRAND's header and library. A toolkit may come without
them (this project's machine: nvcc 13.0 alone), while PyTorch's CUDA wheels and
``pip install nvidia-curand`` put them under ``site-packages/nvidia/cu<N>/`` (only the
versioned ``libcurand.so.<N>``: the linker wants ``libcurand.so``, made here as a link
in a folder of the caller's choosing).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
import shutil
import subprocess
import sys

__all__ = ["nvcc_path", "cuda_gpus", "curand_dirs", "curand_env"]


def nvcc_path() -> str | None:
    """The nvcc to use: ``$CUDA_PATH/bin``, ``$CUDA_HOME/bin``, PATH, then
    ``/usr/local/cuda/bin`` (None: none)."""
    candidates = []
    for env in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(env):
            candidates.append(os.path.join(os.environ[env], "bin", "nvcc"))
    found = shutil.which("nvcc")
    if found:
        candidates.append(found)
    candidates.append("/usr/local/cuda/bin/nvcc")
    return next((c for c in candidates if os.path.isfile(c) and os.access(c, os.X_OK)), None)


def _toolkit_curand() -> tuple[str, str] | None:
    nvcc = nvcc_path()
    if nvcc is None:
        return None
    root = Path(os.path.realpath(nvcc)).parent.parent
    for inc in [root / "include", *sorted(root.glob("targets/*/include"))]:
        if (inc / "curand.h").is_file():
            for lib in (root / "lib64", root / "lib", *sorted(root.glob("targets/*/lib"))):
                if list(lib.glob("libcurand.so*")):
                    return str(inc), str(lib)
    return None


def curand_dirs(link_dir: str | Path) -> tuple[str, str] | None:
    """``(include folder, library folder)`` of cuRAND, or None when there is none.

    The toolkit's own first; else pip's ``nvidia-curand`` wheel (or the one PyTorch's CUDA
    build brings), whose library gets a ``libcurand.so`` link in *link_dir*.
    """
    found = _toolkit_curand()
    if found is not None:
        return found
    for base in sys.path:
        for header in sorted(glob.glob(os.path.join(base, "nvidia", "cu*", "include", "curand.h"))
                             + sorted(glob.glob(os.path.join(base, "nvidia", "curand", "include", "curand.h")))):
            lib = Path(header).parent.parent / "lib"
            libs = sorted(lib.glob("libcurand.so*"))
            if not libs:
                continue
            link_dir = Path(link_dir)
            link_dir.mkdir(parents=True, exist_ok=True)
            link = link_dir / "libcurand.so"
            if not link.exists() or os.path.realpath(link) != os.path.realpath(libs[-1]):
                tmp = link_dir / f".libcurand.so.{os.getpid()}"
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(libs[-1])
                os.replace(tmp, link)
            return str(Path(header).parent), str(link_dir)
    return None


def curand_env(dirs: tuple[str, str] | None, env: dict[str, str] | None = None) -> dict[str, str]:
    """*env* (default: this process's) with cuRAND's folders on the compiler's and the
    loader's search paths (``CPATH``, ``LIBRARY_PATH``, ``LD_LIBRARY_PATH``)."""
    out = dict(os.environ if env is None else env)
    if dirs is None:
        return out
    inc, lib = dirs
    real_lib = str(Path(os.path.realpath(Path(lib) / "libcurand.so")).parent)
    for key, value in (("CPATH", inc), ("LIBRARY_PATH", lib), ("LD_LIBRARY_PATH", real_lib)):
        parts = [p for p in out.get(key, "").split(os.pathsep) if p]
        if value not in parts:
            out[key] = os.pathsep.join([value, *parts])
    return out


def _driver_gpus() -> tuple[list[tuple[str, str]], str]:
    """The GPUs the CUDA driver library sees (name, compute capability), or why none."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return [], "no CUDA driver (libcuda.so.1) on this machine"
    if cuda.cuInit(0) != 0:
        return [], "the CUDA driver finds no usable GPU"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return [], "the CUDA driver finds no GPU"
    gpus = []
    for k in range(count.value):
        name = ctypes.create_string_buffer(256)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        cuda.cuDeviceGetName(name, 256, k)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, k)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, k)  # ..._MINOR
        gpus.append((name.value.decode(errors="replace"), f"{major.value}.{minor.value}"))
    return gpus, ""


def cuda_gpus() -> tuple[list[tuple[str, str]], str]:
    """The CUDA GPUs of this machine: from ``nvidia-smi``, else from the driver library.

    Returns
    -------
    (list of (name, compute capability), str)
        The GPUs found, and why none were found (empty when some were).
    """
    smi = shutil.which("nvidia-smi")
    why = []
    if smi is not None:
        try:
            proc = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            why.append(f"nvidia-smi failed to run ({exc})")
        else:
            rows = [ln.rsplit(",", 1) for ln in proc.stdout.splitlines() if "," in ln]
            gpus = [(name.strip(), cc.strip()) for name, cc in rows]
            if proc.returncode == 0 and gpus:
                return gpus, ""
            why.append(f"nvidia-smi lists no GPU ({(proc.stderr or proc.stdout).strip()[:200]})")
    else:
        why.append("nvidia-smi is not on PATH")
    gpus, reason = _driver_gpus()
    if gpus:
        return gpus, ""
    return [], "no CUDA device: " + "; ".join(why + [reason])
