"""Build NEST GPU with brainfly's node model ``brainfly_lif`` and record where it is.

NEST GPU (github.com/nest/nest-gpu, GPL-2.0) is not on PyPI: it is built from source with
CMake and nvcc. This module fetches its source at the pinned commit :data:`NESTGPU_COMMIT`
(a ``git clone`` + ``checkout``, or a local source tarball named by the environment
variable :data:`SOURCE_ENV`, verified by SHA-256), adds brainfly's model files
(``brainfly/engines/nestgpu_models/``) to the source tree, registers the model in NEST GPU's
model list (``neuron_models.h``, ``neuron_models.cu``, ``src/CMakeLists.txt``: patched
here, programmatically), configures and builds with CMake, and installs into
``cache_dir()/nestgpu/<digest>/``. The digest covers the commit, the CUDA architecture and
brainfly's model files, so a changed model builds anew. ``cache_dir()/nestgpu/current.json``
names the last successful install; :func:`find_install` reads it for the engine.

Command line::

    brainfly install nestgpu [--source TARBALL] [--cuda-arch 90] [--jobs 2]
                                       [--work DIR] [--force] [--check-only]

No GPU is needed to build (only nvcc); running needs one.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import os
from pathlib import Path
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Sequence

from ._cuda import curand_dirs, curand_env, nvcc_path
from ._io import atomic_write, digest_text, sha256_file
from .connectome.cache import cache_dir
from .errors import ChecksumError, DataError, EngineUnavailable, ValidationError

__all__ = [
    "NESTGPU_REPO",
    "NESTGPU_COMMIT",
    "NESTGPU_TARBALL_SHA256",
    "SOURCE_ENV",
    "MODEL_NAME",
    "INSTALL_COMMAND",
    "CMAKE_ARGS_ENV",
    "NestGpuInstall",
    "model_files",
    "build_digest",
    "install_root",
    "fetch_source",
    "patch_source",
    "configure",
    "build",
    "install",
    "find_install",
    "main",
]

#: Upstream repository of NEST GPU.
NESTGPU_REPO = "https://github.com/nest/nest-gpu.git"
#: The pinned commit (2024-06-04).
NESTGPU_COMMIT = "d3be46f99a542606571449966aae1985c7efac58"
#: SHA-256 of ``git archive --prefix=nest-gpu/ <commit>`` as gzip (the tarball users may point to).
NESTGPU_TARBALL_SHA256 = "ebf09c35d52336d0a584aae15356503d5a5a994e66f2e8583c7e3774dd0a091a"
#: Environment variable naming a local source tarball to use instead of a git clone.
SOURCE_ENV = "BRAINFLY_NESTGPU_SOURCE"
#: Environment variable with extra CMake arguments (shell words) for the configure step.
CMAKE_ARGS_ENV = "BRAINFLY_NESTGPU_CMAKE_ARGS"
#: Name of brainfly's node model inside NEST GPU.
MODEL_NAME = "brainfly_lif"
#: What a user runs to build it.
INSTALL_COMMAND = "brainfly install nestgpu"
#: Default CUDA architecture (H100).
DEFAULT_CUDA_ARCH = "90"

_MODEL_DIR = Path(__file__).resolve().parent / "engines" / "nestgpu_models"
_RECORD = "brainfly-nestgpu.json"


@dataclass(frozen=True)
class NestGpuInstall:
    """A finished NEST GPU install.

    Attributes
    ----------
    prefix : Path
        The install folder (``cache_dir()/nestgpu/<digest>``).
    library : Path
        ``libnestgpukernel.so`` (what ``nestgpu.py`` loads through ``NESTGPU_LIB``).
    python_dir : Path
        Folder holding ``nestgpu.py``.
    digest, commit, cuda_arch : str
    """

    prefix: Path
    library: Path
    python_dir: Path
    digest: str
    commit: str
    cuda_arch: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form (paths as strings)."""
        return {"prefix": str(self.prefix), "library": str(self.library), "python_dir": str(self.python_dir),
                "digest": self.digest, "commit": self.commit, "cuda_arch": self.cuda_arch}


def model_files() -> list[Path]:
    """brainfly's model sources that go into NEST GPU's ``src/`` (sorted)."""
    return sorted(p for p in _MODEL_DIR.iterdir() if p.suffix in (".h", ".cu"))


