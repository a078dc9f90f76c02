"""The event engine's trial kernel compiled ahead of time, so that a new process runs it
without numba.

With numba's JIT, every new process spends ~0.9 s before its first trial: importing numba
(~0.3 s), setting up its compiler target (~0.6 s: it imports most of numba and scipy's
linear algebra) and loading the cached machine code. A 30-trial run simulates for less
than that. So :func:`brainfly.engines._event_kernels.run_trial`, the same source, is also
compiled into a CPython extension module, once per machine and environment, by numba's
ahead-of-time compiler (``numba.pycc``) and the C compiler; a later process imports it in
milliseconds. Its calls release the GIL as the JIT kernel's do (trials run in parallel
threads), and its spikes are the JIT kernel's (tested).

- **Where:** ``$BRAINFLY_KERNEL_DIR``, else ``$NUMBA_CACHE_DIR/brainfly``, else beside
  numba's cache of the same kernels (``brainfly/engines/__pycache__``) where it is
  writable, else the user cache folder (``platformdirs``).
- **Key:** a digest of the kernel's sources, this module's :data:`BUILD_VERSION`, the
  versions of Python, numpy, numba and llvmlite, and the CPU (model and instruction-set
  flags: the code is compiled for this CPU, and a cache folder shared by the nodes of a
  cluster must not hand one CPU's code to another).
- **When:** the first run that needs the kernel uses numba's JIT kernel and starts the
  build in a detached background process (about 15 s on one core, under a file lock;
  the run does not wait); the runs that start after it load the module. A failed build
  (no C compiler, say) is recorded beside the key and the JIT kernel is used from then
  on; ``brainfly install event-kernel`` builds in the foreground (beforehand, or again
  after a failure) and shows the compiler's output.
- ``$BRAINFLY_EVENT_KERNEL``: ``auto`` (the default, as above), ``jit`` (numba's JIT
  only) or ``aot`` (fail rather than fall back).

The extension module does not check its arguments' types (numba's JIT dispatcher does):
every call is checked here against the argument layout it was compiled for (dtype,
dimensions, contiguity, writability of each field), and a call that does not fit goes to
the JIT kernel (networks with 8-byte connection records do).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import json
import logging
import os
from pathlib import Path
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

from .._io import atomic_write, digest_text, fsync_dir, sha256_file, umask_mode
from ..errors import EngineUnavailable

__all__ = ["TrialKernel", "trial_kernel", "kernel_dir", "kernel_key", "installed_version", "build", "build_here",
           "compile_module", "start_background_build", "MODE_ENV", "DIR_ENV", "BUILD_VERSION", "KernelBuildError"]

log = logging.getLogger(__name__)

#: Environment variable choosing the kernel: ``auto`` (default), ``jit`` or ``aot``.
MODE_ENV = "BRAINFLY_EVENT_KERNEL"
#: Environment variable naming the folder of the compiled modules.
DIR_ENV = "BRAINFLY_KERNEL_DIR"
#: Version of the way the module is built and checked: part of the key.
BUILD_VERSION = 2
#: The sources compiled into the module (beside this file).
SOURCES = ("_event_kernels.py", "_event_records.py")
#: Name of the extension module (its init function is ``PyInit_<name>``).
MODULE_NAME = "brainfly_event_kernel"
#: Seconds a build may take before it is given up.
BUILD_TIMEOUT_S = 1200.0


class KernelBuildError(EngineUnavailable):
    """The kernel could not be compiled ahead of time (the message has the compiler's output)."""


# ---------------------------------------------------------------------- where, and under which key
def kernel_dir() -> Path:
    """Folder of the compiled modules (see the module's docstring)."""
    env = os.environ.get(DIR_ENV)
    if env:
        return Path(env).expanduser()
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        return Path(numba_dir).expanduser() / "brainfly"
    beside = Path(__file__).resolve().parent / "__pycache__"
    if os.access(beside if beside.is_dir() else beside.parent, os.W_OK):
        return beside
    import platformdirs

    return Path(platformdirs.user_cache_dir("brainfly")) / "kernels"


def installed_version(name: str) -> str:
    """An installed distribution's version from its ``*.dist-info`` folder name, without
    importing it (``importlib.metadata`` scans all of ``sys.path``: ~0.1 s)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return "absent"
    site = Path(spec.origin).resolve().parent.parent
    found = sorted(site.glob(f"{name}-*.dist-info"))
    if found:
        return found[-1].name[len(name) + 1:-len(".dist-info")]
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _cpu() -> str:
    """The CPU the module is compiled for: model and instruction-set flags (Linux), else
    the machine and processor names."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            first = f.read(65536).split("\n\n", 1)[0]
    except OSError:
        first = ""
    keep = [line.split(":", 1)[1].strip() for line in first.splitlines()
            if line.split(":", 1)[0].strip() in ("vendor_id", "cpu family", "model", "model name", "flags")
            and ":" in line]
    return " | ".join(keep) if keep else f"{platform.machine()} {platform.processor()}"


def kernel_key() -> str:
    """The compiled module's key (hex digest; see the module's docstring)."""
    here = Path(__file__).resolve().parent
    sources = [(here / name).read_text(encoding="utf-8") for name in SOURCES]
    return digest_text(str(BUILD_VERSION), *sources, sys.version, sysconfig.get_config_var("EXT_SUFFIX") or "",
                       np.__version__, installed_version("numba"), installed_version("llvmlite"), _cpu())[:20]


def _folder(key: str) -> Path:
    return kernel_dir() / f"event-kernel-{key}"


def _module_path(folder: Path) -> Path:
    return folder / (MODULE_NAME + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))


