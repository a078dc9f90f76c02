"""Find, verify and load a connectome by folder or dataset name.

``data`` (the CLI's ``--data``) is either a folder holding a neuron list and a connection
list (any of the published names, or any ``*completeness*.csv`` + ``*connectivity*.parquet``
pair), or a dataset name:

=================  ===========================================================================
``flywire-783``    FlyWire v783 (Completeness_783.csv + Connectivity_783.parquet)
``flywire-630``    FlyWire v630, the paper's version (2023_03_23_*_630_final.*)
``synthetic``      generated connectome in the canonical format (``synthetic-<seed>``: seed)
=================  ===========================================================================

A published dataset is looked for in ``$BRAINFLY_DATA``, then in ``cache_dir()/data``, and
downloaded there if missing (unless ``download=False``). With ``data=None``, the folder in
``$BRAINFLY_DATA`` is used if set, else :func:`best_available_dataset` (the choice is logged
and recorded in ``Connectome.meta``).

The first load verifies the files (pinned checksums, schema, index/ID consistency) and
stores CSR arrays in the cache (:mod:`brainfly.connectome.cache`); later loads of the same
files read only those arrays (well under a second for the full brain).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import re
import sys
import time
from typing import Any

from ..errors import ChecksumError, DataError, DataNotFoundError, DownloadError, suggest
from .cache import cache_dir, csr_key, downloads_dir, file_sha256, load_csr, save_csr
from .download import REMOTE_DATASETS, download_dataset, is_downloadable, manual_download_hint
from .files import SourceFiles, check_pinned, file_version, find_source_files, read_connectivity, read_neuron_list
from .lookup import attach_annotations
from .network import Connectome, files_digest
from .synthetic import ensure_synthetic

__all__ = [
    "DATA_ENV",
    "DATASET_NAMES",
    "best_available_dataset",
    "load_connectome",
    "load_folder",
    "locate_dataset",
]

log = logging.getLogger(__name__)

#: Environment variable naming a folder that holds the data (like ``--data FOLDER``).
DATA_ENV = "BRAINFLY_DATA"
#: Dataset names accepted by :func:`load_connectome`.
DATASET_NAMES = ("flywire-783", "flywire-630", "synthetic")
_SYNTHETIC_RE = re.compile(r"^synthetic(?:[-:](\d+))?$")


def _env_data_dir() -> Path | None:
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else None


def _search_dirs() -> list[Path]:
    dirs = [d for d in (_env_data_dir(), downloads_dir()) if d is not None]
    return list(dict.fromkeys(dirs))


def _find_local(version: str) -> SourceFiles | None:
    for folder in _search_dirs():
        try:
            return find_source_files(folder, version)
        except (DataNotFoundError, DataError):
            continue
    return None


def best_available_dataset(*, probe_network: bool = True) -> str:
    """The best dataset usable here: ``flywire-783`` if found or downloadable, else ``synthetic``.

    Parameters
    ----------
    probe_network : bool
        Ask the download server (a HEAD request, a few seconds at most, once per process)
        when the files are not on disk.

    Returns
    -------
    str
        ``"flywire-783"`` or ``"synthetic"``.
    """
    if _find_local("783") is not None:
        return "flywire-783"
    if probe_network and is_downloadable("flywire-783"):
        return "flywire-783"
    log.info("FlyWire v783 connectivity is neither on disk (%s) nor downloadable: using the synthetic "
             "connectome", ", ".join(str(d) for d in _search_dirs()))
    return "synthetic"


def locate_dataset(name: str, *, download: bool = True, progress: bool = True) -> SourceFiles:
    """Files of a published dataset: on disk, or downloaded into ``cache_dir()/data``.

    Raises
    ------
    DataNotFoundError
        Not on disk and ``download`` is False, or the download failed (the message says
        which files to get, from where, and where to put them).
    """
    version = name.rsplit("-", 1)[-1]
    found = _find_local(version)
    if found is not None:
        return found
    names = REMOTE_DATASETS[name]
    where = ", ".join(str(d) for d in _search_dirs())
    if not download:
        raise DataNotFoundError(f"dataset {name}: files not found in {where} (download disabled). "
                                + manual_download_hint(names))
    try:
        folder = download_dataset(name, progress=progress)
    except DownloadError as exc:
        raise DataNotFoundError(f"dataset {name} is not in {where} and could not be downloaded: {exc}") from None
    return find_source_files(folder, version)


def load_connectome(
    data: str | Path | None = None,
    *,
    progress: bool = True,
    download: bool = True,
    verify_checksums: bool = True,
    annotations: bool = True,
) -> Connectome:
    """Load a connectome from a folder or by dataset name.

    Parameters
    ----------
    data : str or Path, optional
        A folder holding the files, or ``flywire-783``, ``flywire-630``, ``synthetic``
        (``synthetic-<seed>`` for another generator seed). Default: ``$BRAINFLY_DATA`` if
        set, else :func:`best_available_dataset`.
    progress : bool
        Progress bars on stderr while downloading, reading or generating.
    download : bool
        Download a published dataset that is not on disk.
    verify_checksums : bool
        Check files with a published name against their pinned size and SHA-256. Turn off
        only for files changed on purpose; the content checks run regardless.
    annotations : bool
        Attach cell types and classes when annotation tables are found
        (see :func:`brainfly.connectome.lookup.find_annotation_files`).

    Returns
    -------
    Connectome
        With ``meta`` recording the source files, their digests and checksum status,
        whether the cache was used, and any choice made for the user.

    Raises
    ------
    DataNotFoundError
        Folder or files missing and not downloadable; unknown dataset name.
    DataError
        A file is corrupt, truncated or inconsistent (ChecksumError: wrong digest).
    """
    choice = None
    if data is None:
        env = _env_data_dir()
        if env is not None:
            data, choice = env, f"data folder from ${DATA_ENV}"
        else:
            data = best_available_dataset()
            choice = f"dataset {data} chosen automatically (best available)"
            log.info("no data given: using %s", data)
    t0 = time.perf_counter()
    text = str(data)
    synth = _SYNTHETIC_RE.match(text) if not isinstance(data, Path) else None
    if synth is not None:
        net = _load_synthetic(int(synth.group(1) or 0), progress=progress, annotations=annotations)
    elif isinstance(data, str) and text in REMOTE_DATASETS:
        src = locate_dataset(text, download=download, progress=progress)
        net = load_folder(src.completeness.parent, version=src.version, progress=progress,
                          verify_checksums=verify_checksums, annotations=annotations)
    else:
        path = Path(text).expanduser()
        if path.is_file() and (path.suffix in (".csv", ".parquet")):
            net = load_folder(path.parent, version=file_version(path), progress=progress,
                              verify_checksums=verify_checksums, annotations=annotations)
        elif path.is_dir():
            net = load_folder(path, progress=progress, verify_checksums=verify_checksums, annotations=annotations)
        else:
            names = list(DATASET_NAMES) + ["synthetic-<seed>"]
            raise DataNotFoundError(
                f"--data {text!r}: neither a folder nor a dataset name (dataset names: {', '.join(names)})."
                f"{suggest(text, DATASET_NAMES)}")
    if choice:
        net.meta["choice"] = choice
    net.meta["load_s"] = round(time.perf_counter() - t0, 4)
    return net


def _load_synthetic(seed: int, *, progress: bool, annotations: bool) -> Connectome:
    folder = Path(ensure_synthetic(cache_dir(), seed=seed, progress=progress))
    net = load_folder(folder, progress=progress, annotations=annotations, synthetic=True)
    net.meta.setdefault("seed", seed)
    return net


def _folder_meta(folder: Path) -> dict[str, Any]:
    """Generator metadata written next to generated files (meta.json / *.json), if any."""
    for p in sorted(folder.glob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


class _RowProgress:
    def __init__(self, enabled: bool, label: str) -> None:
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(file=sys.stderr))
            self._task = self._bar.add_task(label, total=None)
            self._bar.start()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def load_folder(
    folder: str | Path,
    *,
    version: str | None = None,
    name: str | None = None,
    progress: bool = True,
    verify_checksums: bool = True,
    annotations: bool = True,
    synthetic: bool | None = None,
) -> Connectome:
    """Load, verify and cache the connectome held in *folder*.

    Parameters
    ----------
    folder : str or Path
        Holds one ``*completeness*.csv`` and one ``*connectivity*.parquet`` (or several
        versions, paired by the version in their names; see
        :func:`~brainfly.connectome.files.find_source_files`).
    version : str, optional
        FlyWire version to pick in a folder holding several.
    name : str, optional
        Dataset name to give the connectome (default: ``flywire-<version>`` for verified
        published files, ``synthetic`` for generated ones, else the folder).
    progress : bool
        Progress bar while reading the connection list.
    verify_checksums : bool
        Check published file names against their pinned digests.
    annotations : bool
        Attach annotation tables found in the folder or the cache.
    synthetic : bool, optional
        Mark as generated. Default: True when the folder holds a file ``SYNTHETIC`` or a
        JSON metadata file with ``"synthetic": true``.

    Returns
    -------
    Connectome
    """
    folder = Path(folder).expanduser()
    src = find_source_files(folder, version)
    folder_meta = _folder_meta(folder)
    manifest = folder_meta.get("files") if isinstance(folder_meta.get("files"), dict) else {}
    info: dict[str, Any] = {}
    digests = []
    for kind, path in (("completeness", src.completeness), ("connectivity", src.connectivity)):
        try:
            sha, size = file_sha256(path)
        except OSError as exc:
            raise DataError(f"connectome file {path}: cannot be read ({exc})") from None
        status = check_pinned(path, sha, size) if verify_checksums else "not checked"
        recorded = manifest.get(path.name) if isinstance(manifest.get(path.name), dict) else None
        if status == "unpinned" and recorded and recorded.get("sha256"):
            # the folder's own manifest (e.g. the generator's synthetic.json) states the digest
            if recorded["sha256"] != sha:
                raise ChecksumError(f"connectome file {path}: SHA-256 {sha} differs from the digest recorded "
                                    f"next to it ({recorded['sha256']}); the file was changed or damaged: "
                                    f"delete the folder {folder} to have it made again")
            status = "matches folder manifest"
        if status == "unpinned":
            log.info("%s has no published digest: accepted on its content checks", path)
        info[kind] = {"path": str(path), "sha256": sha, "size": size, "checksum": status}
        digests.append(sha)
    key = csr_key(*digests)
    cached = load_csr(key)
    if cached is not None:
        arrays, _ = cached
        cache_state = "hit"
    else:
        ids = read_neuron_list(src.completeness)
        bar = _RowProgress(progress, f"reading {src.connectivity.name}")
        try:
            indptr, post_idx, weight = read_connectivity(src.connectivity, ids, progress=bar)
        finally:
            bar.close()
        arrays = {"flywire_ids": ids, "indptr": indptr, "post_idx": post_idx, "weight": weight}
        save_csr(key, arrays, {"files": info, "version": src.version})
        cache_state = "miss"
    if synthetic is None:
        synthetic = (folder / "SYNTHETIC").exists() or bool(folder_meta.get("synthetic", False))
    verified = all(v["checksum"] == "verified" for v in info.values())
    if name is None:
        if synthetic:
            name = str(folder_meta.get("name") or "synthetic")
        elif verified and src.version:
            name = f"flywire-{src.version}"
        else:
            name = str(folder)
    meta: dict[str, Any] = {
        "dataset": name,
        "version": src.version,
        "source_dir": str(folder),
        "files": info,
        "checksums_verified": verified,
        "cache": cache_state,
        "cache_key": key,
    }
    if synthetic and folder_meta:
        meta["generator"] = folder_meta
    net = Connectome(arrays["flywire_ids"], arrays["indptr"], arrays["post_idx"], arrays["weight"],
                     name=name, synthetic=bool(synthetic), meta=meta, digest=files_digest(*digests))
    if cache_state == "miss":
        net.validate_arrays()
    if annotations:
        attach_annotations(net)
    return net
