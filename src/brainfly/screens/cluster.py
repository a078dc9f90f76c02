"""Where a screen's chunks run: in this process, on an embedded Dask cluster, or on a
running Dask cluster (``tcp://host:port``), and what a worker keeps between chunks.

A chunk (:class:`ChunkTask`) names its connectome by content digest. A worker keeps the
connectomes it was given (and the shuffled controls it derived) and the engines it made,
in this module's memory, so that a connectome travels to each worker once: by
``Client.scatter(..., broadcast=True)`` when the caller handed over a loaded network, or
loaded by the worker itself from the dataset name or folder (then checked against the
digest) - never once per task.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from ..connectome import Connectome, load_connectome
from ..connectome.shuffle import shuffled_connectome
from ..engines.base import Engine, get_engine
from ..errors import DataError, ValidationError, suggest
from ..experiment import Experiment
from ..runner import run_many
from .tables import TABLES, concat_columns, condition_tables, readout_labels

__all__ = ["DataRef", "ChunkTask", "ChunkOutput", "run_chunk", "Executor", "InProcess", "DaskExecutor",
           "make_executor", "check_scheduler", "jobqueue_cluster", "JOBQUEUE_SYSTEMS"]

_LOCK = threading.Lock()
_NETWORKS: dict[str, Connectome] = {}
_ENGINES: dict[str, Engine] = {}


@dataclass(frozen=True)
class DataRef:
    """How a worker gets a connectome: a dataset name or folder it can load, and the digest
    the loaded network must have."""

    source: str
    digest: str


@dataclass(frozen=True)
class ChunkTask:
    """Some conditions of one connectome, to run together (``run_many``)."""

    chunk: int
    connectome_label: str  #: ``real`` or ``shuffle-K``
    shuffle_seed: int | None
    conditions: tuple[tuple[int, dict[str, Any]], ...]  #: (condition_id, Experiment.to_dict())
    engine: str
    engine_options: tuple[tuple[str, Any], ...]
    readout_ids: tuple[int, ...]
    save_spikes: bool = False


@dataclass
class ChunkOutput:
    """What a chunk gives back: the rows of each table, and the runs with ``save_spikes``."""

    chunk: int
    connectome_label: str
    tables: dict[str, dict[str, np.ndarray]]
    spikes: list[tuple[int, Any]] = field(default_factory=list)  #: (condition_id, SpikeResult)


def _network(data: Connectome | DataRef, shuffle_seed: int | None) -> Connectome:
    """The connectome of a chunk, from this process's memory where possible."""
    if isinstance(data, Connectome):
        digest = data.content_digest
        with _LOCK:
            _NETWORKS.setdefault(digest, data)
    else:
        digest = data.digest
        with _LOCK:
            net = _NETWORKS.get(digest)
        if net is None:
            net = load_connectome(data.source, progress=False)
            if net.content_digest != digest:
                raise DataError(f"screen worker: {data.source} loaded here has digest {net.content_digest[:12]}, "
                                f"the screen's connectome has {digest[:12]}: the workers see other files than "
                                "the client; give the workers the same data (or pass the loaded Connectome)")
            with _LOCK:
                _NETWORKS[digest] = net
    if shuffle_seed is None:
        return _NETWORKS[digest]
    key = f"{digest}+shuffle{shuffle_seed}"
    with _LOCK:
        net = _NETWORKS.get(key)
    if net is None:
        net = shuffled_connectome(_NETWORKS[digest], shuffle_seed)
        with _LOCK:
            _NETWORKS[key] = net
    return net


def _engine(name: str, options: tuple[tuple[str, Any], ...]) -> Engine:
    key = json.dumps([name, options], default=str)
    with _LOCK:
        eng = _ENGINES.get(key)
        if eng is None:
            eng = _ENGINES[key] = get_engine(name, **dict(options))
    return eng


def run_chunk(task: ChunkTask, data: Connectome | DataRef) -> ChunkOutput:
    """Run one chunk (here, or on a Dask worker) and make its table rows."""
    net = _network(data, task.shuffle_seed)
    exps = [Experiment.from_dict(d, source=f"condition {cid}") for cid, d in task.conditions]
    results = run_many(exps, net, _engine(task.engine, task.engine_options), progress=False)
    ids = np.asarray(task.readout_ids, dtype=np.int64)
    labels = readout_labels(ids, net.annotations)
    rows = [condition_tables(res, cid, task.connectome_label, ids, labels)
            for (cid, _), res in zip(task.conditions, results)]
    tables = {name: concat_columns([r[name] for r in rows]) for name in TABLES}
    spikes = [(cid, res) for (cid, _), res in zip(task.conditions, results)] if task.save_spikes else []
    return ChunkOutput(task.chunk, task.connectome_label, tables, spikes)


# -------------------------------------------------------------------- executors
class Executor:
    """Runs chunks and yields their outputs as they finish."""

    name = "executor"
    n_workers = 1

    def map(self, tasks: Sequence[ChunkTask], data: Connectome | DataRef) -> Iterator[ChunkOutput]:
        """Outputs of *tasks*, in the order they finish."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started."""

    def describe(self) -> dict[str, Any]:
        """What ran the chunks (recorded in screen.json)."""
        return {"scheduler": self.name, "n_workers": self.n_workers}


#: Chunks run at once in one process: two, so that one chunk's Python work (plans, tables)
#: overlaps the other's simulation, which runs outside the GIL on the engine's threads.
CHUNKS_AT_ONCE = 2