# ---------------------------------------------------------------------- the arguments' layout
def _layout(args: tuple) -> list:
    """Per field of the kernel's records: ``[dtype, ndim, C-contiguous, writeable]`` of an
    array, else the scalar's kind."""
    out: list = []
    for rec in args:
        for v in rec:
            if isinstance(v, np.ndarray):
                out.append([v.dtype.str, v.ndim, bool(v.flags.c_contiguous), bool(v.flags.writeable)])
            elif isinstance(v, (bool, np.bool_)):
                out.append("bool")
            elif isinstance(v, (int, np.integer)):
                out.append("int")
            elif isinstance(v, (float, np.floating)):
                out.append("float")
            else:
                out.append(type(v).__name__)
    return out


def _fits(compiled: list, given: list) -> bool:
    """Whether arguments of layout *given* may be passed to code compiled for *compiled*:
    same dtypes, dimensions and scalar kinds; contiguous and writeable where the code
    assumes it (a writeable array may stand for a read-only one)."""
    if len(compiled) != len(given):
        return False
    for c, g in zip(compiled, given):
        if isinstance(c, str) or isinstance(g, str):
            if c != g:
                return False
        elif c[0] != g[0] or c[1] != g[1] or (c[2] and not g[2]) or (c[3] and not g[3]):
            return False
    return True


# ---------------------------------------------------------------------- the kernel a process calls
class TrialKernel:
    """The trial kernel of this process: the compiled module's ``run_trial`` where the
    arguments fit it, else numba's JIT dispatcher (imported on first need).

    Attributes
    ----------
    kind : str
        ``"aot"`` or ``"jit"``.
    path : Path or None
        The compiled module.
    note : str
        Why the JIT kernel is used, where it is ("" otherwise).
    """

    def __init__(self, kind: str, function: Callable[..., tuple] | None = None, layout: list | None = None,
                 path: Path | None = None, note: str = "") -> None:
        self.kind = kind
        self.path = path
        self.note = note
        self._function = function
        self._layout = layout or []
        self._built_here = False  # built by this process in the foreground, not yet reported

    def take_built(self) -> bool:
        """True once, for the first caller after this process built the module (not loaded it)."""
        out, self._built_here = self._built_here, False
        return out

    @property
    def jit(self) -> Any:
        """numba's JIT dispatcher of the kernel (imports numba)."""
        from . import _event_kernels  # numba: imported only by the processes that need it

        return _event_kernels.run_trial

    def fits(self, args: tuple) -> bool:
        """Whether the compiled module takes *args* (else the JIT kernel does)."""
        return self._function is not None and _fits(self._layout, _layout(args))

    @property
    def ready(self) -> bool:
        """Whether a call runs without compiling (or loading) anything first."""
        return self._function is not None or bool(self.jit.overloads)

    def __call__(self, *args: Any) -> tuple:
        return self._function(*args) if self.fits(args) else self.jit(*args)

    def __repr__(self) -> str:
        where = [str(self.path)] if self.path else [self.note] if self.note else []
        return f"TrialKernel({', '.join([self.kind, *where])})"


