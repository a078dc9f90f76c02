"""One grid point in its own process, under a time limit.

:func:`run_point` starts a child process (``fork`` where the platform has it, so the
connectome loaded once by the parent is shared copy-on-write; ``spawn`` elsewhere, which
pickles it), waits for its result with a deadline, and kills the child's whole process
group on timeout (compilers and engine worker pools included). A crash, a hang or an
exception of one engine costs that point only; the parent always gets a row back.

Statuses: ``ok``; ``skipped`` (engine not registered, not available here, or unable to run
this experiment: the reason says which); ``failed`` (an exception; the traceback is in the
point's log file); ``crashed`` (the process died, e.g. a segfault or out of memory);
``timeout`` (killed after ``timeout_s``).

Times are measured with :func:`time.perf_counter` (monotonic), in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import logging
import multiprocessing
import os
from pathlib import Path
import signal
import sys
import time
import traceback
from typing import Any, Callable

from ..engines.base import get_engine
from ..errors import EngineUnavailable, UnknownEngineError, UnsupportedFeature
from ..runner import run
from .hardware import software_versions

__all__ = ["PointTask", "run_point", "STATUSES"]

STATUSES = ("ok", "skipped", "failed", "crashed", "timeout")

log = logging.getLogger(__name__)


@dataclass
class PointTask:
    """What one worker runs.

    Attributes
    ----------
    label : str
        Benchmark label of the engine (file names and CSV ``engine`` column).
    engine : str
        Registered engine name.
    options : dict
        Engine options.
    experiment : Experiment
        Already set to this point's ``t_run`` and ``n_trials``.
    spikes_path : Path or None
        Where to save the spikes (paper columns), or None.
    log_path : Path or None
        The worker's stdout, stderr and log records go here.
    """

    label: str
    engine: str
    options: dict[str, Any]
    experiment: Any
    spikes_path: Path | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _peak_rss_mb() -> float:
    import resource

    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return round(max(own, kids) / 2**20, 1)


def _torch_peak_gpu_mb() -> float | None:
    """Peak CUDA memory allocated through PyTorch in this process, if the engine used it.

    Reads the already-imported module only (never imports torch).
    """
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        return float(torch.cuda.max_memory_allocated()) / 2**20
    except Exception:  # noqa: BLE001 - a measurement, never a failure
        return None


def _redirect_output(log_path: Path | None) -> None:
    """Send fds 1 and 2 and all log records of this (child) process to *log_path*."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    for name in list(logging.root.manager.loggerDict):
        lg = logging.getLogger(name)
        for h in list(getattr(lg, "handlers", [])):
            lg.removeHandler(h)
    if log_path is None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # Python-level streams may have been replaced (pytest capture, rich): point them at the file
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        import faulthandler

        faulthandler.enable(file=sys.stderr)
    except (ImportError, RuntimeError, ValueError):
        pass


def _child_main(conn: Any, task: PointTask, connectome: Any) -> None:
    """Entry point of the worker process: run, save, report one dict through *conn*."""
    try:
        os.setpgrp()  # own process group, so the parent can kill compilers and pools with it
    except (AttributeError, OSError):
        pass
    _redirect_output(task.log_path)

    def send(msg: dict[str, Any]) -> None:
        try:
            conn.send(msg)
        except (BrokenPipeError, OSError):
            pass

    def progress(done: int, total: int) -> None:
        send({"kind": "progress", "done": int(done), "total": int(total)})

    row: dict[str, Any] = {"kind": "result"}
    try:
        engine = get_engine(task.engine, **task.options)
        ok, reason = engine.is_available()
        if not ok:
            row.update(status="skipped", reason=f"engine {task.engine!r} not available here: {reason}")
            send(row)
            return
        t0 = time.perf_counter()
        result = run(task.experiment, data=connectome, engine=engine, out=task.spikes_path, resume=False,
                     overwrite=True, progress=progress)
        total = time.perf_counter() - t0
    except UnknownEngineError as exc:
        row.update(status="skipped", reason=f"not registered: {exc}")
        send(row)
        return
    except EngineUnavailable as exc:
        row.update(status="skipped", reason=f"not available here: {exc}")
        send(row)
        return
    except UnsupportedFeature as exc:
        row.update(status="skipped", reason=f"unsupported: {exc}")
        send(row)
        return
    except BaseException as exc:  # noqa: BLE001 - any failure is this point's only
        traceback.print_exc()
        sys.stderr.flush()
        row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        send(row)
        return

    meta = result.meta
    timings = meta["timings"]  # the same layout for every engine (Engine.result)
    gpu_mb = meta.get("peak_gpu_mem_mb")
    if gpu_mb is None:
        gpu_mb = _torch_peak_gpu_mb()
    row.update(
        status="ok",
        setup_s=float(timings["setup_s"]),
        build_s=float(timings["build_s"]),
        sim_s=float(timings["sim_s"]),
        total_s=total,
        write_s=meta.get("write_s"),
        timings_source="engine",
        n_spikes=int(result.n_spikes),
        active_neurons=int(result.active_idx().size),
        peak_rss_mb=_peak_rss_mb(),
        peak_gpu_mb=None if gpu_mb is None else round(float(gpu_mb), 1),
        versions=software_versions(dict(meta.get("versions") or {})),
        input=str(meta.get("input", "")),
        spikes_file=str(task.spikes_path) if task.spikes_path is not None else "",
        device=str(meta.get("device", "")),
    )
    send(row)


