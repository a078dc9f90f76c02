"""The cache folder: downloaded files, a file-digest index, and compact CSR copies of networks.

Layout of :func:`cache_dir` (``platformdirs.user_cache_dir("brainfly")``, or the folder in
the environment variable ``BRAINFLY_CACHE_DIR``)::

    data/                 downloaded source files (Completeness_783.csv, ...)
    hashes.json           (path, size, mtime) -> SHA-256, so big files are hashed once
    csr/<key>/            flywire_ids.npy (int64), indptr.npy (int64), post_idx.npy (int32),
                          weight.npy (float64), meta.json; key from the source files' SHA-256
    annotations/<key>.parquet   merged annotation tables, key from their files' SHA-256
    event/<key>/          the event engine's packed connections (brainfly.engines.event), key from
                          the connectome's content digest and the engine's layout version

Every file is written atomically (:func:`brainfly._io.atomic_write`), so a crash never
leaves a truncated cache entry; a cache entry that cannot be read is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write
from .files import sha256_file

__all__ = [
    "CACHE_ENV",
    "CSR_FORMAT",
    "cache_dir",
    "downloads_dir",
    "file_sha256",
    "csr_key",
    "load_csr",
    "save_csr",
]

log = logging.getLogger(__name__)

#: Environment variable that moves the cache folder (tests point it at a temporary folder).
CACHE_ENV = "BRAINFLY_CACHE_DIR"
#: Version of the CSR cache layout; part of every key, so a change invalidates old entries.
CSR_FORMAT = 1
_ARRAYS = {"flywire_ids": np.int64, "indptr": np.int64, "post_idx": np.int32, "weight": np.float64}


def cache_dir() -> Path:
    """The brainfly cache folder (not created here).

    Returns
    -------
    Path
        ``$BRAINFLY_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("brainfly")``.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("brainfly"))


def downloads_dir() -> Path:
    """Folder that downloaded source files go to (``cache_dir() / "data"``)."""
    return cache_dir() / "data"


def _index_path() -> Path:
    return cache_dir() / "hashes.json"


def _read_index(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def file_sha256(path: str | Path) -> tuple[str, int]:
    """SHA-256 and size of a file, hashed only when its (path, size, mtime) is new.

    The digests live in ``cache_dir()/hashes.json``; when the cache folder is not writable
    the file is simply hashed every time.

    Returns
    -------
    sha256 : str
        Hex digest.
    size : int
        Size in bytes.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = str(path)
    index_path = _index_path()
    index = _read_index(index_path)
    entry = index.get(key)
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        sha = entry.get("sha256")
        if isinstance(sha, str) and len(sha) == 64:
            return sha, int(st.st_size)
    sha = sha256_file(path)
    index = _read_index(index_path)  # re-read: another process may have added entries
    index[key] = {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha256": sha}
    try:
        atomic_write(index_path, lambda tmp: tmp.write_text(json.dumps(index, indent=0, sort_keys=True),
                                                            encoding="utf-8"))
    except OSError as exc:
        log.debug("cannot write the digest index %s: %s", index_path, exc)
    return sha, int(st.st_size)


def csr_key(*digests: str) -> str:
    """Cache key of a network built from files with these SHA-256 digests (order matters)."""
    h = hashlib.sha256(f"brainfly-csr-v{CSR_FORMAT}".encode())
    for d in digests:
        h.update(b"\0" + d.encode())
    return h.hexdigest()[:32]


def load_csr(key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Arrays and metadata of a cached network, or None when absent or unreadable.

    Returns
    -------
    (arrays, meta) or None
        arrays: ``flywire_ids`` (int64), ``indptr`` (int64), ``post_idx`` (int32),
        ``weight`` (float64).
    """
    folder = cache_dir() / "csr" / key
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        # mapped, not read: a run touches few of the connections (the engines keep their own
        # layouts), and the pages are shared by the processes that load the same network
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable network cache %s (%s); rebuilding it", folder, exc)
        return None
    for name, dtype in _ARRAYS.items():
        if arrays[name].dtype != dtype or arrays[name].ndim != 1:
            log.warning("ignoring network cache %s: %s has dtype %s", folder, name, arrays[name].dtype)
            return None
    n, m = arrays["flywire_ids"].shape[0], arrays["post_idx"].shape[0]
    if (arrays["indptr"].shape[0] != n + 1 or arrays["weight"].shape[0] != m
            or meta.get("n_neurons") != n or meta.get("n_connections") != m):
        log.warning("ignoring network cache %s: array sizes disagree with its metadata", folder)
        return None
    return arrays, meta


def save_csr(key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path | None:
    """Store a network's arrays under *key* (meta.json last, so a half-written entry is never read).

    Returns
    -------
    Path or None
        The entry's folder, or None when the cache folder is not writable (logged).
    """
    folder = cache_dir() / "csr" / key
    meta = dict(meta, n_neurons=int(arrays["flywire_ids"].shape[0]),
                n_connections=int(arrays["post_idx"].shape[0]), format=CSR_FORMAT)
    try:
        for name, dtype in _ARRAYS.items():
            arr = np.ascontiguousarray(arrays[name], dtype=dtype)
            # np.save appends ".npy" to names without it: write through an open file
            def write(tmp: Path, arr: np.ndarray = arr) -> None:
                with open(tmp, "wb") as f:
                    np.save(f, arr, allow_pickle=False)

            atomic_write(folder / f"{name}.npy", write)
        atomic_write(folder / "meta.json",
                     lambda tmp: tmp.write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8"))
    except OSError as exc:
        log.warning("cannot write the network cache %s (%s); the next load will read the source files again",
                    folder, exc)
        return None
    return folder
