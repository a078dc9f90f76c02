"""The runner: the one way to run an experiment (:func:`run`) or several (:func:`run_many`).

Everything that runs a simulation goes through here: the Python API, the CLI, the
benchmark grid, and screens. The runner

1. loads what it is given (an experiment name or file, a data folder or dataset name)
   and checks everything that can refuse the run before any work: the engine and its
   options, the neurons, the output path. A refused run writes nothing;
2. runs the trials in chunks (the engine's ``trials_per_chunk``); with an output path,
   each finished chunk is written atomically to ``OUT.parts/`` so that an interrupted
   run started again resumes where it stopped. Parts are tied to the run by a
   fingerprint of content digests (the experiment, the input schedule file's SHA-256,
   the connectome's digest, the engine and its options, brainfly's version), stamped on
   the folder and on every part: changed inputs never mix with stale parts, and a part
   of another run is never merged. A resumed run runs each missing trial once, however
   its trials are chunked, and gives the same files as an uninterrupted run (a part's
   propagation front is kept beside it, ``front-AAAAA-BBBBB.parquet``);
3. merges the chunks and records the provenance in ``result.meta``: the full experiment
   (``Experiment.to_dict()``), the engine, its options and versions, the connectome's
   name and digest, the timings summed over chunks and the wall time;
4. writes the spikes (``OUT``, paper columns), the per-neuron rates
   (``OUT_rates.csv``) and, where the engine records it, the propagation front
   (``OUT_front.parquet``), each atomically, and removes the parts. Every file of a
   synthetic connectome's run says so: the parquet files in their schema metadata
   (``brainfly``, ``"synthetic": true``), the rates CSV in a last column ``synthetic``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import copy
import json
import logging
import os
from pathlib import Path
import shutil
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from ._io import atomic_write, digest_text, sha256_file
from ._version import __version__
from .connectome import Connectome, load_connectome
from .connectome.datasets import DATA_ENV
from .connectome.lookup import resolve_neurons, shipped_annotations
from .connectome.lookup import _numpy_from_arrow
from .engines.base import Engine, EngineOptions, ProgressCallback, get_engine
from .errors import DataError, OutputExistsError, ValidationError
from .experiment import Experiment, load_experiment
from .results import SpikeResult, _write_columns, merge_results

__all__ = ["run", "run_many", "ProgressBar", "resolve_engine", "resolve_data", "resolve_experiment", "output_paths",
           "check_names_before_loading",
           "run_fingerprint"]

log = logging.getLogger(__name__)

#: Version of the parts layout (``OUT.parts/RUN.json`` + ``trials-AAAAA-BBBBB.parquet``
#: + ``front-AAAAA-BBBBB.parquet`` where the engine records the propagation front).
PARTS_FORMAT = 2

ExperimentLike = Experiment | str | Path
DataLike = Connectome | str | Path | None
ProgressLike = bool | ProgressCallback


# -------------------------------------------------------------------- resolving the inputs
def resolve_experiment(experiment: ExperimentLike) -> Experiment:
    """An :class:`Experiment` from itself, a built-in name (``sugar``, ``p9``) or a TOML file."""
    if isinstance(experiment, Experiment):
        return experiment
    if isinstance(experiment, (str, Path)):
        return load_experiment(experiment)
    raise ValidationError(f"run: experiment must be an Experiment, a built-in name or a TOML file "
                          f"(got {type(experiment).__name__})")


def resolve_engine(engine: str | Engine, options: dict[str, Any]) -> Engine:
    """An engine instance from a name (options validated) or an instance (then no options)."""
    if isinstance(engine, Engine):
        if options:
            raise ValidationError(f"run: engine options {sorted(options)} given with an engine instance; "
                                  "give the engine by name, or set the options on the instance")
        return engine
    if not isinstance(engine, str):
        raise ValidationError(f"run: engine must be a name or an Engine (got {type(engine).__name__})")
    return get_engine(engine, **options)


def resolve_data(data: DataLike, *, progress: bool = True) -> Connectome:
    """A connectome from itself, a folder, a dataset name, or the default (None)."""
    if isinstance(data, Connectome):
        return data
    return load_connectome(data, progress=progress)


def check_names_before_loading(experiment: Experiment, data: DataLike) -> None:
    """Refuse neuron names that no neuron of FlyWire v783 carries, before a brain is loaded.

    For the datasets of v783 IDs (``flywire-783``, the synthetic brain, or the default when
    ``$BRAINFLY_DATA`` is not set) the shipped v783 tables tell the paper names and cell
    types, so an unknown name is refused before minutes of download or generation. IDs,
    and names on other data, are checked when the connectome is loaded.

    Raises
    ------
    UnknownNeuronError
        Naming the set and the unknown name, with close matches.
    """
    if isinstance(data, Connectome) or (data is None and os.environ.get(DATA_ENV)):
        return
    if data is not None and not (isinstance(data, str) and (data == "flywire-783" or data.startswith("synthetic"))):
        return
    named = [(owner, [s for s in specs if isinstance(s, str)]) for owner, specs in experiment.neuron_sets()]
    named = [(owner, specs) for owner, specs in named if specs]
    if not named:
        return
    ids = shipped_annotations().flywire_ids
    v783 = Connectome(ids, np.zeros(ids.shape[0] + 1, dtype=np.int64), np.empty(0, np.int32), np.empty(0, np.float64),
                      name="FlyWire v783 (the shipped annotation tables)", meta={"version": "783"})
    for owner, specs in named:
        resolve_neurons(v783, specs, owner=owner)


def output_paths(out: str | Path) -> dict[str, Path]:
    """The files a run with output *out* writes: ``spikes``, ``rates``, ``front``, ``parts``."""
    out = Path(out)
    return {
        "spikes": out,
        "rates": out.with_name(out.stem + "_rates.csv"),
        "front": out.with_name(out.stem + "_front.parquet"),
        "parts": out.with_name(out.name + ".parts"),
    }


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an output path that cannot be written, or that holds a finished result."""
    if "\0" in str(out):
        raise ValidationError(f"output {str(out)!r}: a path cannot hold a NUL character")
    if out.suffix.lower() != ".parquet":
        raise ValidationError(f"output {out}: must be a .parquet file (spikes are written as parquet)")
    if out.is_dir():
        raise ValidationError(f"output {out}: is a folder; give a file name such as {out / 'spikes.parquet'}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValidationError(f"output {out}: {parent} is a file, not a folder; choose another --out")
            break
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output {out}: a finished result is already there; choose another output, "
                                "or overwrite it (overwrite=True, --overwrite)")


def run_fingerprint(experiment: Experiment, connectome: Connectome, engine: Engine) -> str:
    """Digest of everything that determines a run's spikes (content digests, never names or paths).

    brainfly's version is part of it: parts written by another version are not merged.
    """
    blob = experiment.to_dict()
    if experiment.input_schedule is not None:
        blob["input_schedule"] = sha256_file(experiment.input_schedule)
    return digest_text(
        f"brainfly-run-v{PARTS_FORMAT}",
        __version__,
        json.dumps(blob, sort_keys=True, default=str),
        connectome.content_digest,
        engine.name,
        json.dumps(engine.options.to_dict(), sort_keys=True, default=str),
    )


# -------------------------------------------------------------------- progress
class ProgressBar:
    """A progress bar on stderr (only on a terminal), or the caller's callback ``(done, total)``.

    Parameters
    ----------
    progress : bool or callable
    label : str
    total, done : int
    unit : str
        What is counted (``trials``, ``conditions``).
    """

    def __init__(self, progress: ProgressLike, label: str, total: int, done: int, unit: str = "trials") -> None:
        self.callback: ProgressCallback | None = progress if callable(progress) else None
        self.total, self.done = total, done
        self._bar: Any = None
        if progress is True and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                                 TimeRemainingColumn(), transient=True, console=Console(stderr=True))
            self._task = self._bar.add_task(unit, total=total, completed=done)
            self._bar.start()

    def chunk(self, base: int) -> Callable[[int, int], None]:
        """Progress callback for one chunk whose trials start at *base* trials done."""
        def report(k: int, n: int) -> None:
            self.update(base + k)
        return report

    def update(self, done: int) -> None:
        self.done = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
        if self.callback is not None:
            self.callback(done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# -------------------------------------------------------------------- parts (resume)
class _Parts:
    """``OUT.parts/``: finished chunks of one run, tied to it by the run's fingerprint.

    ``RUN.json`` stamps the folder; each part ``trials-AAAAA-BBBBB.parquet`` (a spike file)
    carries the fingerprint in its header too, and, where the engine records the
    propagation front, has it beside it in ``front-AAAAA-BBBBB.parquet`` (written first:
    the spike part, written last, is what makes a part finished).
    """

    def __init__(self, folder: Path, fingerprint: str, connectome: Connectome) -> None:
        self.folder, self.fingerprint, self.connectome = folder, fingerprint, connectome
        self.stamp = folder / "RUN.json"

    def _damaged(self, what: str) -> DataError:
        return DataError(f"{what}; this part of an interrupted run is damaged: delete {self.folder} "
                         "or start again without resuming (resume=False, --no-resume)")

    def load(self, resume: bool, n_trials: int) -> list[SpikeResult]:
        """Finished parts of this run (none when not resuming or when they belong to another run).

        A part stamped with another fingerprint (another run, another brainfly version),
        one whose trials lie outside the run or repeat a part already taken, or one whose
        front file is missing, is left out (its trials run again).

        Raises
        ------
        DataError
            A part (or its front file) cannot be read: named, with the way to start over.
        """
        if not (resume and self.stamp.is_file()):
            return []
        try:
            said = json.loads(self.stamp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            said = None
        if not isinstance(said, dict) or said.get("fingerprint") != self.fingerprint:
            log.info("%s holds parts of another run (other experiment, data, engine, options or brainfly version): "
                     "starting again", self.folder)
            return []
        done: list[SpikeResult] = []
        taken: set[int] = set()
        for path in sorted(self.folder.glob("trials-*.parquet")):
            try:
                part = SpikeResult.read_parquet(path, self.connectome.flywire_ids)
            except DataError as exc:
                raise self._damaged(str(exc)) from None
            trials = set(part.trials)
            if part.meta.get("run_fingerprint") != self.fingerprint:
                log.warning("%s: a part of another run (not merged); its trials run again", path)
                continue
            if not trials or trials & taken or min(trials) < 0 or max(trials) >= n_trials:
                log.warning("%s: trials %s outside the run or already done (not merged)", path, sorted(trials))
                continue
            front = part.meta.pop("part_front", None)
            part.meta.pop("first_spike_step", None)
            if front is not None:
                arrays = self._read_front(self.folder / str(front))
                if arrays is None:
                    log.warning("%s: its front file %s is missing (not merged); its trials run again", path, front)
                    continue
                part.meta["first_spike_step"] = arrays
            part.meta.pop("run_fingerprint", None)
            taken |= trials
            done.append(part)
        return done

    def _read_front(self, path: Path) -> dict[str, np.ndarray] | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not path.is_file():
            return None
        try:
            table = pq.read_table(path)
            return {name: _numpy_from_arrow(table.column(name)) for name in table.column_names}
        except (OSError, pa.ArrowException, TypeError) as exc:
            raise self._damaged(f"front file {path}: cannot be read as parquet ({exc})") from None

    def start(self) -> None:
        """Empty the folder (parts of another run) and stamp it with this run's fingerprint."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        atomic_write(self.stamp, lambda tmp: tmp.write_text(
            json.dumps({"fingerprint": self.fingerprint, "format": PARTS_FORMAT}), encoding="utf-8"))

    def write(self, result: SpikeResult) -> None:
        trials = result.trials
        span = f"{trials[0]:05d}-{trials[-1]:05d}"
        part = copy.copy(result)
        part.meta = {k: v for k, v in result.meta.items() if k != "first_spike_step"}
        part.meta["run_fingerprint"] = self.fingerprint
        front = result.meta.get("first_spike_step")
        if isinstance(front, dict) and front and all(isinstance(v, np.ndarray) for v in front.values()):
            _write_columns(dict(front), self.folder / f"front-{span}.parquet")
            part.meta["part_front"] = f"front-{span}.parquet"
        part.write_parquet(self.folder / f"trials-{span}.parquet")  # last: the part is finished

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# -------------------------------------------------------------------- provenance and writing
def _provenance(result: SpikeResult, experiment: Experiment, connectome: Connectome, engine: Engine,
                timings: dict[str, float], wall_s: float) -> None:
    meta = dict(result.meta)
    meta.update({
        "experiment": experiment.to_dict(),
        "engine": engine.name,  # its options and versions: Engine.result wrote them
        "connectome": {
            "name": connectome.name,
            "label": connectome.label,
            "version": connectome.meta.get("version"),
            "digest": connectome.content_digest,
            "synthetic": bool(connectome.synthetic),
            "n_neurons": connectome.n_neurons,
            "n_connections": connectome.n_connections,
        },
        "brainfly_version": __version__,
        "timings": timings or dict(meta.get("timings") or {}),
        "wall_s": wall_s,
    })
    result.meta = meta


def _write_outputs(result: SpikeResult, paths: dict[str, Path]) -> None:
    front = result.has_propagation_front  # (an engine that records none: no front file)
    result.meta["outputs"] = {"spikes": str(paths["spikes"]), "rates": str(paths["rates"]),
                              **({"front": str(paths["front"])} if front else {})}

    def others() -> None:
        if front:
            result.write_propagation_front(paths["front"])
        result.write_rates(paths["rates"])

    # the front and the rates are written while the spikes are (pyarrow encodes without the
    # GIL); the spike file takes its name last: a spike file means the run's files are complete
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="brainfly-write") as pool:
        pending = pool.submit(others)
        result.write_parquet(paths["spikes"], before_rename=pending.result)


# -------------------------------------------------------------------- the runner
def run(experiment: ExperimentLike, data: DataLike = None, engine: str | Engine = "event",
        out: str | Path | None = None, *, resume: bool = True, overwrite: bool = False,
        progress: ProgressLike = True, chunk_trials: int | None = None, **engine_options: Any) -> SpikeResult:
    """Run an experiment on one engine: the one way to run.

    Parameters
    ----------
    experiment : Experiment, str or Path
        An :class:`~brainfly.experiment.Experiment`, a built-in name (``sugar``, ``p9``)
        or an experiment TOML file.
    data : Connectome, str or Path, optional
        A loaded connectome, a folder holding the canonical files, or a dataset name
        (``flywire-783``, ``flywire-630``, ``synthetic``). Default: ``$BRAINFLY_DATA``,
        else the best available.
    engine : str or Engine
        Engine name (see ``brainfly.engines``) or an engine instance. Default ``event``.
    out : str or Path, optional
        Spike file (``.parquet``) to write, with ``*_rates.csv`` and (where the engine
        records it) ``*_front.parquet`` beside it. None: in memory only.
    resume : bool
        Reuse the finished chunks of an interrupted run of the same experiment, data,
        engine and options (``OUT.parts/``).
    overwrite : bool
        Replace a finished result at *out* (refused otherwise).
    progress : bool or callable
        A progress bar on stderr (when it is a terminal), or ``callback(done, total)``
        called with trials done.
    chunk_trials : int, optional
        Trials per chunk (default: the engine's ``trials_per_chunk``).
    **engine_options
        Options of the engine (validated; an unknown one is refused listing the valid ones).

    Returns
    -------
    SpikeResult
        All trials, with the provenance in ``meta`` (``experiment``, ``engine``,
        ``engine_options``, ``versions``, ``connectome`` with its ``digest``,
        ``timings``, ``wall_s``).

    Raises
    ------
    ValidationError, UnknownNeuronError, UnknownEngineError, EngineUnavailable, DataError
        Before any simulation work and before anything is written.

    Examples
    --------
    >>> import brainfly                                                  # doctest: +SKIP
    >>> exp = brainfly.Experiment(name="p9", stimulate={"P9": 100}, n_trials=10)  # doctest: +SKIP
    >>> res = brainfly.run(exp, data="synthetic", out="p9.parquet")      # doctest: +SKIP
    """
    t0 = time.perf_counter()
    exp = resolve_experiment(experiment)
    eng = resolve_engine(engine, engine_options)
    eng.check_available()
    warming = eng.start_warm_up()  # the engine's kernels load while the rest is made ready
    if chunk_trials is not None and not EngineOptions.is_int(chunk_trials, 1):
        raise ValidationError(f"run: chunk_trials must be an integer >= 1 (got {chunk_trials!r})")
    paths = output_paths(out) if out is not None else None
    if paths is not None:
        _check_out(paths["spikes"], overwrite)
    check_names_before_loading(exp, data)
    net = resolve_data(data, progress=progress is True)
    sim = eng.prepare(net, exp)  # unknown neurons, unsupported features: refused here, nothing written
    if warming is not None:
        if paths is not None:
            import pyarrow.parquet  # noqa: F401 - the writer's import, meanwhile (else after the simulation)
        warming.join()

    per_chunk = chunk_trials or max(1, int(eng.trials_per_chunk))
    parts = _Parts(paths["parts"], run_fingerprint(exp, net, eng), net) if paths is not None else None
    done = parts.load(resume, exp.n_trials) if parts is not None else []
    finished = {k for p in done for k in p.trials}
    # each missing trial once, however the parts (if any) were chunked
    missing = [k for k in range(exp.n_trials) if k not in finished]
    todo = [missing[k:k + per_chunk] for k in range(0, len(missing), per_chunk)]
    if done:
        log.info("resuming: %d of %d trial(s) already done in %s", len(finished), exp.n_trials, parts.folder)
    elif parts is not None and len(todo) > 1:
        parts.start()  # a run of one chunk keeps nothing to resume from

    timings: dict[str, float] = {}
    bar = ProgressBar(progress, f"{eng.name} {exp.name}", exp.n_trials, len(finished)) if progress else None
    try:
        for n, chunk in enumerate(todo, 1):
            base = bar.done if bar is not None else 0
            part = eng.run_prepared(sim, chunk, bar.chunk(base) if bar is not None else None)
            for key, value in (part.meta.get("timings") or {}).items():
                timings[key] = timings.get(key, 0.0) + float(value)
            if parts is not None and n < len(todo):
                parts.write(part)  # the last chunk goes straight into the output file
            done.append(part)
            if bar is not None:
                bar.update(base + len(chunk))
    finally:
        if bar is not None:
            bar.close()
    result = merge_results(done)
    _provenance(result, exp, net, eng, timings, time.perf_counter() - t0)
    if paths is not None:
        t_write = time.perf_counter()
        _write_outputs(result, paths)
        parts.remove()
        result.meta["write_s"] = time.perf_counter() - t_write  # in memory only: the file is written
    return result


def run_many(experiments: Sequence[ExperimentLike], data: DataLike = None, engine: str | Engine = "event", *,
             progress: ProgressLike = True, **engine_options: Any) -> list[SpikeResult]:
    """Run several conditions on one connectome and one engine, in memory.

    The engine runs them together where it can (``batch`` capability: the event engine
    spreads them over threads, torch puts them in one batch). Every condition is checked
    before any runs.

    Parameters
    ----------
    experiments : sequence of Experiment, str or Path
    data, engine, progress, **engine_options
        As for :func:`run`.

    Returns
    -------
    list of SpikeResult
        One per condition, in order, each with its provenance in ``meta``.
    """
    t0 = time.perf_counter()
    exps = [resolve_experiment(e) for e in experiments]
    if not exps:
        raise ValidationError("run_many: experiments is empty; give at least one experiment")
    eng = resolve_engine(engine, engine_options)
    eng.check_available()
    warming = eng.start_warm_up()  # the engine's kernels load while the data does
    net = resolve_data(data, progress=progress is True)
    if warming is not None:
        warming.join()
    total = sum(e.n_trials for e in exps)
    bar = ProgressBar(progress, f"{eng.name} {len(exps)} conditions", total, 0) if progress else None
    try:
        results = eng.run_many(net, exps, progress=bar.chunk(0) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    for exp, res in zip(exps, results):
        _provenance(res, exp, net, eng, dict(res.meta.get("timings") or {}), wall)
    return results