def _kill_group(proc: Any) -> None:
    pid = proc.pid
    if pid is None:
        return
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError, AttributeError, OSError):
            try:
                proc.kill() if sig == signal.SIGKILL else proc.terminate()
            except (OSError, ValueError):
                pass
        proc.join(wait)
        if not proc.is_alive():
            # the group may outlive its leader (a compiler, a pool worker): finish it off
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, AttributeError, OSError):
                pass
            return


def _log_tail(path: Path | None, n_chars: int = 600) -> str:
    if path is None or not path.exists():
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " ".join(text[-n_chars:].split())


def run_point(task: PointTask, connectome: Any, timeout_s: float,
              on_progress: Callable[[int, int], None] | None = None,
              poll: Callable[[], None] | None = None, start_method: str | None = None) -> dict[str, Any]:
    """Run one grid point in a child process; always returns a row dict with a ``status``.

    Parameters
    ----------
    task : PointTask
    connectome : Connectome
        Shared with the child (copy-on-write under ``fork``).
    timeout_s : float
        Wall-clock limit, seconds; the child's process group is killed after it.
    on_progress : callable(done, total), optional
        Called with the engine's trial progress.
    poll : callable, optional
        Called about twice a second while waiting (to refresh a display).
    start_method : str, optional
        ``fork`` (default where available) or ``spawn``.

    Returns
    -------
    dict
        ``status`` (one of :data:`STATUSES`), ``reason``, ``wall_s``, and on success the
        timings (``setup_s``, ``build_s``, ``sim_s``, ``total_s``), ``n_spikes``,
        ``active_neurons``, ``peak_rss_mb``, ``peak_gpu_mb``, ``versions``, ``input``,
        ``spikes_file``.
    """
    method = start_method or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    ctx = multiprocessing.get_context(method)
    recv_conn, send_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send_conn, task, connectome),
                       name=f"brainfly-bench-{task.label}")
    t0 = time.perf_counter()
    proc.start()
    send_conn.close()
    deadline = t0 + float(timeout_s)
    row: dict[str, Any] | None = None
    try:
        while row is None:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                _kill_group(proc)
                row = {"status": "timeout", "reason": f"killed after the time limit of {timeout_s:g} s"}
                break
            try:
                ready = recv_conn.poll(min(remaining, 0.5))
            except (EOFError, OSError):
                ready = False
            if ready:
                try:
                    msg = recv_conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is None:
                    proc.join(5)
                    row = _crashed(proc, task)
                elif msg.get("kind") == "progress":
                    if on_progress is not None:
                        on_progress(msg["done"], msg["total"])
                else:
                    row = msg
            elif not proc.is_alive():
                if recv_conn.poll(0):
                    continue
                row = _crashed(proc, task)
            if poll is not None:
                poll()
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        recv_conn.close()
    proc.join(10)
    if proc.is_alive():
        _kill_group(proc)
    row.pop("kind", None)
    row["wall_s"] = time.perf_counter() - t0
    row.setdefault("reason", "")
    return row


def _crashed(proc: Any, task: PointTask) -> dict[str, Any]:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            how = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    tail = _log_tail(task.log_path)
    return {"status": "crashed",
            "reason": f"worker process {how} without a result" + (f"; log tail: {tail}" if tail else "")}
