"""Where runs live: file naming, finding and loading saved runs, and the benchmark's CSV.

Saved runs have one name each (durations spelt by :func:`format_t_run` everywhere: file
names, CSV, logs)::

    {results_dir}/{engine}_{experiment}_t{t_run}_n{n_run}.parquet    e.g. event_sugar_t0.1_n4.parquet

The benchmark CSV has one row per (engine, experiment, n_run, t_run), in the columns of
:data:`CSV_COLUMNS`; :func:`upsert_row` replaces a row atomically
(:func:`brainfly._io.atomic_write`), so an interrupted benchmark keeps what it measured.
Durations are in seconds.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
import re
from typing import Any

import numpy as np

from ._io import atomic_write
from .errors import ValidationError
from .results import SpikeResult

__all__ = [
    "DEFAULT_RESULTS_DIR",
    "DEFAULT_CSV",
    "CSV_COLUMNS",
    "format_t_run",
    "spikes_file_name",
    "parse_spikes_file_name",
    "find_runs",
    "load_run",
    "row_key",
    "read_rows",
    "upsert_row",
    "update_fields",
    "read_results",
]

#: Saved runs (spike files) and the benchmark's worker logs.
DEFAULT_RESULTS_DIR = Path("data/results")
#: The benchmark's results table.
DEFAULT_CSV = Path("data/benchmark-results.csv")

#: Columns of the benchmark CSV, in order (extra columns found in an existing file are kept).
CSV_COLUMNS: tuple[str, ...] = (
    "engine",           # benchmark label (e.g. torch-cuda); file names use it
    "experiment",       # experiment name
    "t_run",            # simulated duration of one trial, s (format_t_run spelling)
    "n_run",            # number of trials
    "status",           # ok | skipped | failed | crashed | timeout
    "reason",           # why skipped/failed; empty when ok
    "setup_s",          # engine setup: network construction, preparing inputs
    "build_s",          # code generation and compilation
    "sim_s",            # simulation proper (the always-on cost)
    "total_s",          # wall time of brainfly.run in the worker (connectome already loaded; set-up,
                        # compilation or its cache, simulation, writing the files)
    "e2e_s",            # end to end: the same run as a command in a fresh process, what a user waits for
                        # (benchmarks/bench_e2e.py --csv; empty where not measured)
    "realtime_ratio",   # t_run * n_run / sim_s  (> 1: faster than real time)
    "n_spikes",         # spikes in all trials
    "active_neurons",   # neurons that spiked in any trial
    "peak_rss_mb",      # peak resident memory of the worker (or its children), MiB
    "peak_gpu_mb",      # peak GPU memory, MiB: the engine's meta, else PyTorch's CUDA peak (empty if none)
    "wall_s",           # wall time of the whole worker process (start to result)
    "load_s",           # loading the connectome in the parent (once per benchmark)
    "timings_source",   # engine (the engine's run record); older rows: engine-sim (the engine timed
                        # its loop only) or measured (all of engine.run counted as sim)
    "engine_name",      # registered engine name
    "engine_options",   # JSON of the options given to the engine
    "device",           # device the engine reported (e.g. cuda:0), if any
    "connectome",       # connectome label (says SYNTHETIC for generated ones)
    "synthetic",        # True for generated connectomes
    "n_neurons",
    "n_connections",
    "seed",             # experiment seed
    "input",            # input fingerprint the engine recorded
    "cpu_model",
    "cpu_cores",
    "cpu_usable",
    "memory_gb",
    "gpu",
    "versions",         # JSON: python, brainfly, numpy and the engine's libraries
    "spikes_file",      # saved spikes (parquet), empty when not saved
    "log_file",         # the worker's own log
    "timestamp",        # ISO-8601 UTC time the row was written
)

#: Numeric columns that :func:`read_results` parses.
_NUMERIC = ("t_run", "n_run", "setup_s", "build_s", "sim_s", "total_s", "e2e_s", "realtime_ratio", "n_spikes",
            "active_neurons", "peak_rss_mb", "peak_gpu_mb", "wall_s")


# =============================================================================== naming
def format_t_run(t_run: float) -> str:
    """The one spelling of a duration in seconds used in file names, CSV and logs.

    Raises
    ------
    ValidationError
        For a duration that is not finite and > 0.

    Examples
    --------
    >>> [format_t_run(x) for x in (0.1, 1, 1.0, 10, 1000, 0.25)]
    ['0.1', '1', '1', '10', '1000', '0.25']
    """
    value = float(t_run)
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(f"t_run: must be a finite duration > 0 s (got {t_run!r})")
    return np.format_float_positional(value, trim="-")


def spikes_file_name(engine: str, experiment: str, t_run: float, n_run: int) -> str:
    """File name of a saved run: ``{engine}_{experiment}_t{t_run}_n{n_run}.parquet``.

    Raises
    ------
    ValidationError
        For an engine label with ``_`` or ``/`` (it could not be parsed back), or an
        experiment name with ``/``.

    Examples
    --------
    >>> spikes_file_name("event", "sugar", 0.1, 4)
    'event_sugar_t0.1_n4.parquet'
    """
    if not engine or "_" in engine or "/" in engine or engine != engine.strip():
        raise ValidationError(
            f"engine label: {engine!r} cannot be used in a file name; use letters, digits and '-' (no '_')")
    if not experiment or "/" in experiment:
        raise ValidationError(f"experiment name: {experiment!r} cannot be used in a file name")
    return f"{engine}_{experiment}_t{format_t_run(t_run)}_n{int(n_run)}.parquet"


_NAME_RE = re.compile(r"^(?P<engine>[^_/]+)_(?P<experiment>.+)_t(?P<t_run>[0-9.]+)_n(?P<n_run>\d+)\.parquet$")


def parse_spikes_file_name(name: str | Path) -> dict[str, Any] | None:
    """Inverse of :func:`spikes_file_name`: dict(engine, experiment, t_run, n_run), or None.

    >>> parse_spikes_file_name("torch-cpu_sugar_t1_n4.parquet")
    {'engine': 'torch-cpu', 'experiment': 'sugar', 't_run': 1.0, 'n_run': 4}
    """
    m = _NAME_RE.match(Path(name).name)
    if not m:
        return None
    try:
        t_run = float(m["t_run"])
    except ValueError:
        return None
    return {"engine": m["engine"], "experiment": m["experiment"], "t_run": t_run, "n_run": int(m["n_run"])}


# =============================================================================== saved runs
def find_runs(results_dir: str | Path) -> list[dict[str, Any]]:
    """Saved runs in *results_dir*: dicts (engine, experiment, t_run, n_run, path), sorted by path.

    Files whose names do not follow :func:`spikes_file_name` are left out.
    """
    out = []
    for path in sorted(Path(results_dir).glob("*.parquet")):
        info = parse_spikes_file_name(path.name)
        if info is not None:
            info["path"] = path
            out.append(info)
    return out


def load_run(path: str | Path, t_run: float | None = None, engine: str | None = None) -> SpikeResult:
    """Read a saved run; fill in the duration and engine when the file lacks them.

    Parameters
    ----------
    path : str or Path
        A spike file written by brainfly, or by the paper's code (columns t, trial, flywire_id).
    t_run : float, optional
        Trial duration, s. The paper's own files record none: pass it, so that rates are
        computed over the whole trial, not up to the last spike.
    engine : str, optional
        Engine label for a file that does not name its engine.

    Raises
    ------
    DataError
        For a file that cannot be read as spikes.
    """
    result = SpikeResult.read_parquet(path)
    if t_run is not None:
        n_steps = int(round(float(t_run) / result.dt_s))
        if not result.meta or result.n_steps < n_steps:
            result.n_steps = n_steps
    if engine and not result.engine:
        result.engine = engine
    return result


# =============================================================================== the benchmark CSV
def row_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """The key of a CSV row: (engine, experiment, n_run, t_run), as strings in their one spelling."""
    try:
        t_key = format_t_run(float(row["t_run"]))
    except (ValueError, TypeError, ValidationError):
        t_key = str(row.get("t_run"))
    return (str(row["engine"]), str(row["experiment"]), str(int(float(row["n_run"]))), t_key)


def read_rows(csv_path: str | Path) -> tuple[list[dict[str, str]], list[str]]:
    """The rows of a benchmark CSV (strings) and its columns (:data:`CSV_COLUMNS`, then any extra).

    A missing file has no rows.
    """
    csv_path = Path(csv_path)
    if not csv_path.exists():
        return [], list(CSV_COLUMNS)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    extra = [c for c in columns if c not in CSV_COLUMNS]
    return rows, list(CSV_COLUMNS) + extra


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if value != value else repr(round(value, 6)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def upsert_row(csv_path: str | Path, row: dict[str, Any]) -> bool:
    """Insert or replace the row with the same (engine, experiment, n_run, t_run); atomic.

    A ``skipped`` row does not replace an ``ok`` row (a machine without the engine has
    measured nothing). Rows are kept sorted by experiment, engine, t_run, n_run.

    Returns
    -------
    bool
        Whether the file changed.
    """
    csv_path = Path(csv_path)
    rows, columns = read_rows(csv_path)
    new = {c: _cell(row.get(c)) for c in columns}
    new["t_run"] = format_t_run(float(row["t_run"]))
    key = row_key(new)
    kept: list[dict[str, str]] = []
    for r in rows:
        if row_key(r) == key:
            if new["status"] == "skipped" and r.get("status") == "ok":
                return False
            continue
        kept.append(r)
    kept.append(new)
    kept.sort(key=lambda r: (r.get("experiment", ""), r.get("engine", ""), float(r.get("t_run") or 0),
                             int(float(r.get("n_run") or 0))))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in kept:
        writer.writerow({c: r.get(c, "") for c in columns})
    text = buf.getvalue()
    atomic_write(csv_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return True


def update_fields(csv_path: str | Path, key: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Set some fields of the row with *key*'s (engine, experiment, n_run, t_run); atomic.

    A row that is not there yet is added with ``status`` ok and only these fields.

    Returns
    -------
    bool
        Whether the row existed before.
    """
    csv_path = Path(csv_path)
    rows, _ = read_rows(csv_path)
    wanted = row_key(key)
    old = next((r for r in rows if row_key(r) == wanted), None)
    row: dict[str, Any] = dict(old) if old is not None else {"status": "ok", **key}
    row.update(fields)
    upsert_row(csv_path, row)
    return old is not None


def read_results(csv_path: str | Path) -> Any:
    """The benchmark CSV as a pandas DataFrame, numeric columns parsed (unparsable cells NaN).

    pandas is imported here, not at the top: it costs about half a second, which the rest of
    this module (used by every command that names or finds runs) does not need.
    """
    import pandas as pd

    frame = pd.read_csv(csv_path, dtype={"engine": str, "experiment": str, "status": str, "reason": str})
    for col in _NUMERIC:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame
