"""Running a screen: plan the conditions, run them in chunks, write the tables, resume.

The folder (``out``) is a parquet dataset (see :func:`screen`). Chunks of conditions are
written to ``parts/`` atomically as they finish; an interrupted screen run again with the
same spec, data and engine runs only the chunks that are missing. Every condition's
numbers depend on its own experiment only (its seed, its trials), so they do not depend
on the chunking, the number of workers or the order in which chunks finish.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._io import atomic_write, digest_text
from .._version import __version__
from ..connectome import Connectome
from ..engines.base import Engine
from ..errors import DataError, ValidationError
from ..runner import DataLike, ProgressBar, resolve_data, resolve_engine, run_many
from .cluster import ChunkTask, DataRef, Executor, check_scheduler, make_executor
from .spec import Condition, Screen, load_screen
from .tables import TABLES, effects_table

__all__ = ["screen", "ScreenResult", "resolve_screen", "FOLDER_FORMAT"]

log = logging.getLogger(__name__)

#: Version of the folder layout (screen.json records it; another is not resumed).
FOLDER_FORMAT = 1

ScreenLike = Screen | str | Path | Mapping[str, Any]


def resolve_screen(spec: ScreenLike) -> Screen:
    """A :class:`Screen` from itself, a TOML file, or the plain-dict form of a spec."""
    if isinstance(spec, Screen):
        return spec
    if isinstance(spec, (str, Path)):
        return load_screen(spec)
    if isinstance(spec, Mapping):
        return Screen.from_dict(spec)
    raise ValidationError(f"screen: spec must be a Screen, a TOML file or a dict (got {type(spec).__name__})")


def _write_frame(frame: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _frame(columns: Mapping[str, np.ndarray]) -> Any:
    import pandas as pd

    frame = pd.DataFrame({k: v for k, v in columns.items()})
    for k, v in columns.items():
        if v.dtype == object:
            frame[k] = frame[k].astype(str)
    return frame


@dataclass
class ScreenResult:
    """A screen's folder and its tables (pandas DataFrames).

    Attributes
    ----------
    folder : Path
    info : dict
        ``screen.json``: the spec, engine, data, status, timings.
    conditions, readout, summary, effects : pandas.DataFrame
        As in the folder (see :func:`screen`).
    """

    folder: Path
    info: dict[str, Any]
    conditions: Any
    readout: Any
    summary: Any
    effects: Any

    @classmethod
    def load(cls, folder: str | Path) -> "ScreenResult":
        """Read a screen's folder (complete or not: missing tables are empty)."""
        import pandas as pd

        folder = Path(folder)
        info_path = folder / "screen.json"
        if not info_path.is_file():
            raise DataError(f"{folder}: not a screen folder (no screen.json); run `brainfly screen SPEC --out "
                            f"{folder}` first")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{info_path}: damaged ({exc}); run the screen again with --overwrite") from None
        tables = {}
        for name in ("conditions", "readout", "summary", "effects"):
            path = folder / f"{name}.parquet"
            tables[name] = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
        return cls(folder, info, **tables)

    @property
    def complete(self) -> bool:
        """Whether every condition ran and the tables are final."""
        return self.info.get("status") == "complete"

    def top(self, n: int = 10, connectome: str = "real") -> Any:
        """The *n* strongest effects (smallest q, then largest |difference|) with their conditions' labels."""
        eff = self.effects
        if eff.empty:
            return eff
        eff = eff[eff["connectome"] == connectome].merge(
            self.conditions[["condition_id", "connectome", "label"]], on=["condition_id", "connectome"], how="left")
        eff = eff.assign(_abs=eff["diff_hz"].abs()).sort_values(["q_value", "_abs"], ascending=[True, False],
                                                               na_position="last")
        return eff.drop(columns="_abs").head(n).reset_index(drop=True)

    def __repr__(self) -> str:
        n = len(self.conditions)
        status = self.info.get("status", "?")
        sig = int((self.effects["q_value"] < 0.05).sum()) if not self.effects.empty else 0
        synthetic = " (synthetic connectome)" if self.info.get("data", {}).get("synthetic") else ""
        return (f"<ScreenResult {self.info.get('name', '?')!r}: {n} conditions, {status}, {sig} effects with q < 0.05"
                f"{synthetic}; {self.folder}>")


