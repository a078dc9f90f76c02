"""The bottom layer: atomic, durable file writes and content digests.

Imports nothing of brainfly's, so that every other module may use it.

- :func:`atomic_write`: write to a temporary file beside the target, fsync it, rename it
  onto the target, fsync the folder: after a crash the path holds the old file or the new
  one, never a truncated one, and a finished write survives a power cut. The file gets
  the permissions that the process's umask gives a new file (``mkstemp`` alone would
  leave 0600).
- :func:`sha256_file`, :func:`digest_arrays`, :func:`digest_text`: content digests, the
  only keys caches may use (never object identity, never samples of an array).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import tempfile
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["atomic_write", "fsync_dir", "sha256_file", "digest_arrays", "digest_text", "umask_mode"]


def umask_mode(base: int = 0o666) -> int:
    """Permissions a new file gets from this process's umask (``base & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)``, then fsync and atomically rename the file onto *path*.

    Parent folders are created. A crash leaves either the old file or the new one, never
    a truncated one; the temporary file is removed when *write* fails.

    Parameters
    ----------
    path : str or Path
        The file to (re)place.
    write : callable
        Writes the whole content to the temporary path it is given.

    Returns
    -------
    Path
        *path*.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, umask_mode())
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks; about 0.2 s per 100 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def digest_arrays(arrays: Iterable[np.ndarray], *, tag: str = "") -> str:
    """Hex SHA-256 over the whole content of some arrays (dtype, shape and bytes of each).

    About 0.03 s per 100 MB; used where no source files' checksums are at hand.
    """
    h = hashlib.sha256(tag.encode())
    for arr in arrays:
        a = np.ascontiguousarray(arr)
        h.update(f"\0{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def digest_text(*parts: str) -> str:
    """Hex SHA-256 of some strings, separated so that ("ab", "c") != ("a", "bc")."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()