_KERNEL: TrialKernel | None = None
_KERNEL_LOCK = threading.Lock()


def trial_kernel() -> TrialKernel:
    """The trial kernel of this process, resolved once (see the module's docstring).

    ``auto``: the compiled module if it is built; else the JIT kernel, and the module is
    built in a background process for the runs after this one (unless a build failed
    before, or one is under way). ``aot``: the compiled module, built first if need be.

    Raises
    ------
    KernelBuildError
        With ``$BRAINFLY_EVENT_KERNEL=aot``, when the module cannot be built or loaded.
    """
    global _KERNEL
    with _KERNEL_LOCK:
        if _KERNEL is None:
            _KERNEL = _resolve()
        return _KERNEL


def _mode() -> str:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "jit", "aot"):
        raise ValueError(f"${MODE_ENV}={mode!r}: use auto, jit or aot")
    return mode


def _resolve() -> TrialKernel:
    mode = _mode()
    if mode == "jit":
        return TrialKernel("jit", note=f"${MODE_ENV}=jit")
    key = kernel_key()
    folder = _folder(key)
    kernel = _load(folder)
    if kernel is not None:
        return kernel
    if mode == "aot":
        build(key)
        kernel = _load(folder)
        if kernel is None:
            raise KernelBuildError(f"the event kernel's compiled module in {folder} cannot be loaded")
        kernel._built_here = True
        return kernel
    failed = folder / "failed.txt"
    if failed.exists():
        return TrialKernel("jit", note=f"building the compiled kernel failed (see {failed}; "
                                       "`brainfly install event-kernel` tries again)")
    try:
        if not _is_building(key):
            start_background_build(key)
    except OSError as exc:  # e.g. a kernel folder this process cannot write to
        return TrialKernel("jit", note=f"the compiled kernel cannot be built in {kernel_dir()} ({exc}; set "
                                       f"${DIR_ENV} to a writable folder)")
    return TrialKernel("jit", note="the compiled kernel is being built in the background (for the next runs)")


def _load(folder: Path) -> TrialKernel | None:
    """The compiled module in *folder*, or None (absent, or unloadable: then removed)."""
    path = _module_path(folder)
    manifest = folder / "manifest.json"
    if not path.exists() or not manifest.exists():
        return None
    try:
        recorded = json.loads(manifest.read_text())
        layout = recorded["layout"]
        # a damaged shared library can crash the process that maps it (SIGBUS), not raise:
        # its size and digest are checked first (~2 ms)
        if path.stat().st_size != recorded["module_size"] or sha256_file(path) != recorded["module_sha256"]:
            raise ImportError("its size or SHA-256 differs from the one recorded when it was built")
        loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, str(path))
        spec = importlib.util.spec_from_file_location(MODULE_NAME, path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        function = module.run_trial
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: rebuild it
        log.warning("event engine: the compiled kernel %s cannot be loaded (%s): it is rebuilt", path, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return TrialKernel("aot", function, layout, path)


# ---------------------------------------------------------------------- building
def _lock_path(key: str) -> Path:
    return kernel_dir() / f"event-kernel-{key}.lock"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on *path* (``fcntl.flock``; none where fcntl is missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: builds are not serialized
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _is_building(key: str) -> bool:
    """Whether a process holds the build lock of *key* now."""
    path = _lock_path(key)
    if not path.exists():
        return False
    try:
        import fcntl
    except ImportError:
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def _build_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "brainfly.engines._event_build", *flags]


def start_background_build(key: str | None = None) -> Path:
    """Build the module in a detached process (it outlives this one) and return its log
    file; the runs that start after it has finished load the module."""
    key = key or kernel_key()
    log_path = kernel_dir() / f"event-kernel-{key}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("event engine: compiling its kernel ahead of time in a background process (about 15 s, at a low "
             "priority; the runs after it start without numba; log: %s)", log_path)
    with open(log_path, "w") as out:
        subprocess.Popen(_build_command("--background"), stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    return log_path


def build(key: str | None = None, *, force: bool = False, echo: bool = False) -> Path:
    """Build the module now, in a child process (waiting for a build under way), unless it
    is there already (or *force*). Returns its path. *echo* shows the compiler's output.

    Raises
    ------
    KernelBuildError
        With the compiler's output; the failure is also recorded beside the key, so that
        ``auto`` runs use the JIT kernel without trying again.
    """
    key = key or kernel_key()
    folder = _folder(key)
    path = _module_path(folder)
    if not force and path.exists() and (folder / "manifest.json").exists() and not _is_building(key):
        log.info("event engine: its compiled kernel is built already (%s)", path)
        return path
    log.info("event engine: compiling its kernel for this machine, once (about 15 s)")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(_build_command(*(["--force"] if force else [])), capture_output=not echo, text=True,
                              timeout=BUILD_TIMEOUT_S)
        output = "" if echo else (proc.stdout or "") + (proc.stderr or "")
        reason = f"exit status {proc.returncode}"
        ok = proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        output, reason, ok = "", str(exc), False
    if ok and path.exists():
        log.info("event engine: kernel compiled in %.1f s (%s)", time.perf_counter() - t0, path)
        return path
    failed = folder / "failed.txt"
    if not failed.exists():  # the child did not get as far as recording it
        _record_failure(folder, reason, output)
    raise KernelBuildError(failed.read_text().strip())


def _record_failure(folder: Path, reason: str, output: str) -> None:
    message = (f"the event kernel could not be compiled ahead of time ({reason}); the JIT kernel is used "
               f"instead (each new process then spends ~1 s loading it). It needs a C compiler and "
               f"setuptools; `brainfly install event-kernel` tries again and shows the output."
               + (f"\n{output[-4000:]}" if output.strip() else ""))
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "failed.txt", lambda tmp: tmp.write_text(message + "\n"))


def build_here(args: tuple, *, force: bool = False) -> Path:
    """Compile the module for the types of *args* into its folder, under the build lock,
    in this process (the build's child process: ``python -m brainfly.engines._event_build``).
    A module already there is kept unless *force*; a failure is recorded in ``failed.txt``
    and raised.
    """
    key = kernel_key()
    folder = _folder(key)
    path = _module_path(folder)
    with _locked(_lock_path(key)):
        if path.exists() and (folder / "manifest.json").exists() and not force:
            return path  # built by another process meanwhile
        work = Path(tempfile.mkdtemp(prefix=f"event-kernel-{key}.", dir=kernel_dir()))
        try:
            try:
                compile_module(args, work)
            except Exception as exc:
                import traceback

                _record_failure(folder, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                raise
            os.chmod(work, umask_mode(0o777))  # (mkdtemp makes it private)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(work, folder)  # the whole folder at once: module and manifest
            fsync_dir(folder.parent)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return path


def compile_module(args: tuple, dest: str | Path) -> Path:
    """Compile :func:`~brainfly.engines._event_kernels.run_trial` for the types of *args*
    into ``dest/<MODULE_NAME><ext>``, with ``dest/manifest.json`` (the argument layout, the
    key's inputs). Runs numba's AOT compiler in this process (the build's child process).

    The JIT kernel's options carry over: its error model and bounds checking, and it
    releases the GIL during the call (``nogil``), which the AOT compiler does not offer:
    its compile flags are set for the duration of the build.
    """
    import warnings

    import numba
    from numba.core import typing
    from numba.core.compiler import Flags
    from llvmlite import binding as llvm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc's pending-deprecation notice
        import numba.pycc.compiler as pycc_compiler
        from numba.pycc import CC

    from . import _event_kernels

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    options = _event_kernels.run_trial.targetoptions

    class _KernelFlags(Flags):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.release_gil = bool(options.get("nogil", False))
            self.error_model = options.get("error_model", "python")
            if "boundscheck" in options:
                self.boundscheck = options["boundscheck"]

    arg_types = tuple(numba.typeof(a) for a in args)
    cpu_name = llvm.get_host_cpu_name()
    cc = CC(MODULE_NAME)
    cc.output_dir = str(dest)
    cc.target_cpu = cpu_name
    cc.export("run_trial", typing.signature(None, *arg_types))(_event_kernels.run_trial.py_func)
    saved = pycc_compiler.Flags
    pycc_compiler.Flags = _KernelFlags
    try:
        cc.compile()
    finally:
        pycc_compiler.Flags = saved
    module = _module_path(dest)
    manifest = {"layout": _layout(args), "module_size": module.stat().st_size, "module_sha256": sha256_file(module),
                "key": kernel_key(), "cpu_name": cpu_name, "cpu": _cpu(),
                "numba": numba.__version__, "llvmlite": installed_version("llvmlite"),
                "numpy": np.__version__, "python": sys.version, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write(dest / "manifest.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
    return module