class _Folder:
    """The screen's folder: its identity (``screen.json``), parts, and final tables."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.parts = folder / "parts"

    def open(self, info: dict[str, Any], resume: bool, overwrite: bool) -> bool:
        """Make the folder ready; True when it already holds this screen, complete."""
        path = self.folder / "screen.json"
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = {}
            same = old.get("fingerprint") == info["fingerprint"] and old.get("format") == FOLDER_FORMAT
            complete = old.get("status") == "complete"
            if not same:
                if not overwrite:
                    raise ValidationError(
                        f"{self.folder} holds another screen ({old.get('name', '?')!r}: another spec, connectome, "
                        "engine or brainfly version); choose another --out, or pass --overwrite (overwrite=True) to "
                        "replace it")
                shutil.rmtree(self.folder)
            elif overwrite or not resume:
                if complete and not overwrite:
                    raise ValidationError(f"{self.folder} holds this screen, complete; pass --overwrite to run it again")
                shutil.rmtree(self.folder)
            elif complete:
                return True
            else:
                info["chunk_conditions"] = old.get("chunk_conditions", info["chunk_conditions"])
        elif self.folder.exists() and any(self.folder.iterdir()) and not overwrite:
            raise ValidationError(f"{self.folder} exists and is not a screen folder; choose another --out")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.write_info(info)
        return False

    def write_info(self, info: dict[str, Any]) -> None:
        text = json.dumps(info, indent=1, default=str)
        atomic_write(self.folder / "screen.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def part(self, label: str, chunk: int, table: str) -> Path:
        return self.parts / label / f"chunk-{chunk:05d}-{table}.parquet"

    def done(self, task: ChunkTask) -> bool:
        # the last table of a chunk is written last: its file means the chunk is complete
        return self.part(task.connectome_label, task.chunk, TABLES[-1]).is_file()

    def write_chunk(self, label: str, chunk: int, tables: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        for name in TABLES:
            _write_frame(_frame(tables[name]), self.part(label, chunk, name))

    def read_parts(self, table: str) -> Any:
        import pandas as pd

        paths = sorted(self.parts.glob(f"*/chunk-*-{table}.parquet"))
        try:
            frames = [pd.read_parquet(p) for p in paths]
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(f"{self.parts}: a part is damaged ({exc}); remove it (it runs again) or pass "
                            "--overwrite") from None
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if not frame.empty:
            keys = ["connectome", "condition_id"] + (["flywire_id"] if "flywire_id" in frame else []) + (
                ["trial"] if "trial" in frame else [])
            frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
        return frame


def _conditions_frame(conditions: list[Condition], labels: list[str]) -> Any:
    import pandas as pd

    rows = []
    for label in labels:
        for c in conditions:
            row = {"condition_id": c.condition_id, "connectome": label, "kind": c.kind, "label": c.label}
            row.update(c.columns)
            row["experiment"] = json.dumps(c.experiment.to_dict(), default=str)
            rows.append(row)
    return pd.DataFrame(rows)


def _data_ref(data: DataLike, net: Connectome) -> Connectome | DataRef:
    """What the workers get: the loaded network (scattered once) or where to load it."""
    if isinstance(data, (str, Path)):
        source = str(Path(data).expanduser().resolve()) if Path(str(data)).expanduser().exists() else str(data)
        return DataRef(source, net.content_digest)
    return net


def screen(spec: ScreenLike, data: DataLike = None, engine: str | Engine = "event", out: str | Path | None = None,
           *, scheduler: Any = "local", resume: bool = True, overwrite: bool = False, yes: bool = False,
           save_spikes: bool = False, progress: Any = True, chunk_conditions: int | None = None,
           workers: int = 1, **engine_options: Any) -> ScreenResult:
    """Run a screen: every condition on one engine, with statistics against the base.

    Parameters
    ----------
    spec : Screen, str, Path or dict
        The screen (see :mod:`brainfly.screens.spec`), a TOML spec file, or its dict form.
    data : Connectome, str or Path, optional
        As for :func:`brainfly.run`.
    engine : str or Engine
    out : str or Path, optional
        The screen's folder (default ``screens/<name>``).
    scheduler : str or cluster object
        ``local`` (default: an embedded Dask cluster in this process), ``in-process`` (no
        Dask), the address of a running Dask scheduler (``tcp://HOST:PORT``), a batch system
        (``slurm``, ``pbs``, ``sge``, ``lsf``, ...: *workers* jobs started by dask-jobqueue,
        configured as dask-jobqueue documents), or a started cluster object.
    resume : bool
        Keep the chunks a previous run of the same screen finished (default).
    overwrite : bool
        Replace a folder that holds another screen, or this one complete.
    yes : bool
        Run more conditions than the spec's ``max_conditions``.
    save_spikes : bool
        Also write every condition's spikes (``spikes/<connectome>-condition-NNNNNN.parquet``).
    progress : bool or callable
        A progress bar over conditions (on a terminal), or ``callback(done, total)``.
    chunk_conditions : int, optional
        Conditions per chunk (run together, written together); default by engine.
    workers : int
        Worker jobs to start with a batch-system scheduler.
    **engine_options
        The engine's options.

    Returns
    -------
    ScreenResult
        The folder's tables: ``conditions``, ``readout`` (per condition and readout neuron,
        zero rates included: ``mean_hz``, ``std_hz``, ``sem_hz``, ``n_trials``), ``summary``
        (spikes per trial-second, active neurons, runaway), ``effects`` (against the base:
        difference with 95% CI, Hedges' g, Welch's p, Benjamini–Hochberg q); also written:
        ``readout_trials.parquet`` (per-trial rates).

    Raises
    ------
    ValidationError, UnknownNeuronError
        Before any simulation: bad spec, unknown neuron, too many conditions without *yes*,
        a folder holding another screen.
    """
    t0 = time.perf_counter()
    sc = resolve_screen(spec)
    check_scheduler(scheduler)
    eng = resolve_engine(engine, engine_options)
    eng.check_available()
    net = resolve_data(data, progress=progress is True)
    base_counts = None
    t_base = time.perf_counter()
    if sc.needs_base_run:
        # the selection keeps neurons the base activates: run it once, here, first
        base_run = run_many([sc.base], net, eng, progress=False)[0]
        base_counts = np.bincount(np.asarray(base_run.idx, dtype=np.int64), minlength=net.n_neurons)
    t_base = time.perf_counter() - t_base
    conditions = sc.conditions(net, base_counts)
    readout_ids = sc.readout_ids(net)
    labels = ["real"] + [f"shuffle-{k}" for k in range(1, sc.controls.shuffles + 1)]
    n_total = len(conditions) * len(labels)
    if n_total > sc.max_conditions and not yes:
        raise ValidationError(f"screen {sc.name!r}: {n_total:,} conditions ({len(conditions):,} x {len(labels)} "
                              f"connectome(s)) is more than max_conditions = {sc.max_conditions:,}; pass --yes "
                              "(yes=True) to run them, or raise max_conditions in the spec")
    folder = Path(out) if out is not None else Path("screens") / sc.name
    options = dict(sorted(eng.options.to_dict().items()))
    if chunk_conditions is not None and (isinstance(chunk_conditions, bool) or not isinstance(chunk_conditions, int)
                                         or chunk_conditions < 1):
        raise ValidationError(f"screen: chunk_conditions must be an integer >= 1 (got {chunk_conditions!r})")
    size = chunk_conditions or int(eng.conditions_per_chunk)
    fingerprint = digest_text("brainfly-screen-run", sc.digest, net.content_digest, eng.name,
                              json.dumps(options, sort_keys=True, default=str), __version__, str(bool(save_spikes)))
    info: dict[str, Any] = {
        "format": FOLDER_FORMAT, "name": sc.name, "fingerprint": fingerprint, "status": "running",
        "spec": sc.to_dict(), "engine": eng.name, "engine_options": options, "versions": eng.versions(),
        "data": {"name": net.name, "label": net.label, "digest": net.content_digest, "synthetic": bool(net.synthetic),
                 "n_neurons": net.n_neurons, "n_connections": net.n_connections},
        "n_conditions": len(conditions), "connectomes": labels, "readout_ids": [int(i) for i in readout_ids],
        "chunk_conditions": size, "save_spikes": bool(save_spikes), "brainfly_version": __version__,
        "hardware": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                     "python": platform.python_version()},
    }
    store = _Folder(folder)
    if store.open(info, resume, overwrite):
        log.info("screen %s: already complete in %s", sc.name, folder)
        return ScreenResult.load(folder)
    size = int(info["chunk_conditions"])
    _write_frame(_conditions_frame(conditions, labels), folder / "conditions.parquet")

    opts = tuple(options.items())
    tasks = []
    for label in labels:
        seed = None if label == "real" else int(label.split("-")[1])
        for k in range(math.ceil(len(conditions) / size)):
            chunk = conditions[k * size:(k + 1) * size]
            tasks.append(ChunkTask(k, label, seed, tuple((c.condition_id, c.experiment.to_dict()) for c in chunk),
                                   eng.name, opts, tuple(int(i) for i in readout_ids), bool(save_spikes)))
    todo = [t for t in tasks if not store.done(t)]
    done = n_total - sum(len(t.conditions) for t in todo)
    t_plan = time.perf_counter()
    executor: Executor | None = None
    bar = ProgressBar(progress, f"screen {sc.name}", n_total, done, unit="conditions") if progress else None
    try:
        if todo:
            executor = make_executor(scheduler, workers)
            info["scheduler"] = executor.describe()
            store.write_info(info)
            for result in executor.map(todo, _data_ref(data, net)):
                for cid, res in result.spikes:
                    res.write_parquet(folder / "spikes" / f"{result.connectome_label}-condition-{cid:06d}.parquet")
                store.write_chunk(result.connectome_label, result.chunk, result.tables)
                done += len(result.tables["summary"]["condition_id"])
                if bar is not None:
                    bar.update(done)
    finally:
        if bar is not None:
            bar.close()
        if executor is not None:
            executor.close()
    t_run = time.perf_counter()
    readout_trials = store.read_parts("readout_trials")
    readout = store.read_parts("readout")
    summary = store.read_parts("summary")
    effects = effects_table(readout_trials, readout)
    for name, frame in (("readout_trials", readout_trials), ("readout", readout), ("summary", summary),
                        ("effects", effects)):
        _write_frame(frame, folder / f"{name}.parquet")
    info["status"] = "complete"
    info["timings"] = {"plan_s": round(t_plan - t0, 4), "base_for_selection_s": round(t_base, 4), "run_s": round(t_run - t_plan, 4),
                       "tables_s": round(time.perf_counter() - t_run, 4),
                       "total_s": round(time.perf_counter() - t0, 4), "chunks_run": len(todo)}
    store.write_info(info)
    return ScreenResult.load(folder)