def build_digest(cuda_arch: str = DEFAULT_CUDA_ARCH, commit: str = NESTGPU_COMMIT) -> str:
    """Digest of what the build depends on: the commit, the CUDA arch, the model files, the patch."""
    parts = [commit, str(cuda_arch), _PATCH_VERSION]
    for p in model_files():
        parts += [p.name, p.read_text()]
    return digest_text(*parts)[:16]


def install_root() -> Path:
    """``cache_dir()/nestgpu``: where builds live."""
    return cache_dir() / "nestgpu"


def _check_arch(cuda_arch: str) -> str:
    arch = str(cuda_arch).strip()
    if not re.fullmatch(r"\d{2,3}[a-z]?", arch):
        raise ValidationError(f"CUDA architecture {cuda_arch!r} is not a compute capability like '90' "
                              f"(H100), '80' (A100) or '89'; give it as digits without a dot")
    return arch


# -------------------------------------------------------------------- source
def _safe_extract(tarball: Path, dest: Path) -> Path:
    with tarfile.open(tarball) as tf:
        members = tf.getmembers()
        for m in members:
            target = (dest / m.name).resolve()
            outside = not str(target).startswith(str(dest.resolve()))
            if outside or m.isdev() or ((m.issym() or m.islnk()) and os.path.isabs(m.linkname)):
                raise DataError(f"{tarball}: unsafe member {m.name!r}; use the NEST GPU source archive")
        tf.extractall(dest, members=members)
    tops = {Path(m.name).parts[0] for m in members if m.name.strip("./")}
    if len(tops) != 1 or not (dest / next(iter(tops)) / "src" / "neuron_models.h").is_file():
        raise DataError(f"{tarball}: not a NEST GPU source tree (expected one top folder holding "
                        f"src/neuron_models.h)")
    return dest / next(iter(tops))


def fetch_source(dest: str | Path, source: str | Path | None = None, *,
                 sha256: str = NESTGPU_TARBALL_SHA256, commit: str = NESTGPU_COMMIT) -> Path:
    """Put NEST GPU's source tree at the pinned commit under *dest*; return its root.

    Parameters
    ----------
    dest : path
        An empty or new folder.
    source : path, optional
        A source tarball (``git archive`` of the commit, gzip); default ``$BRAINFLY_NESTGPU_SOURCE``;
        when neither is given, ``git clone`` + ``git checkout <commit>`` from :data:`NESTGPU_REPO`.
    sha256 : str
        Expected SHA-256 of the tarball.

    Raises
    ------
    ChecksumError
        The tarball's digest differs.
    DataError
        Not a NEST GPU tree, or git failed.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    source = source if source is not None else os.environ.get(SOURCE_ENV) or None
    if source is not None:
        tarball = Path(source).expanduser()
        if not tarball.is_file():
            raise DataError(f"NEST GPU source {tarball} does not exist; set {SOURCE_ENV} to the source tarball "
                            f"(nest-gpu-{commit[:12]}.tar.gz) or unset it to clone {NESTGPU_REPO}")
        got = sha256_file(tarball)
        if got != sha256:
            raise ChecksumError(f"{tarball}: SHA-256 {got} is not the pinned NEST GPU source's {sha256} "
                                f"(commit {commit}); fetch that commit's archive")
        return _safe_extract(tarball, dest)
    git = shutil.which("git")
    if git is None:
        raise DataError(f"git is not installed: install git, or set {SOURCE_ENV} to a NEST GPU source tarball")
    root = dest / "nest-gpu"
    try:
        subprocess.run([git, "clone", "--quiet", NESTGPU_REPO, str(root)], check=True)
        subprocess.run([git, "-C", str(root), "checkout", "--quiet", commit], check=True)
    except subprocess.CalledProcessError as exc:
        raise DataError(f"cannot fetch NEST GPU ({exc}); with no network, set {SOURCE_ENV} to a source "
                        f"tarball of commit {commit}") from exc
    return root


# -------------------------------------------------------------------- patch
#: Bumped when the patch below changes (it is part of the build digest).
_PATCH_VERSION = "patch-1"


def _insert_once(text: str, anchor: str, addition: str, *, before: bool, marker: str, where: str) -> str:
    if marker in text:
        return text
    pos = text.find(anchor)
    if pos < 0:
        raise DataError(f"cannot register {MODEL_NAME} in NEST GPU: {where} lacks {anchor!r}; "
                        f"this brainfly supports NEST GPU commit {NESTGPU_COMMIT}")
    if not before:
        pos += len(anchor)
    return text[:pos] + addition + text[pos:]


def patch_source(root: str | Path) -> list[str]:
    """Add brainfly's model to NEST GPU's source tree at *root* (idempotent).

    Copies the model files into ``src/`` and registers the model: an enum entry and a name
    in ``neuron_models.h``, an include and a creation branch in ``neuron_models.cu``, the
    files in ``src/CMakeLists.txt``.

    Returns
    -------
    list of str
        The files changed or added (relative to *root*).
    """
    src = Path(root) / "src"
    changed: list[str] = []
    for p in model_files():
        shutil.copyfile(p, src / p.name)
        changed.append(f"src/{p.name}")
    m = MODEL_NAME

    h = src / "neuron_models.h"
    text = h.read_text()
    new = _insert_once(text, "  N_NEURON_MODELS", f"  i_{m}_model,\n", before=True,
                       marker=f"i_{m}_model", where=h.name)
    names = re.search(r"neuron_model_name\[N_NEURON_MODELS\]\s*=\s*\{(.*?)\n\};", new, re.S)
    if names is None:
        raise DataError(f"cannot register {m}: {h.name} has no neuron_model_name list")
    if f'"{m}"' not in names.group(1):
        body = names.group(1).rstrip()
        new = new[:names.start(1)] + body + f',\n  "{m}"' + new[names.end(1):]
    if new != text:
        h.write_text(new)
        changed.append("src/neuron_models.h")

    cu = src / "neuron_models.cu"
    text = cu.read_text()
    new = _insert_once(text, '#include "neuron_models.h"\n', f'#include "{m}.h"\n', before=False,
                       marker=f'#include "{m}.h"', where=cu.name)
    branch = (f"  else if (model_name == neuron_model_name[i_{m}_model]) {{\n"
              f"    n_port = 2;\n"
              f"    {m} *{m}_group = new {m};\n"
              f"    node_vect_.push_back({m}_group);\n"
              f"  }}\n")
    new = _insert_once(new, "  else if (model_name == neuron_model_name[i_poisson_generator_model])", branch,
                       before=True, marker=f"neuron_model_name[i_{m}_model]", where=cu.name)
    if new != text:
        cu.write_text(new)
        changed.append("src/neuron_models.cu")

    cm = src / "CMakeLists.txt"
    text = cm.read_text()
    new = _insert_once(text, "\tbase_neuron.h\n", f"\t{m}.h\n", before=True, marker=f"\t{m}.h\n", where=cm.name)
    new = _insert_once(new, "\tbase_neuron.cu\n", f"\t{m}.cu\n", before=True, marker=f"\t{m}.cu\n", where=cm.name)
    if new != text:
        cm.write_text(new)
        changed.append("src/CMakeLists.txt")
    return changed


# -------------------------------------------------------------------- build
def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EngineUnavailable(f"{name} is not on PATH: {hint}")
    return path


def curand() -> tuple[str, str] | None:
    """cuRAND's include and library folders (the toolkit's, else pip's ``nvidia-curand``)."""
    return curand_dirs(cache_dir() / "cuda")


def _build_env() -> dict[str, str]:
    """The environment of the build: the CUDA toolkit's ``lib64/stubs`` on ``LIBRARY_PATH``,
    so that ``-lcuda`` links on a machine without the driver library (a build host), and
    cuRAND's folders where it is not in the toolkit."""
    env = curand_env(curand())
    stubs = []
    for base in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), shutil.which("nvcc")):
        if base:
            root = Path(base).resolve()
            root = root.parent.parent if root.is_file() else root
            stubs += [str(d) for d in (root / "lib64" / "stubs", root / "lib" / "stubs") if d.is_dir()]
    if stubs:
        env["LIBRARY_PATH"] = os.pathsep.join([*stubs, *filter(None, [env.get("LIBRARY_PATH")])])
    return env