class InProcess(Executor):
    """Chunks in this process, :data:`CHUNKS_AT_ONCE` at a time (the engine's own threads
    spread each chunk's trials over the cores)."""

    name = "in-process"

    def map(self, tasks: Sequence[ChunkTask], data: Connectome | DataRef) -> Iterator[ChunkOutput]:
        if len(tasks) <= 1:
            for task in tasks:
                yield run_chunk(task, data)
            return
        pool = ThreadPoolExecutor(max_workers=CHUNKS_AT_ONCE, thread_name_prefix="brainfly-screen")
        try:
            futures = [pool.submit(run_chunk, t, data) for t in tasks]
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """Chunks as Dask tasks: an embedded cluster in this process, or a running one.

    Parameters
    ----------
    address : str or None
        ``tcp://host:port`` of a running scheduler, or None for an embedded cluster
        (one in-process worker whose engine uses every core: the engines release the GIL).
    cluster : object, optional
        A started cluster object (e.g. from dask-jobqueue's ``SLURMCluster``); the
        executor connects to it and does not close it.
    """

    def __init__(self, address: str | None = None, cluster: Any = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - distributed is a dependency
            raise ValidationError(f"screen: Dask's distributed package is needed ({exc}); "
                                  "pip install distributed, or run with scheduler='in-process'") from None
        self._own: Any = None
        self._cluster = cluster
        if cluster is not None:
            self.client = Client(cluster)
            self.name = f"cluster {type(cluster).__name__}"
        elif address:
            try:
                self.client = Client(address, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise ValidationError(f"screen: cannot reach the Dask scheduler at {address} ({exc}); check the "
                                      "address, or leave --scheduler out for an embedded cluster") from None
            self.name = f"dask {address}"
        else:
            # the scheduler's HTTP server (dashboard) on a free loopback port: never a fixed, public one
            self._own = LocalCluster(n_workers=1, threads_per_worker=CHUNKS_AT_ONCE, processes=False,
                                     dashboard_address="127.0.0.1:0")
            self.client = Client(self._own)
            self.name = "dask embedded"
        self.n_workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self._scattered: dict[str, Any] = {}

    def map(self, tasks: Sequence[ChunkTask], data: Connectome | DataRef) -> Iterator[ChunkOutput]:
        from distributed import as_completed

        if isinstance(data, Connectome):
            key = data.content_digest
            if key not in self._scattered:
                # once to every worker, then referenced by every task
                self._scattered[key] = self.client.scatter(data, broadcast=True, hash=False)
            data_arg: Any = self._scattered[key]
        else:
            data_arg = data
        futures = [self.client.submit(run_chunk, t, data_arg, pure=False) for t in tasks]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        self.client.close()
        if self._own is not None:
            self._own.close()


#: Batch systems whose workers dask-jobqueue starts (``--scheduler slurm``, ...).
JOBQUEUE_SYSTEMS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
                    "htcondor": "HTCondorCluster", "oar": "OARCluster"}


def jobqueue_cluster(system: str, jobs: int = 1, **kwargs: Any) -> Any:
    """A dask-jobqueue cluster on a batch system, scaled to *jobs* worker jobs.

    Queue, cores, memory, walltime and the like come from *kwargs* or from the user's Dask
    configuration (``~/.config/dask/jobqueue.yaml``, section ``jobqueue.<system>``), as
    dask-jobqueue documents; brainfly adds nothing of its own to the job script.

    Raises
    ------
    ValidationError
        When dask-jobqueue is not installed (``pip install brainfly[cluster]``) or the
        system is not one of :data:`JOBQUEUE_SYSTEMS`.
    """
    if system not in JOBQUEUE_SYSTEMS:
        raise ValidationError(f"screen: unknown batch system {system!r}; dask-jobqueue knows "
                              f"{', '.join(sorted(JOBQUEUE_SYSTEMS))}")
    try:
        import dask_jobqueue
    except ImportError:
        raise ValidationError(f"screen: --scheduler {system} starts workers with dask-jobqueue, which is not installed; "
                              "pip install 'brainfly[cluster]'") from None
    cluster = getattr(dask_jobqueue, JOBQUEUE_SYSTEMS[system])(**kwargs)
    if jobs:
        cluster.scale(jobs=int(jobs))
    return cluster


def check_scheduler(scheduler: str | None | Any) -> None:
    """Refuse a scheduler argument that :func:`make_executor` cannot use, starting nothing
    (a screen checks it before it writes anything)."""
    if scheduler is None or not isinstance(scheduler, str):
        return
    if scheduler in ("in-process", "none", "no", "local", "embedded") or scheduler in JOBQUEUE_SYSTEMS:
        return
    if "://" not in scheduler and ":" not in scheduler:
        raise ValidationError(f"screen: scheduler {scheduler!r} is not a scheduler address (tcp://HOST:PORT), "
                              f"'local' (an embedded Dask cluster), 'in-process', or a batch system "
                              f"({', '.join(sorted(JOBQUEUE_SYSTEMS))}).{suggest(scheduler, _NAMES)}")


_NAMES = ("in-process", "local", *JOBQUEUE_SYSTEMS)


def make_executor(scheduler: str | None | Any, workers: int = 1) -> Executor:
    """An executor from ``in-process``, ``local``/None (embedded Dask), an address, a batch
    system of :data:`JOBQUEUE_SYSTEMS` (*workers* jobs), or a cluster object."""
    if scheduler in ("in-process", "none", "no"):
        return InProcess()
    if scheduler in (None, "local", "embedded"):
        return DaskExecutor()
    if isinstance(scheduler, str) and scheduler in JOBQUEUE_SYSTEMS:
        ex = DaskExecutor(cluster=jobqueue_cluster(scheduler, jobs=workers))
        ex._own = ex._cluster  # started here: closed here
        return ex
    if isinstance(scheduler, str):
        check_scheduler(scheduler)
        return DaskExecutor(address=scheduler)
    return DaskExecutor(cluster=scheduler)
