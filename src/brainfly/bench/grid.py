"""The benchmark grid: engines x durations (``t_run``, s) x trial counts (``n_run``).

Each grid point runs in its own process with a time limit (:mod:`.worker`); the network
is loaded once by the parent. After every point, its row is upserted into the CSV
(key: engine, experiment, n_run, t_run; written atomically) and its spikes are saved as
``{results_dir}/{engine}_{experiment}_t{t_run}_n{n_run}.parquet`` (see
:func:`brainfly.store.spikes_file_name`), so an interrupted benchmark keeps what it
measured and ``brainfly compare`` finds the spikes.

Times are seconds from :func:`time.perf_counter`. ``realtime_ratio`` = simulated time
(t_run x n_run) / simulation time (``sim_s``): above 1 is faster than real time.

Rules that save time on a large grid: an engine that cannot run here (not registered, not
available, unsupported experiment) is skipped for all its points once it said so; after a
point times out (or is killed by SIGKILL, as the out-of-memory killer does), the points of
that engine that are at least as long and have at least as many trials are skipped (they
would fail too). ``--resume`` keeps the points already measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import datetime as _dt
import logging
from pathlib import Path
import signal
import threading
import time
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from ..connectome.datasets import load_connectome
from ..engines.base import engine_names
from ..errors import ValidationError, suggest
from ..plots import plot_benchmark
from ..store import (
    DEFAULT_CSV, DEFAULT_RESULTS_DIR, format_t_run, read_results, read_rows, row_key, spikes_file_name, upsert_row,
)
from .hardware import hardware_info, hardware_summary, software_versions
from .worker import PointTask, run_point

__all__ = [
    "BenchTarget",
    "TARGETS",
    "DEFAULT_T_RUNS",
    "DEFAULT_N_RUNS",
    "DEFAULT_LOG_FILE",
    "DEFAULT_TIMEOUT_S",
    "GridPoint",
    "BenchConfig",
    "parse_target",
    "build_grid",
    "run_bench",
    "load_network",
]

log = logging.getLogger("brainfly.bench")

DEFAULT_T_RUNS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
DEFAULT_N_RUNS: tuple[int, ...] = (1, 4, 8, 16, 32)
DEFAULT_LOG_FILE = DEFAULT_RESULTS_DIR / "benchmarks.log"
DEFAULT_TIMEOUT_S = 1800.0


# =============================================================================== targets
@dataclass(frozen=True)
class BenchTarget:
    """One column of the grid: an engine with options, under a benchmark label.

    Parameters
    ----------
    label : str
        Name in the CSV and in file names (letters, digits, ``-``).
    engines : tuple of str
        Registered engine names to use, the first registered one wins.
    options : tuple of (key, value)
        Engine options.
    flag : str
        Command-line flag selecting this target (``--pytorch``, ...).
    help : str
    """

    label: str
    engines: tuple[str, ...]
    options: tuple[tuple[str, Any], ...] = ()
    flag: str = ""
    help: str = ""

    @property
    def options_dict(self) -> dict[str, Any]:
        """The options as a dict."""
        return dict(self.options)


#: The predefined targets, in the order the grid runs them. The seed's flags
#: (``--brian2-cpu``, ``--brian2cuda-gpu``, ``--pytorch``, ``--nestgpu``) keep their meaning.
TARGETS: tuple[BenchTarget, ...] = (
    BenchTarget("event", ("event",), (), "--event", "brainfly's exact event-driven CPU engine"),
    BenchTarget("torch-cpu", ("torch",), (("device", "cpu"),), "--torch-cpu", "PyTorch engine on the CPU"),
    BenchTarget("torch-cuda", ("torch",), (("device", "cuda"),), "--pytorch", "PyTorch engine on CUDA (GPU)"),
    BenchTarget("brian2-standalone", ("brian2-standalone",), (), "--brian2-cpu",
                "Brian2 C++ standalone (CPU), the reference"),
    BenchTarget("brian2", ("brian2",), (), "--brian2-runtime", "Brian2 runtime mode (numpy), the reference"),
    BenchTarget("nest", ("nest",), (), "--nest", "NEST (CPU) with brainfly's node model"),
    # Brian2CUDA only and NEST GPU only: a flag never falls back to another engine
    BenchTarget("brian2cuda", ("brian2cuda",), (), "--brian2cuda-gpu", "Brian2CUDA (GPU)"),
    BenchTarget("nestgpu", ("nestgpu",), (), "--nestgpu", "NEST GPU"),
)


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_target(spec: str) -> BenchTarget:
    """A target from a label (``torch-cuda``) or ``ENGINE[:key=value,...]``.

    ``ENGINE`` is any registered engine name; options give the label a suffix of their
    values, or of their names for booleans (``brian2:codegen_target=cython`` -> label
    ``brian2-cython``; ``brian2:use_schedule=true`` -> ``brian2-use-schedule``).

    Raises
    ------
    ValidationError
        For a malformed spec.
    """
    spec = spec.strip()
    for t in TARGETS:
        if spec == t.label:
            return t
    name, _, opts = spec.partition(":")
    name = name.strip()
    if not name or "_" in name or "/" in name:
        raise ValidationError(
            f"bench --engines: {spec!r} is not a target; give one of {[t.label for t in TARGETS]} or "
            f"ENGINE[:key=value,...] with a registered engine name (no '_').{suggest(spec, [t.label for t in TARGETS])}")
    options: list[tuple[str, Any]] = []
    for part in filter(None, (p.strip() for p in opts.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValidationError(f"bench --engines: option {part!r} of {spec!r} must be key=value")
        options.append((key.strip(), _parse_value(value.strip())))
    parts = [name]
    for key, value in options:
        if value is True:
            parts.append(key)
        elif value is False:
            parts.append(f"no-{key}")
        else:
            parts.append(str(value))
    label = "-".join(p.replace("_", "-").replace("/", "-").replace(":", "-") for p in parts)
    return BenchTarget(label, (name,), tuple(options), "", f"engine {name}")


# =============================================================================== grid
@dataclass(frozen=True)
class GridPoint:
    """One point: a target at one duration (s) and number of trials."""

    target: BenchTarget
    t_run: float
    n_run: int

    @property
    def weight(self) -> float:
        """Relative cost guess for progress estimates: simulated seconds plus overhead."""
        return self.t_run * self.n_run + 0.5

    def describe(self) -> str:
        """``label t=0.1s n=4``."""
        return f"{self.target.label} t={format_t_run(self.t_run)}s n={self.n_run}"


def build_grid(targets: Sequence[BenchTarget], t_runs: Iterable[float], n_runs: Iterable[int]) -> list[GridPoint]:
    """All points, engine by engine, then by duration, then by trials (duplicates dropped)."""
    t_list = sorted({float(t) for t in t_runs})
    n_list = sorted({int(n) for n in n_runs})
    for t in t_list:
        format_t_run(t)  # validates
    for n in n_list:
        if n < 1:
            raise ValidationError(f"bench --n-run: trial counts must be >= 1 (got {n})")
    seen: set[str] = set()
    out: list[GridPoint] = []
    for target in targets:
        if target.label in seen:
            continue
        seen.add(target.label)
        out.extend(GridPoint(target, t, n) for t in t_list for n in n_list)
    return out


# =============================================================================== running
@dataclass
class BenchConfig:
    """Everything :func:`run_bench` needs.

    Attributes
    ----------
    targets : list of BenchTarget
    t_runs : list of float
        Durations, s.
    n_runs : list of int
        Trial counts.
    experiment : Experiment
        Its ``t_run`` and ``n_trials`` are replaced per point.
    csv_path, results_dir : Path
    log_file : Path or None
        None: console only.
    timeout_s : float
        Time limit of one point, s.
    save_spikes, progress, plot : bool
    start_method : str or None
        ``fork`` (default where available) or ``spawn``.
    data : str or None
        ``--data`` (folder or dataset name) when no connectome is handed to :func:`run_bench`.
    resume : bool
        Keep points the CSV already has with status ``ok`` (and their spike file) instead
        of running them again.
    """

    targets: list[BenchTarget]
    t_runs: list[float]
    n_runs: list[int]
    experiment: Any
    csv_path: Path = DEFAULT_CSV
    results_dir: Path = DEFAULT_RESULTS_DIR
    log_file: Path | None = DEFAULT_LOG_FILE
    timeout_s: float = DEFAULT_TIMEOUT_S
    save_spikes: bool = True
    progress: bool = True
    plot: bool = True
    start_method: str | None = None
    data: str | None = None
    resume: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def load_network(data: str | None) -> Any:
    """Load the connectome once (``--data``: a folder or dataset name; default: the best available).

    See :func:`brainfly.connectome.datasets.load_connectome`.
    """
    return load_connectome(data)


class _Eta:
    """Time-left estimate: remaining weight of each target x that target's seconds per weight."""

    def __init__(self, points: Sequence[GridPoint]) -> None:
        self.remaining: dict[str, float] = {}
        for p in points:
            self.remaining[p.target.label] = self.remaining.get(p.target.label, 0.0) + p.weight
        self.spent: dict[str, list[float]] = {}

    def done(self, point: GridPoint, seconds: float, measured: bool) -> None:
        label = point.target.label
        self.remaining[label] = max(self.remaining.get(label, 0.0) - point.weight, 0.0)
        if measured:
            acc = self.spent.setdefault(label, [0.0, 0.0])
            acc[0] += seconds
            acc[1] += point.weight

    def drop(self, point: GridPoint) -> None:
        self.remaining[point.target.label] = max(self.remaining.get(point.target.label, 0.0) - point.weight, 0.0)

    def seconds_left(self) -> float | None:
        rates = {k: v[0] / v[1] for k, v in self.spent.items() if v[1] > 0}
        if not rates:
            return None
        fallback = max(rates.values())
        return sum(w * rates.get(k, fallback) for k, w in self.remaining.items())


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _setup_logging(log_file: Path | None, console: Any) -> list[logging.Handler]:
    handlers: list[logging.Handler] = []
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        handlers.append(fh)
    handlers.append(RichHandler(console=console, show_path=False, markup=False, log_time_format="%H:%M:%S"))
    for h in handlers:
        log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handlers


def run_bench(config: BenchConfig, connectome: Any = None, *, console: Any = None) -> list[dict[str, Any]]:
    """Run the grid; returns one row dict per point (also upserted into the CSV).

    Parameters
    ----------
    config : BenchConfig
    connectome : Connectome, optional
        Default: :func:`load_network` (``config.data``).
    console : rich.console.Console, optional
    """
    console = console or Console(stderr=True)
    handlers = _setup_logging(config.log_file, console)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # a SIGTERM (kill, a batch system's limit) ends the running point's process group too
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(config, connectome, console)
    except KeyboardInterrupt:
        log.warning("benchmark interrupted; the rows measured so far are in %s", config.csv_path)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for h in handlers:
            log.removeHandler(h)
            h.close()


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run(config: BenchConfig, connectome: Any, console: Any) -> list[dict[str, Any]]:
    exp = config.experiment
    points = build_grid(config.targets, config.t_runs, config.n_runs)
    for p in points:  # refuse impossible durations before any work
        exp.with_(t_run=p.t_run, n_trials=p.n_run)
    log.info("starting benchmark: experiment %r, %d point(s): engines %s, t_run %s s, n_run %s",
             exp.name, len(points), [t.label for t in config.targets],
             [format_t_run(t) for t in sorted(set(config.t_runs))], sorted(set(config.n_runs)))
    hw = hardware_info()
    log.info("hardware: %s", hardware_summary(hw))
    load_s = None
    if connectome is None:
        t0 = time.perf_counter()
        connectome = load_network(config.data)
        load_s = time.perf_counter() - t0
    else:
        load_s = connectome.meta.get("load_s") if isinstance(getattr(connectome, "meta", None), dict) else None
    log.info("connectome: %s, %d neurons, %d connections%s", connectome.label, connectome.n_neurons,
             connectome.n_connections, f", loaded in {load_s:.1f} s" if load_s is not None else "")
    if getattr(connectome, "synthetic", False):
        log.warning("results on a SYNTHETIC connectome: speeds are representative, spikes are not the fly's")
    log.info("results: %s; spikes: %s; log: %s; time limit per point: %g s", config.csv_path,
             config.results_dir if config.save_spikes else "not saved", config.log_file or "console only",
             config.timeout_s)

    registered = set(engine_names())
    resolved: dict[str, str | None] = {
        t.label: next((e for e in t.engines if e in registered), None) for t in config.targets}
    skip_target: dict[str, str] = {}
    for t in config.targets:
        if resolved[t.label] is None:
            skip_target[t.label] = (f"not registered: no engine named {' or '.join(repr(e) for e in t.engines)} "
                                    f"(registered: {sorted(registered)})")
    too_large: dict[str, list[tuple[GridPoint, str]]] = {}
    done_before: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    if config.resume:
        rows_before, _ = read_rows(config.csv_path)
        done_before = {row_key(r): dict(r) for r in rows_before if r.get("status") == "ok"
                       and (not config.save_spikes or (r.get("spikes_file") and Path(r["spikes_file"]).exists()))}
    eta = _Eta(points)
    rows: list[dict[str, Any]] = []

    progress = Progress(
        TextColumn("[bold]{task.fields[point]}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[done]}/{task.fields[total_points]} points"), TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"), TextColumn("{task.fields[trials]}"),
        console=console, auto_refresh=False, transient=False, disable=not config.progress,
    )
    total_weight = sum(p.weight for p in points) or 1.0
    with progress:
        task_id = progress.add_task("bench", total=total_weight, point="", done=0, eta="?", trials="",
                                    total_points=len(points))
        for k, point in enumerate(points):
            label = point.target.label
            progress.update(task_id, point=point.describe(), trials="")
            progress.refresh()
            reason = skip_target.get(label)
            if reason is None:
                for small, why in too_large.get(label, []):
                    if point.t_run >= small.t_run and point.n_run >= small.n_run:
                        reason = (f"skipped: the point t={format_t_run(small.t_run)}s n={small.n_run} {why}; "
                                  "this one is at least as large")
                        break
            key = (label, exp.name, str(point.n_run), format_t_run(point.t_run))
            if reason is None and key in done_before:
                rows.append(done_before[key])
                log.info("%s: already measured (--resume), kept", point.describe())
                eta.drop(point)
                progress.update(task_id, advance=point.weight, done=k + 1, eta=_fmt_seconds(eta.seconds_left()))
                progress.refresh()
                continue
            if reason is not None:
                row = {"status": "skipped", "reason": reason, "wall_s": 0.0}
                eta.drop(point)
            else:
                row = _run_one(config, point, resolved[label] or "", exp, connectome, progress, task_id)
                eta.done(point, float(row.get("wall_s") or 0.0), row["status"] in ("ok", "timeout"))
                if row["status"] == "skipped":
                    skip_target[label] = row["reason"]
                elif row["status"] == "timeout":
                    too_large.setdefault(label, []).append((point, f"timed out (limit {config.timeout_s:g} s)"))
                elif row["status"] == "crashed" and "SIGKILL" in row.get("reason", ""):
                    too_large.setdefault(label, []).append((point, "was killed (SIGKILL: out of memory?)"))
            full = _full_row(config, point, resolved[label], exp, connectome, hw, load_s, row)
            upsert_row(config.csv_path, full)
            rows.append(full)
            _log_row(full)
            progress.update(task_id, advance=point.weight, done=k + 1, eta=_fmt_seconds(eta.seconds_left()))
            progress.refresh()
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    log.info("benchmark done: %s; results in %s", ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
             config.csv_path)
    if config.plot and any(r["status"] == "ok" for r in rows):
        try:
            fig = plot_benchmark(read_results(config.csv_path), Path(config.csv_path).with_suffix(".png"),
                                 experiment=exp.name)
            log.info("plot: %s", fig)
        except Exception as exc:  # noqa: BLE001 - a plot failure must not fail the benchmark
            log.warning("plot not drawn: %s", exc)
    return rows