def _run(cmd: Sequence[str], log_path: Path, cwd: Path | None = None) -> None:
    with open(log_path, "ab") as log:
        log.write(("\n$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        proc = subprocess.run(list(cmd), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=_build_env())
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        hint = (" (cannot find -lcuda: put the CUDA toolkit's lib64/stubs on LIBRARY_PATH)"
                if "cannot find -lcuda" in tail else "")
        raise EngineUnavailable(f"NEST GPU build step failed ({' '.join(cmd[:3])} ..., exit {proc.returncode})"
                                f"{hint}; log {log_path}:\n{tail}")


def configure(root: str | Path, build_dir: str | Path, prefix: str | Path, *,
              cuda_arch: str = DEFAULT_CUDA_ARCH, cmake_args: Sequence[str] = (),
              log_path: str | Path | None = None) -> list[str]:
    """Run CMake's configure step for NEST GPU (no MPI, the given CUDA arch); return the command.

    *cmake_args* are appended (e.g. ``-DCUDA_curand_LIBRARY=...`` where cuRAND is not in the
    CUDA toolkit's folder); so are the words of ``$BRAINFLY_NESTGPU_CMAKE_ARGS``.
    """
    cmake = _tool("cmake", "install CMake >= 3.17 (pip install cmake)")
    nvcc = nvcc_path()
    if nvcc is None:
        raise EngineUnavailable("nvcc is not on PATH (nor in $CUDA_PATH/bin, $CUDA_HOME/bin): install the CUDA toolkit")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    found = curand()
    # cuRAND where it is (the toolkit's, or pip's nvidia-curand: then CMake must be told)
    curand_args = ([f"-DCUDA_curand_LIBRARY={Path(found[1]) / 'libcurand.so'}", f"-Dwith-includes={found[0]}"]
                   if found is not None else [])
    cmd = [cmake, "-S", str(root), "-B", str(build_dir), f"-DCMAKE_INSTALL_PREFIX={prefix}",
           f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-Dwith-gpu-arch={_check_arch(cuda_arch)}", "-Dwith-mpi=OFF",
           f"-DPython_EXECUTABLE={sys.executable}", *curand_args, *cmake_args,
           *shlex.split(os.environ.get(CMAKE_ARGS_ENV, ""))]
    _run(cmd, Path(log_path or build_dir / "brainfly-build.log"))
    return cmd


def build(build_dir: str | Path, *, jobs: int = 2, targets: Sequence[str] = (),
          log_path: str | Path | None = None) -> float:
    """Build (all, or *targets*) in a configured build folder; return the seconds it took."""
    cmake = _tool("cmake", "install CMake >= 3.17")
    cmd = [cmake, "--build", str(build_dir), "-j", str(int(jobs))]
    for t in targets:
        cmd += ["--target", t]
    t0 = time.perf_counter()
    _run(cmd, Path(log_path or Path(build_dir) / "brainfly-build.log"))
    return time.perf_counter() - t0


def _find(prefix: Path, name: str) -> Path | None:
    hits = sorted(prefix.rglob(name))
    return hits[0] if hits else None


def _record_install(prefix: Path, digest: str, arch: str) -> NestGpuInstall:
    lib = _find(prefix, "libnestgpukernel.so")
    py = _find(prefix, "nestgpu.py")
    if lib is None or py is None:
        raise EngineUnavailable(f"NEST GPU install in {prefix} lacks libnestgpukernel.so or nestgpu.py; "
                                f"rebuild with {INSTALL_COMMAND} --force")
    inst = NestGpuInstall(prefix, lib, py.parent, digest, NESTGPU_COMMIT, arch)
    text = json.dumps(inst.to_dict(), indent=2)
    atomic_write(prefix / _RECORD, lambda p: p.write_text(text))
    atomic_write(install_root() / "current.json", lambda p: p.write_text(text))
    return inst


def find_install() -> NestGpuInstall | None:
    """The NEST GPU install recorded by the last :func:`install`, if it is still complete."""
    pointer = install_root() / "current.json"
    if not pointer.is_file():
        return None
    try:
        d = json.loads(pointer.read_text())
        inst = NestGpuInstall(Path(d["prefix"]), Path(d["library"]), Path(d["python_dir"]), d["digest"],
                              d["commit"], d["cuda_arch"])
    except (ValueError, KeyError, TypeError):
        return None
    if not inst.library.is_file() or not (inst.python_dir / "nestgpu.py").is_file():
        return None
    return inst


def install(source: str | Path | None = None, *, cuda_arch: str = DEFAULT_CUDA_ARCH, jobs: int = 2,
            work_dir: str | Path | None = None, force: bool = False, keep_work: bool = False,
            cmake_args: Sequence[str] = ()) -> NestGpuInstall:
    """Fetch, patch, build and install NEST GPU with ``brainfly_lif``; return the install.

    Parameters
    ----------
    source : path, optional
        Source tarball (default ``$BRAINFLY_NESTGPU_SOURCE``, else a git clone).
    cuda_arch : str
        CUDA compute capability without the dot (``"90"`` for H100, ``"80"`` for A100).
    jobs : int
        Parallel compile jobs.
    work_dir : path, optional
        Where the source and build trees go (default a temporary folder, removed afterwards).
    force : bool
        Rebuild even when an install of the same digest exists.
    keep_work : bool
        Keep the work folder (for inspecting a failed build).
    cmake_args : sequence of str
        Extra CMake configure arguments (see :func:`configure`).
    """
    arch = _check_arch(cuda_arch)
    digest = build_digest(arch)
    prefix = install_root() / digest
    if not force and (prefix / _RECORD).is_file():
        return _record_install(prefix, digest, arch)
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="brainfly-nestgpu-"))
    try:
        root = fetch_source(work / "source", source)
        patch_source(root)
        log_path = work / "brainfly-build.log"
        if prefix.exists():
            shutil.rmtree(prefix)
        configure(root, work / "build", prefix, cuda_arch=arch, cmake_args=cmake_args, log_path=log_path)
        build(work / "build", jobs=jobs, log_path=log_path)
        _run([_tool("cmake", ""), "--install", str(work / "build")], log_path)
        return _record_install(prefix, digest, arch)
    finally:
        if not keep_work and not work_dir:
            shutil.rmtree(work, ignore_errors=True)


def add_install_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``brainfly install nestgpu`` (and ``python -m brainfly.nestgpu_install``)."""
    ap = parser
    ap.add_argument("--source", help=f"NEST GPU source tarball (default ${SOURCE_ENV}, else git clone)")
    ap.add_argument("--cuda-arch", default=DEFAULT_CUDA_ARCH, help="compute capability, e.g. 90 (H100), 80 (A100)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", help="keep source and build trees in this folder")
    ap.add_argument("--force", action="store_true", help="rebuild even if installed")
    ap.add_argument("--cmake-arg", action="append", default=[], help="extra CMake configure argument (repeatable)")
    ap.add_argument("--check-only", action="store_true",
                    help="fetch, verify and patch the source, configure, and compile brainfly's model only")
    return parser


def run_install_from_args(args: argparse.Namespace) -> int:
    """Build and install from parsed arguments (``brainfly install nestgpu``)."""
    if args.check_only:
        work = Path(args.work or tempfile.mkdtemp(prefix="brainfly-nestgpu-check-"))
        root = fetch_source(work / "source", args.source)
        print("patched:", ", ".join(patch_source(root)))
        configure(root, work / "build", work / "prefix", cuda_arch=args.cuda_arch, cmake_args=args.cmake_arg)
        secs = _compile_model_only(work / "build", args.jobs)
        print(f"compiled {MODEL_NAME} in {secs:.1f} s (work folder {work})")
        return 0
    inst = install(args.source, cuda_arch=args.cuda_arch, jobs=args.jobs, work_dir=args.work, force=args.force,
                   cmake_args=args.cmake_arg)
    print(json.dumps(inst.to_dict(), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m brainfly.nestgpu_install``: build NEST GPU with brainfly's model."""
    ap = argparse.ArgumentParser(prog="python -m brainfly.nestgpu_install", description=__doc__.split("\n")[0])
    return run_install_from_args(add_install_arguments(ap).parse_args(argv))


def _compile_model_only(build_dir: Path, jobs: int) -> float:
    """Compile brainfly_lif.cu and neuron_models.cu alone (Makefile object targets)."""
    make = _tool("make", "install make")
    t0 = time.perf_counter()
    for obj in (f"{MODEL_NAME}.cu.o", "neuron_models.cu.o"):
        _run([make, "-C", str(build_dir / "src"), f"-j{int(jobs)}", obj], build_dir / "brainfly-build.log")
    return time.perf_counter() - t0


if __name__ == "__main__":
    raise SystemExit(main())