def _run_one(config: BenchConfig, point: GridPoint, engine_name: str, exp: Any, connectome: Any,
             progress: Any, task_id: Any) -> dict[str, Any]:
    stem = spikes_file_name(point.target.label, exp.name, point.t_run, point.n_run)[: -len(".parquet")]
    task = PointTask(
        label=point.target.label,
        engine=engine_name,
        options=point.target.options_dict,
        experiment=exp.with_(t_run=point.t_run, n_trials=point.n_run),
        spikes_path=(Path(config.results_dir) / f"{stem}.parquet") if config.save_spikes else None,
        log_path=Path(config.results_dir) / "logs" / f"{stem}.log",
    )
    log.info("running %s (engine %s%s)", point.describe(), engine_name,
             f", options {point.target.options_dict}" if point.target.options else "")

    def on_progress(done: int, total: int) -> None:
        progress.update(task_id, trials=f"trial {done}/{total}" if total else "")

    row = run_point(task, connectome, config.timeout_s, on_progress=on_progress, poll=progress.refresh,
                    start_method=config.start_method)
    row["log_file"] = str(task.log_path)
    return row


def _full_row(config: BenchConfig, point: GridPoint, engine_name: str | None, exp: Any, connectome: Any,
              hw: dict[str, Any], load_s: float | None, row: dict[str, Any]) -> dict[str, Any]:
    sim_s = row.get("sim_s")
    ratio = (point.t_run * point.n_run / sim_s) if row.get("status") == "ok" and sim_s else None
    full: dict[str, Any] = {
        "engine": point.target.label,
        "experiment": exp.name,
        "t_run": format_t_run(point.t_run),
        "n_run": point.n_run,
        "realtime_ratio": ratio,
        "load_s": load_s,
        "engine_name": engine_name or "",
        "engine_options": point.target.options_dict,
        "connectome": connectome.label,
        "synthetic": bool(getattr(connectome, "synthetic", False)),
        "n_neurons": connectome.n_neurons,
        "n_connections": connectome.n_connections,
        "seed": exp.seed,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **{k: hw.get(k) for k in ("cpu_model", "cpu_cores", "cpu_usable", "memory_gb", "gpu")},
    }
    for k, v in row.items():
        full.setdefault(k, v)
    if "versions" not in full:
        full["versions"] = software_versions()
    return full


def _log_row(r: dict[str, Any]) -> None:
    where = f"{r['engine']} t={r['t_run']}s n={r['n_run']}"
    if r["status"] == "ok":
        log.info("%s: ok, sim %.3f s (setup %.3f, build %.3f, total %.3f; %s), %.3gx real time, %d spikes, "
                 "%d active neurons, peak %.0f MiB", where, r["sim_s"], r["setup_s"], r["build_s"], r["total_s"],
                 r.get("timings_source"), r["realtime_ratio"] or 0.0, r["n_spikes"], r["active_neurons"],
                 r.get("peak_rss_mb") or 0.0)
    elif r["status"] == "skipped":
        log.info("%s: skipped: %s", where, r["reason"])
    else:
        log.error("%s: %s: %s (log: %s)", where, r["status"], r["reason"], r.get("log_file", ""))

